"""How much memory a whole-image forward pass needs, and when to tile instead.
整图前向需要多少内存，以及何时改用切片

Whole-image prediction is the fastest and the most accurate (every pixel sees its full context), so it is the
default. A very large image would need more activation memory than the machine has; then prediction switches to
the sliding window by itself and says so once. 整图预测最快也最准，是默认方式；图像大到超过内存上限时自动改为切片，并提示一次

The estimate, for a :class:`~unet_course.model.UNet` of first-level width ``c`` on a batch of ``B`` images padded
to ``H' x W'`` (multiples of ``2**depth``), with ``s`` bytes per activation (2 under bf16/fp16 autocast, 4 in
float32), ``K`` classes and ``P`` parameters::

    bytes = B * H' * W' * (6 * c * s + 16 * K) + 12 * P

- ``6 * c``: at the peak (the last decoder level, at full resolution) about six maps of the first level's width are
  alive: the skip, the up-sampled map, their concatenation (two widths) and the two convolution outputs; the
  deeper levels are smaller by 4x per level in area and 2x in width, together less than one more map;
  峰值出现在最后一级解码器（全分辨率）：约 6 张第一层宽度的特征图同时存在
- ``16 * K``: float32 logits and probabilities (and their flipped copies); 每类 16 字节：float32 的 logits 与概率
- ``12 * P``: the low-precision and reordered copies of the weights that autocast and oneDNN keep.
  每个参数 12 字节：autocast 与 oneDNN 保存的权重副本

Checked against the resident-set growth of a CPU forward pass (base 16-32, depth 3-4, 584x565 to 1024x1024, batch
1-4, bf16 and fp32): the estimate is within 15 % and never below it by more than 5 %. 与实测的常驻内存增量相差 15 % 以内
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..rules import is_number

#: Largest estimated activation memory of one whole-image forward pass before tiling kicks in. 整图推理的内存上限
DEFAULT_MEMORY_CAP_MB = 2048.0
#: Tile side tried first when an image is too large (halved until it fits, never below 64). 自动切片的初始边长
AUTO_TILE = 512

_SAID: set[str] = set()


def _round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple``. 向上取整到 multiple 的倍数"""
    return -(-int(n) // multiple) * multiple


def estimate_forward_mb(model: nn.Module, batch: int, height: int, width: int,
                        bytes_per_value: int = 2) -> float | None:
    """Estimated memory (MiB) of one forward pass of ``model`` on ``(batch, C, height, width)`` (module docstring).
    估计一次前向所需内存（MiB），公式见模块说明

    Args:
        model: a :class:`~unet_course.model.UNet` (anything with ``config["base_channels"]`` and
            ``config["depth"]``). 网络
        batch, height, width: the input batch. 输入尺寸
        bytes_per_value: 2 under bf16/fp16 autocast, 4 in float32. 每个激活值的字节数

    Returns:
        MiB, or None for a model without a U-Net ``config`` (nothing is estimated, no auto-tiling).

    >>> from unet_course.model import UNet
    >>> round(estimate_forward_mb(UNet(1, 2, 32, 4), 1, 584, 565))      # DRIVE, base 32, bf16
    224
    """
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "base_channels" not in config or "depth" not in config:
        return None
    multiple = 2 ** int(config["depth"])
    pixels = _round_up(height, multiple) * _round_up(width, multiple)   # 填充到 2**depth 的倍数后的像素数
    classes = int(config.get("n_classes") or 2)
    per_pixel = 6 * int(config["base_channels"]) * bytes_per_value + 16 * max(classes, 2)
    params = sum(p.numel() for p in model.parameters())
    return (batch * pixels * per_pixel + 12 * params) / 2**20


def auto_tile(model: nn.Module, tile_batch: int, bytes_per_value: int, cap_mb: float) -> int:
    """The largest tile (``AUTO_TILE`` halved, down to 64) whose batch of ``tile_batch`` fits ``cap_mb``.
    在内存上限内可容纳 tile_batch 块的最大切片边长

    >>> from unet_course.model import UNet
    >>> auto_tile(UNet(1, 2, 32, 4), 4, 2, 2048.0), auto_tile(UNet(1, 2, 32, 4), 4, 2, 150.0)
    (512, 128)
    """
    tile = AUTO_TILE
    while tile > 64:
        need = estimate_forward_mb(model, tile_batch, tile, tile, bytes_per_value)
        if need is None or need <= cap_mb:
            break
        tile //= 2                                                      # 放不下就减半
    return tile


def say_once(key: str, message: str) -> None:
    """Warn with ``message`` the first time ``key`` is seen in this process (a run says a thing once).
    同一进程中每个 key 只提示一次
    """
    if key not in _SAID:
        _SAID.add(key)
        warnings.warn(message, stacklevel=3)


def check_memory_cap(value: Any, name: str = "max_memory_mb") -> float | None:
    """The one rule for the memory cap of a whole-image pass: None (no cap) or a number of MiB > 0.
    整图推理内存上限：None（不设上限）或大于 0 的 MiB 数

    >>> check_memory_cap(2048), check_memory_cap(None)
    (2048.0, None)
    >>> check_memory_cap(-1, "--max-memory-mb")
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: --max-memory-mb must be a number of MiB > 0, got -1.
    """
    if value is None:
        return None
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a number of MiB > 0, got {value!r}.")
    return float(value)


def plan_whole_image(model: nn.Module, batch: int, height: int, width: int, n_flips: int, bytes_per_value: int,
                     cap_mb: float | None) -> dict[str, Any]:
    """How to run a whole-image prediction within ``cap_mb``: all flips in one batch, one flip at a time, or tiles.
    在内存上限内决定整图预测方式：所有翻转一个批量、逐个翻转，或改为切片

    Returns:
        ``{"flip_batch": bool, "tiles": bool, "estimate_mb": float | None}``: ``flip_batch`` runs the ``n_flips``
        flipped copies as one batch; ``tiles`` means one pass does not fit and the sliding window is needed.

    >>> from unet_course.model import UNet
    >>> plan = plan_whole_image(UNet(1, 2, 32, 4), 1, 584, 565, 4, 2, 2048.0)   # DRIVE, 4 flips, bf16
    >>> plan["flip_batch"], plan["tiles"], round(plan["estimate_mb"])
    (True, False, 630)
    >>> plan_whole_image(UNet(1, 2, 32, 4), 1, 584, 565, 4, 2, 100.0)["tiles"]
    True
    """
    cap_mb = check_memory_cap(cap_mb)
    one = estimate_forward_mb(model, batch, height, width, bytes_per_value)   # 一个翻转的估计
    if one is None or cap_mb is None:                                       # 无法估计或不设上限：照常整图
        return {"flip_batch": n_flips > 1, "tiles": False, "estimate_mb": one}
    together = estimate_forward_mb(model, batch * n_flips, height, width, bytes_per_value)
    if together is not None and together <= cap_mb:                         # 全部翻转一次前向
        return {"flip_batch": n_flips > 1, "tiles": False, "estimate_mb": together}
    return {"flip_batch": False, "tiles": one > cap_mb, "estimate_mb": one}   # 逐个翻转，或需要切片


__all__ = ["AUTO_TILE", "DEFAULT_MEMORY_CAP_MB", "auto_tile", "check_memory_cap", "estimate_forward_mb", "plan_whole_image",
           "say_once"]
