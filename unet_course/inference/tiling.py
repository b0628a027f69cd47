"""Overlap-tile prediction: cut an image into overlapping tiles, predict each, blend them back.
重叠切片预测：把图像切成互相重叠的切片，逐块预测，再加权融合回整图

The U-Net paper (Ronneberger et al., 2015, Fig. 2) predicts large images with the *overlap-tile* strategy: the
network sees one tile at a time and the tiles are stitched back together. This module does the same with two
departures from the paper:
U-Net 论文（图 2）用*重叠切片*（overlap-tile）策略预测大图：网络每次只看一块切片，再拼回整图。本模块与论文有两点不同：

1. **Blended, not cropped.** The paper uses valid convolutions and keeps only the centre of each tile. Our U-Net
   pads, so every tile output has the tile's size, but pixels near a tile border saw less context. Overlapping
   tiles are averaged with smooth weights (a Gaussian, or a linear ramp that fades towards the tile border) and
   divided by the summed weights, so there are no hard seams. ``blend="constant"`` (a plain average) is kept only
   for comparison.
   融合而非裁剪：论文使用无填充卷积，只保留切片中心；本项目的 U-Net 有填充，切片边缘的像素上下文较少，
   因此用平滑权重加权平均重叠区域，再除以权重之和，避免硬接缝
2. **The canvas lives on the CPU.** Only tiles travel to the device, so an image far larger than one forward pass
   fits. 拼接画布放在 CPU 上，只有切片送到设备，因此可以预测远大于一次前向所能容纳的图像

Shapes: the input is a preprocessed float32 batch ``(B, C, H, W)``; the output holds float32 logits
``(B, K, H, W)`` on the CPU. 输入为已预处理的批量，输出为 CPU 上的 float32 logits
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import BLEND_MODES
from ..errors import ConfigError
from ..precision import AmpPolicy, as_policy, autocast, nhwc_for_inference
from ..rules import is_number


def pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """``64`` -> ``(64, 64)``; a pair stays a pair; both sides must be >= 1. 把整数展开为 (高, 宽)

    >>> pair(64, "tile"), pair((32, 48), "tile")
    ((64, 64), (32, 48))
    """
    if isinstance(value, (int, np.integer)):
        items = (int(value), int(value))                # 一个整数：正方形切片
    else:
        items = tuple(int(v) for v in value)            # 一对整数：(高, 宽)
        if len(items) != 2:
            raise ConfigError(f"{name} must be an int or a pair (height, width), got {value!r}.")
    if min(items) < 1:
        raise ConfigError(f"{name} must be >= 1 pixel, got {value!r}.")
    return items[0], items[1]


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a parameter-free module). 模型参数所在设备"""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def tile_starts(size: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of the tiles along one axis.
    单个轴上各切片的起点

    The number of tiles is the smallest that keeps the overlap at least ``overlap``; the starts are spread evenly
    from 0 to ``size - tile``, so the first tile touches the top/left border and the last one the bottom/right
    border (no tile hangs over the edge). A ``size`` smaller than the tile gives one tile at 0 (the caller pads).
    切片数取保证重叠比例不低于 overlap 的最小值，起点在 0 到 size - tile 之间均匀分布，首尾两块与边界对齐

    Args:
        size: length of the axis in pixels. 轴长（像素）
        tile: tile length in pixels. 切片长度
        overlap: the smallest fraction of a tile shared with its neighbour, in ``[0, 1)``. 最小重叠比例

    Returns:
        The start offsets, increasing, first 0 and last ``size - tile``.

    >>> tile_starts(100, 32, 0.25)
    [0, 23, 45, 68]
    >>> tile_starts(20, 32, 0.25)
    [0]
    """
    if size <= tile:
        return [0]                                       # 一块切片就够（调用方负责填充）
    stride = max(1, int(tile * (1.0 - overlap)))         # 重叠不低于 overlap 时允许的最大步幅
    n = math.ceil((size - tile) / stride) + 1            # 覆盖整个轴所需的最少切片数
    span = size - tile                                   # 最后一块的起点
    # spread n starts evenly over [0, span], rounded to the nearest integer 在 [0, span] 上均匀分布并四舍五入
    return [(2 * i * span + (n - 1)) // (2 * (n - 1)) for i in range(n)]


def blend_weights(tile: int | Sequence[int], overlap: float = 0.25, mode: str = "gaussian",
                  sigma_scale: float = 0.125) -> torch.Tensor:
    """Per-pixel weight of one tile when overlapping tiles are averaged.
    重叠切片加权平均时，单块切片内每个像素的权重

    Args:
        tile: tile size ``T`` or ``(Th, Tw)``. 切片大小
        overlap: overlap fraction; sets the ramp length of ``"linear"``. 重叠比例（决定线性斜坡长度）
        mode: ``"gaussian"`` (``exp(-d^2 / 2 sigma^2)`` with ``sigma = sigma_scale * T``), ``"linear"`` (1 in the
            centre, falling linearly to near 0 over the overlap width at each border) or ``"constant"`` (all 1s,
            a plain average with visible seams). 高斯 / 线性斜坡 / 常数
        sigma_scale: Gaussian sigma as a fraction of the tile size. 高斯标准差占切片大小的比例

    Returns:
        float32 ``(Th, Tw)`` weights in ``(0, 1]``, peak 1; strictly positive so every pixel gets a normaliser > 0.
        权重严格为正，保证每个像素的归一化因子大于 0

    Raises:
        ConfigError: an unknown ``mode`` or a bad tile size.

    >>> blend_weights(4, mode="constant").shape
    torch.Size([4, 4])
    """
    th, tw = pair(tile, "tile")
    if mode not in BLEND_MODES:
        raise ConfigError(f"Unknown blend {mode!r}; choose one of: {', '.join(BLEND_MODES)}.")
    w = _axis_weights(th, overlap, mode, sigma_scale)[:, None] \
        * _axis_weights(tw, overlap, mode, sigma_scale)[None, :]      # (Th, Tw) 两个轴的外积
    w = w / w.max()                                                  # 峰值为 1
    return w.clamp_min(1e-4).float()                                 # 下限避免角落权重下溢为 0


def _axis_weights(n: int, overlap: float, mode: str, sigma_scale: float) -> torch.Tensor:
    """The 1-D profile of :func:`blend_weights` along an axis of ``n`` pixels. 单个轴上的权重曲线 (n,)"""
    i = torch.arange(n, dtype=torch.float64)                         # (n,) 像素位置
    if mode == "gaussian":
        sigma = max(sigma_scale * n, 1e-3)
        return torch.exp(-((i - (n - 1) / 2.0) ** 2) / (2.0 * sigma**2))   # 以切片中心为峰的高斯
    ramp = round(overlap * n) if mode == "linear" else 0             # 斜坡长度 = 重叠宽度
    if ramp <= 0:
        return torch.ones(n, dtype=torch.float64)                    # 常数权重：简单平均
    up = (i + 1.0) / (ramp + 1.0)                                    # 从左/上边界线性上升
    down = (n - i) / (ramp + 1.0)                                    # 向右/下边界线性下降
    return torch.clamp(torch.minimum(up, down), max=1.0)             # 梯形：中心为 1


def _pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Mirror-pad ``(B, C, H, W)`` at the bottom/right to at least ``(height, width)``.
    在下方和右侧镜像填充到至少 (height, width)
    """
    ph, pw = max(0, height - x.shape[-2]), max(0, width - x.shape[-1])   # 每个方向缺少的像素
    if ph == 0 and pw == 0:
        return x
    # reflect needs a pad shorter than the side; otherwise repeat the edge 镜像填充要求填充量小于边长，否则复制边缘
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)                       # (B, C, H + ph, W + pw)


def _batched(items: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    """Consecutive groups of ``size`` items (the last one may be shorter). 每 size 个一组"""
    for i in range(0, len(items), size):
        yield items[i:i + size]


def check_overlap(value: Any, name: str = "overlap") -> float:
    """The one rule for the tile overlap: a fraction in ``[0, 1)`` of the tile. 切片重叠比例必须在 [0, 1) 之内

    >>> check_overlap(0.25)
    0.25
    >>> check_overlap(1, "--overlap")
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: --overlap must be in [0, 1), got 1.
    """
    if not is_number(value) or not (0.0 <= value < 1.0):                    # NaN fails the comparison too 比较对 NaN 也不成立
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}.")
    return float(value)


def _check_settings(image: torch.Tensor, overlap: float, tile_batch: int) -> None:
    """Refuse a batch that is not 4-D, an overlap outside [0, 1) and a tile batch below 1. 检查参数"""
    if image.ndim != 4:
        raise ConfigError(f"sliding_window_inference expects (B, C, H, W), got shape {tuple(image.shape)}.")
    check_overlap(overlap)
    if int(tile_batch) < 1:
        raise ConfigError(f"tile_batch must be >= 1, got {tile_batch!r}.")


@torch.no_grad()
def sliding_window_inference(
    model: nn.Module,
    image: torch.Tensor,
    tile: int | Sequence[int] = 256,
    overlap: float = 0.25,
    tile_batch: int = 4,
    blend: str = "gaussian",
    device: str | torch.device | None = None,
    amp: str | AmpPolicy | None = None,
) -> torch.Tensor:
    """Predict an image tile by tile and blend the overlapping tiles.
    逐块预测图像并融合重叠的切片

    Tiles of ``tile`` pixels are cut with an overlap of at least ``overlap`` (the last tile is aligned to the
    border), sent to ``device`` ``tile_batch`` at a time, and their logits are added into a CPU canvas with the
    weights of :func:`blend_weights`; a second canvas sums the weights, and the result is ``sum / weights``.
    An image smaller than a tile is mirror-padded to the tile size and cropped back.
    按至少 overlap 的重叠切块，每次把 tile_batch 块送到设备；logits 按权重累加到 CPU 画布上，再除以权重之和

    Args:
        model: maps ``(N, C, Th, Tw)`` to ``(N, K, Th, Tw)`` logits; the caller sets eval mode. 网络
        image: ``(B, C, H, W)`` float32, already preprocessed (normalised, scaled). 已预处理的图像
        tile: tile size ``T`` or ``(Th, Tw)`` at the network's input resolution. 切片大小
        overlap: fraction of a tile shared with its neighbour, in ``[0, 1)``. 重叠比例
        tile_batch: tiles per forward pass. 每次前向的切片数
        blend: ``"gaussian"`` | ``"linear"`` | ``"constant"`` (see :func:`blend_weights`). 融合方式
        device: where the network runs; default: the model's device. 推理设备
        amp: ``None`` (full precision), a mode of :func:`unet_course.precision.amp_policy` (``"auto"``,
            ``"off"``, ``"fp16"``, ``"bf16"``) or an ``AmpPolicy``. 混合精度

    Returns:
        float32 ``(B, K, H, W)`` logits on the CPU. CPU 上的 float32 logits

    Raises:
        ConfigError: ``overlap`` outside ``[0, 1)``, a bad tile size, batch size, blend or amp mode, or a model
            whose output size differs from its input size.

    >>> logits = sliding_window_inference(nn.Conv2d(1, 2, 1), torch.zeros(1, 1, 40, 50), tile=32)
    >>> tuple(logits.shape)
    (1, 2, 40, 50)
    """
    _check_settings(image, overlap, tile_batch)
    th, tw = pair(tile, "tile")                                      # 切片的高和宽
    device = torch.device(device) if device is not None else model_device(model)
    policy = as_policy(amp, device)                                  # "auto" 的含义由 precision 统一决定
    nhwc = nhwc_for_inference(model, device, policy)                 # bf16 的 CPU 与 CUDA 上输入和权重都用 NHWC
    b, _, h, w = image.shape                                         # 原始尺寸，最后裁回
    x = _pad_to(image.detach().cpu().float(), th, tw)                # (B, C, Hp, Wp) 小于切片时镜像填充
    hp, wp = x.shape[-2:]
    weight = blend_weights((th, tw), overlap, blend)                 # (Th, Tw) 每块切片的像素权重
    positions = [(y, x0) for y in tile_starts(hp, th, overlap) for x0 in tile_starts(wp, tw, overlap)]
    canvas: torch.Tensor | None = None                               # (B, K, Hp, Wp) 加权 logits 之和
    norm = torch.zeros(1, 1, hp, wp)                                 # (1, 1, Hp, Wp) 权重之和
    for group in _batched(positions, int(tile_batch)):
        tiles = torch.cat([x[:, :, y:y + th, x0:x0 + tw] for y, x0 in group]).to(device, non_blocking=True)
        if nhwc:
            tiles = tiles.contiguous(memory_format=torch.channels_last)   # (n*B, C, Th, Tw) NHWC 布局
        with autocast(policy):
            out = model(tiles)                                       # (n*B, K, Th, Tw) 只有切片上设备
        out = out.float().cpu()                                      # 回到 CPU 上的 float32
        if out.shape[-2:] != (th, tw):
            raise ConfigError(
                f"The model returned {tuple(out.shape[-2:])} for a {th}x{tw} tile; sliding-window inference needs "
                "a network whose output has its input's size (a padded U-Net)."
            )
        if canvas is None:
            canvas = torch.zeros(b, out.shape[1], hp, wp)             # 第一次前向后才知道类别数 K
        out = out.view(len(group), b, *out.shape[1:])                # (n, B, K, Th, Tw) 按切片分组
        for k, (y, x0) in enumerate(group):
            canvas[:, :, y:y + th, x0:x0 + tw] += out[k] * weight    # 加权累加 logits
            norm[:, :, y:y + th, x0:x0 + tw] += weight               # 累加权重（归一化因子）
    assert canvas is not None                                        # 至少有一块切片
    return (canvas / norm)[:, :, :h, :w].contiguous()                # (B, K, H, W) 归一化并去掉填充


__all__ = ["BLEND_MODES", "blend_weights", "check_overlap", "sliding_window_inference", "tile_starts"]
