"""``python -m unet_course.viz NOTEBOOK ...``: renumber the stored source listings whose code moved.
重新编号 notebook 中移动过的源代码清单（见 :func:`unet_course.viz.source.main`）
"""

from .source import main

raise SystemExit(main())
