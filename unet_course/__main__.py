"""``python -m unet_course`` runs the CLI (also what ``torchrun -m unet_course`` uses). 以模块方式运行命令行"""

from .cli import main

raise SystemExit(main())
