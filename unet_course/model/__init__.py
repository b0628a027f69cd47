"""The U-Net model: named parts, the network, and tools to look inside it.
U-Net 模型：组成模块、网络本身，以及查看其内部的工具

- :mod:`.parts`: ``DoubleConv``, ``Down``, ``UpConv2x2``, ``Up``, ``OutConv``, ``PadToMultiple``
- :mod:`.unet`: ``UNet``, ``build_model(config)`` and ``unwrap_model`` (DDP / torch.compile wrappers)
- :mod:`.describe`: ``describe`` (shape trace), ``count_parameters`` and the convolution size formulas
"""

from __future__ import annotations

from .describe import (
    ShapeRow,
    ShapeTrace,
    conv_output_size,
    count_parameters,
    describe,
    transposed_conv_output_size,
)
from .parts import DoubleConv, Down, OutConv, PadToMultiple, Up, UpConv2x2
from .unet import CONFIG_KEYS, UNet, build_model, frozen_batchnorm_stats, unwrap_model

__all__ = [
    "CONFIG_KEYS",
    "DoubleConv",
    "Down",
    "OutConv",
    "PadToMultiple",
    "ShapeRow",
    "ShapeTrace",
    "UNet",
    "Up",
    "UpConv2x2",
    "build_model",
    "conv_output_size",
    "count_parameters",
    "describe",
    "frozen_batchnorm_stats",
    "transposed_conv_output_size",
    "unwrap_model",
]
