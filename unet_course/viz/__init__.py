"""Pictures for the course: panels, overlays, probability histograms, training curves and a widget explorer.
课程用的可视化：并排面板、叠加图、概率直方图、训练曲线与 ipywidgets 浏览器

- :mod:`.images`: arrays for ``imshow`` (``display_image``, ``colorize``, ``overlay``, ``error_map``)
- :mod:`.figures`: Figures (``show_panels``, ``show_overlay``, ``plot_prob_histogram``, ``plot_history``,
  ``plot_tiling``); they are returned, never shown with ``plt.show()``
- :mod:`.explorer`: ``explore`` (sliders in Jupyter, a static figure in headless runs)
- :mod:`.source`: ``show_source`` (the package's annotated code, highlighted, for the notebooks);
  ``python -m unet_course.viz NOTEBOOK ...`` renumbers the listings stored in notebooks after their code moved

Masks are coloured as class indices; raw mask values are read through ``mask_values``
(:func:`unet_course.data.masks.values_to_indices`), never guessed. 掩码按类别索引上色；原始取值通过 mask_values 映射
"""

from __future__ import annotations

from .explorer import StaticExplorer, explore
from .figures import plot_history, plot_prob_histogram, plot_tiling, show_overlay, show_panels
from .images import (
    IGNORE_COLOUR,
    PALETTE,
    class_indices,
    colorize,
    display_image,
    error_map,
    overlay,
    to_numpy,
)
from .source import Source, show_source

__all__ = [
    "StaticExplorer",
    "PALETTE",
    "IGNORE_COLOUR",
    "to_numpy",
    "display_image",
    "class_indices",
    "colorize",
    "overlay",
    "error_map",
    "show_panels",
    "show_overlay",
    "plot_prob_histogram",
    "plot_history",
    "plot_tiling",
    "explore",
    "Source",
    "show_source",
]
