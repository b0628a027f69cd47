"""unet-course: U-Net image segmentation in PyTorch, taught from a real package.
unet-course：用一个真实可安装的包讲解 PyTorch 中的 U-Net 图像分割

The notebooks in ``notebooks/`` import this package; every model, dataset, loss and loop lives here.
See ``docs/ARCHITECTURE.md`` for the module map.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import TrainConfig  # noqa: E402,F401
from .errors import CheckpointError, ConfigError, DataError, NonFiniteLossError, OutputError, UNetCourseError  # noqa: E402,F401

__all__ = [
    "__version__",
    "TrainConfig",
    "UNetCourseError",
    "DataError",
    "ConfigError",
    "CheckpointError",
    "NonFiniteLossError",
]
