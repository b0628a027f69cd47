"""Prediction: whole image or overlap-tile sliding window, flip TTA, scoring at native resolution.
预测：整图推理或重叠切片滑动窗口推理、翻转测试时增强（TTA），以及在原始分辨率上评分

The U-Net paper predicts large images with the *overlap-tile* strategy: the network sees one tile at a time and
the tiles are stitched back together. This module does the same with three practical choices:
U-Net 论文用*重叠切片*（overlap-tile）策略预测大图：网络每次只看一块切片，最后再拼回整图。本模块的做法：

1. **Blended, not cropped.** The paper uses valid convolutions and keeps only the centre of each tile. Our U-Net
   pads, so every tile output has the tile's size, but pixels near a tile border saw less context. Overlapping
   tiles are averaged with smooth weights (a Gaussian or a linear ramp that fades towards the tile border) and a
   normaliser, so there are no hard seams. ``blend="constant"`` (a plain average) is kept only for comparison.
   与论文不同：论文使用无填充卷积并只保留切片中心；本项目的 U-Net 有填充，切片边缘的像素上下文较少，
   所以用平滑权重（高斯或线性斜坡）加权平均重叠区域，并除以权重之和，避免硬接缝
2. **The canvas lives on the CPU.** Only tiles travel to the device, so an image far larger than one forward pass
   fits. 拼接画布放在 CPU 上，只有切片送到设备，因此可以预测远大于一次前向所能容纳的图像
3. **Back to the original size.** Prediction uses the training preprocessing (``scale``, mean/std). When
   ``scale != 1`` the class probabilities are resized back with ``F.interpolate(mode="bilinear")`` *before*
   thresholding, so the mask has the input's size. 当 scale != 1 时，先把概率双线性插值回原尺寸，再取阈值

Flip TTA (test-time augmentation) averages the class probabilities of the identity, horizontal, vertical and
both flips after un-flipping them. 翻转 TTA：对原图、水平、垂直和双向翻转的预测概率取反翻转后求平均

Shapes: ``image`` uint8 ``(H, W, C)``; probabilities float32 ``(K, H, W)`` with ``K >= 2`` (a binary sigmoid
model gives ``[1 - p, p]``); labels int64 ``(H, W)``; the mask holds the original mask values (``mask_values``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError, ConfigError, DataError

#: Image file suffixes that ``--input-dir`` picks up. --input-dir 会读取的图像后缀
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp")

#: Blending modes of :func:`sliding_window_inference`. 滑动窗口的融合方式
BLEND_MODES = ("gaussian", "linear", "constant")

#: Flip sets of TTA: the dims of a ``(B, K, H, W)`` tensor to flip; ``()`` is the identity. TTA 的翻转维度
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


# ----------------------------------------------------------------------------------------------------------------
# Result 结果
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Prediction:
    """The prediction for one image. 单张图像的预测结果

    Attributes:
        probs: float32 ``(K, H, W)`` class probabilities, ``K >= 2``; they sum to 1 over ``K``.
            类别概率，K 维上和为 1
        labels: int64 ``(H, W)`` class indices (``probs[1] > threshold`` when ``K == 2``, else arg-max).
            类别索引（两类时按阈值，多类时取最大）
        mask: ``(H, W)`` the labels written as the original mask values (uint8 when they fit).
            用原始掩码取值表示的预测（能放下时为 uint8）
        model_size: ``(h, w)`` the size the network saw (after ``scale``). 网络实际看到的尺寸
        threshold: the threshold used for two classes (None for arg-max). 使用的阈值
    """

    probs: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    model_size: tuple[int, int] = (0, 0)
    threshold: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def foreground(self) -> np.ndarray:
        """float32 ``(H, W)`` probability of class 1 (the foreground of a binary task). 前景（类别 1）的概率"""
        return self.probs[1]


# ----------------------------------------------------------------------------------------------------------------
# Small helpers 小工具
# ----------------------------------------------------------------------------------------------------------------
def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """``64`` -> ``(64, 64)``; checks that both sides are >= 1. 把整数展开为 (高, 宽)"""
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        items = tuple(int(v) for v in value)
        if len(items) != 2:
            raise ConfigError(f"{name} must be an int or a pair (height, width), got {value!r}.")
        pair = items  # type: ignore[assignment]
    if min(pair) < 1:
        raise ConfigError(f"{name} must be >= 1 pixel, got {value!r}.")
    return pair


def _model_device(model: nn.Module) -> torch.device:
    """Device of the first parameter (CPU for a parameter-free module). 模型参数所在设备"""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """Mixed precision for inference. 推理时的混合精度

    ``"auto"`` means fp16 on CUDA and full precision elsewhere (bf16 on a CPU is slower than fp32 for small
    convolutions and blurs probabilities near the threshold). ``"fp16"`` / ``"bf16"`` force a dtype; ``"off"``
    or ``None`` disable it. 推理时 auto 只在 CUDA 上启用 fp16
    """
    amp = (amp or "off").lower()
    if amp not in ("auto", "off", "fp16", "bf16"):
        raise ConfigError(f"Unknown amp {amp!r}; choose one of: auto, off, fp16, bf16.")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _amp_context(device: torch.device, amp_policy: Any) -> contextlib.AbstractContextManager:
    """Accept ``None``, an amp string, or an :class:`unet_course.precision.AmpPolicy`. 兼容多种 AMP 参数"""
    if amp_policy is None or isinstance(amp_policy, str):
        return _autocast(device, amp_policy)
    from .precision import autocast as policy_autocast  # 训练用的 AmpPolicy 对象

    return policy_autocast(amp_policy)


def load_image(image: Any, name: str | None = None) -> np.ndarray:
    """Bring an image to uint8 ``(H, W, C)``.
    把输入统一为 uint8 (H, W, C)

    Args:
        image: a path, a PIL image, or a numpy array ``(H, W)`` / ``(H, W, C)`` (uint8, bool, or integers in
            0..255). 路径、PIL 图像或 numpy 数组
        name: how to call the image in error messages. 错误消息中使用的名称

    Returns:
        uint8 ``(H, W, C)``.

    Raises:
        DataError: unreadable file, or an array that is not an image.
    """
    if isinstance(image, (str, os.PathLike)):
        from .data.io import read_image

        return np.array(read_image(image), dtype=np.uint8, order="C", copy=True)   # 可写副本
    label = name or "image"
    if hasattr(image, "mode") and hasattr(image, "size") and not isinstance(image, np.ndarray):
        # PIL 图像：调色板/1 位图转为灰度，其余保持通道数
        if image.mode in ("P", "1", "I;16", "I", "F"):
            image = image.convert("L") if image.mode in ("1", "P") else image
        image = np.asarray(image)
    if torch.is_tensor(image):
        raise DataError(
            f"{label}: got a torch tensor; predict_image wants the raw uint8 image (H, W, C) as a numpy array "
            "(use dataset.raw(i)[0]), because it applies the training preprocessing itself."
        )
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]                      # (H, W) -> (H, W, 1)
    if array.ndim != 3 or array.shape[-1] > 4 or min(array.shape[:2]) < 1:
        raise DataError(f"{label}: expected an image (H, W) or (H, W, C) with C <= 4, got shape {array.shape}.")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.integer) and array.size and array.min() >= 0 and array.max() <= 255:
            array = array.astype(np.uint8)
        else:
            raise DataError(
                f"{label}: expected uint8 pixel values, got {array.dtype} with range "
                f"[{array.min() if array.size else 0}, {array.max() if array.size else 0}]; rescale it to 0..255 first."
            )
    return np.ascontiguousarray(array)


def _labels_to_mask(labels: np.ndarray, mask_values: Sequence[int] | None) -> np.ndarray:
    """Class indices -> original mask values (uint8 when they fit). 类别索引 -> 原始掩码取值"""
    if mask_values is None:
        return labels.astype(np.uint8) if labels.size == 0 or labels.max() <= 255 else labels
    try:
        from .data.masks import indices_to_values
    except ImportError:    # data 包尚未就绪时的退路
        indices_to_values = None
    if indices_to_values is not None:
        mask = np.asarray(indices_to_values(labels, list(mask_values)))
    else:
        mask = np.asarray(mask_values)[labels]
    if mask.size and mask.min() >= 0 and mask.max() <= 255:
        return mask.astype(np.uint8)
    if mask.size and mask.min() >= 0 and mask.max() <= 65535:
        return mask.astype(np.uint16)
    return mask


def _preprocess(image: np.ndarray, mean: Sequence[float], std: Sequence[float], scale: float) -> torch.Tensor:
    """The training preprocessing of one raw image -> ``(1, C, h, w)`` float32. 与训练相同的预处理"""
    from .data.transforms import preprocess_image

    x = preprocess_image(image, mean, std, scale)
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim == 3:
        x = x[None]                                   # (C, h, w) -> (1, C, h, w)
    return x


def logits_to_probs(logits: torch.Tensor, mode: str = "multiclass") -> torch.Tensor:
    """Network output -> class probabilities with ``K >= 2`` channels.
    网络输出 -> 至少两个通道的类别概率

    Args:
        logits: ``(B, K, H, W)`` raw scores; ``K == 1`` means a binary sigmoid model. 原始得分
        mode: ``"multiclass"`` (softmax) or ``"binary"`` (sigmoid of a single channel). 模式

    Returns:
        ``(B, max(K, 2), H, W)`` probabilities; a single sigmoid channel ``p`` becomes ``[1 - p, p]``.

    Raises:
        ConfigError: ``mode="binary"`` with more than one output channel.

    >>> logits_to_probs(torch.zeros(1, 1, 2, 2), "binary")[0, :, 0, 0]
    tensor([0.5000, 0.5000])
    """
    logits = logits.float()
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)                      # (B, 1, H, W)
        return torch.cat([1.0 - p, p], dim=1)          # (B, 2, H, W)
    if mode == "binary":
        raise ConfigError(f"mode='binary' needs a model with 1 output channel, got {logits.shape[1]}.")
    return torch.softmax(logits, dim=1)                # (B, K, H, W)


def probs_to_labels(probs: torch.Tensor | np.ndarray, threshold: float | None = 0.5) -> np.ndarray:
    """Class probabilities ``(K, H, W)`` -> int64 labels ``(H, W)``.
    类别概率 -> 类别索引

    With two classes the foreground is ``probs[1] > threshold`` (so a threshold slider works for binary and for
    two-class softmax models); with more classes (or ``threshold=None``) it is the arg-max.
    两类时前景为 probs[1] > threshold；多类或阈值为 None 时取最大概率的类别
    """
    p = torch.as_tensor(probs)
    if p.shape[0] == 2 and threshold is not None:
        return (p[1] > float(threshold)).to(torch.int64).numpy()
    return p.argmax(dim=0).to(torch.int64).numpy()


# ----------------------------------------------------------------------------------------------------------------
# Sliding window 滑动窗口
# ----------------------------------------------------------------------------------------------------------------
def tile_starts(size: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of the tiles along one axis.
    单个轴上各切片的起点

    The number of tiles is the smallest that keeps the overlap at least ``overlap``; the starts are spread evenly
    from 0 to ``size - tile``, so the first tile touches the top/left border and the last one the bottom/right
    border (no tile hangs over the edge). A ``size`` smaller than the tile gives one tile at 0 (the caller pads).
    切片数取保证重叠比例不低于 overlap 的最小值，起点在 0 到 size - tile 之间均匀分布，最后一块与边界对齐

    >>> tile_starts(100, 32, 0.25)
    [0, 23, 45, 68]
    >>> tile_starts(20, 32, 0.25)
    [0]
    """
    if size <= tile:
        return [0]
    stride = max(1, int(tile * (1.0 - overlap)))       # 请求的最大步幅
    n = math.ceil((size - tile) / stride) + 1           # 覆盖整个轴所需的切片数
    span = size - tile
    # 四舍五入到整数，并保证首尾对齐边界
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
        float32 ``(Th, Tw)`` weights in ``(0, 1]``; strictly positive so every pixel gets a normaliser > 0.
        权重严格为正，保证每个像素的归一化因子大于 0
    """
    th, tw = _pair(tile, "tile")
    if mode not in BLEND_MODES:
        raise ConfigError(f"Unknown blend {mode!r}; choose one of: {', '.join(BLEND_MODES)}.")

    def axis(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float64)
        if mode == "gaussian":
            sigma = max(sigma_scale * n, 1e-3)
            return torch.exp(-((i - (n - 1) / 2.0) ** 2) / (2.0 * sigma**2))
        ramp = round(overlap * n) if mode == "linear" else 0
        if ramp <= 0:
            return torch.ones(n, dtype=torch.float64)
        # 梯形：中心为 1，在边界 ramp 个像素内线性下降
        up = (i + 1.0) / (ramp + 1.0)
        down = (n - i) / (ramp + 1.0)
        return torch.clamp(torch.minimum(up, down), max=1.0)

    w = axis(th)[:, None] * axis(tw)[None, :]          # (Th, Tw)
    w = w / w.max()
    return w.clamp_min(1e-4).float()                   # 下限避免角落权重下溢为 0


def _pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` at the bottom/right to at least ``(height, width)`` by mirroring.
    在下方和右侧镜像填充到至少 (height, width)
    """
    ph, pw = max(0, height - x.shape[-2]), max(0, width - x.shape[-1])
    if ph == 0 and pw == 0:
        return x
    # 镜像填充要求填充量小于边长；否则退回到复制边缘
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _batched(items: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


@torch.no_grad()
def sliding_window_inference(
    model: nn.Module,
    image: torch.Tensor,
    tile: int | Sequence[int] = 256,
    overlap: float = 0.25,
    tile_batch: int = 4,
    blend: str = "gaussian",
    device: str | torch.device | None = None,
    amp_policy: Any = None,
) -> torch.Tensor:
    """Predict an image tile by tile and blend the overlapping tiles.
    逐块预测图像并融合重叠的切片

    Tiles of ``tile`` pixels are cut with an overlap of at least ``overlap`` (the last tile is aligned to the
    border), sent to ``device`` ``tile_batch`` at a time, and their logits are added into a CPU canvas with the
    weights of :func:`blend_weights`; a second canvas sums the weights, and the result is ``sum / weights``.
    An image smaller than a tile is mirror-padded to the tile size and cropped back.
    按至少 overlap 的重叠切块，每次把 tile_batch 块送到设备；logits 按权重累加到 CPU 画布上，再除以权重之和

    Args:
        model: a network mapping ``(N, C, Th, Tw)`` to ``(N, K, Th, Tw)`` logits; the caller sets eval mode.
            网络（调用方负责设为 eval 模式）
        image: ``(B, C, H, W)`` float32, already preprocessed (normalised, scaled). 已预处理的图像
        tile: tile size ``T`` or ``(Th, Tw)`` at the network's input resolution. 切片大小
        overlap: fraction of a tile shared with its neighbour, in ``[0, 1)``. 重叠比例
        tile_batch: tiles per forward pass. 每次前向的切片数
        blend: ``"gaussian"`` | ``"linear"`` | ``"constant"`` (see :func:`blend_weights`). 融合方式
        device: where the network runs; default: the model's device. 推理设备
        amp_policy: ``None`` (full precision), an amp string (``"auto"``, ``"fp16"``, ``"bf16"``, ``"off"``) or an
            ``AmpPolicy`` from :mod:`unet_course.precision`. 混合精度设置

    Returns:
        float32 ``(B, K, H, W)`` logits on the CPU. CPU 上的 float32 logits

    Raises:
        ConfigError: ``overlap`` outside ``[0, 1)``, a bad tile size, batch size or blend mode.

    Example::

        x = preprocess_image(img, mean, std, 1.0)                      # (1, 3, 584, 565)
        logits = sliding_window_inference(model.eval(), x, tile=128, overlap=0.5)
    """
    if image.ndim != 4:
        raise ConfigError(f"sliding_window_inference expects (B, C, H, W), got shape {tuple(image.shape)}.")
    if not (0.0 <= float(overlap) < 1.0):
        raise ConfigError(f"overlap must be in [0, 1), got {overlap!r}.")
    if int(tile_batch) < 1:
        raise ConfigError(f"tile_batch must be >= 1, got {tile_batch!r}.")
    th, tw = _pair(tile, "tile")
    device = torch.device(device) if device is not None else _model_device(model)
    b, _, h, w = image.shape
    x = _pad_to(image.detach().cpu().float(), th, tw)  # (B, C, Hp, Wp)，小于切片时镜像填充
    hp, wp = x.shape[-2:]
    weight = blend_weights((th, tw), overlap, blend)   # (Th, Tw)
    positions = [(y, x0) for y in tile_starts(hp, th, overlap) for x0 in tile_starts(wp, tw, overlap)]

    canvas: torch.Tensor | None = None                 # (B, K, Hp, Wp) 加权 logits 之和
    norm = torch.zeros(1, 1, hp, wp)                   # (1, 1, Hp, Wp) 权重之和
    for group in _batched(positions, int(tile_batch)):
        tiles = torch.cat([x[:, :, y:y + th, x0:x0 + tw] for y, x0 in group])    # (n*B, C, Th, Tw)
        with _amp_context(device, amp_policy):
            out = model(tiles.to(device, non_blocking=True))
        out = out.float().cpu()                        # (n*B, K, Th, Tw)
        if out.shape[-2:] != (th, tw):
            raise ConfigError(
                f"The model returned {tuple(out.shape[-2:])} for a {th}x{tw} tile; sliding-window inference needs "
                "a network whose output has its input's size (a padded U-Net)."
            )
        if canvas is None:
            canvas = torch.zeros(b, out.shape[1], hp, wp)
        out = out.view(len(group), b, *out.shape[1:])  # (n, B, K, Th, Tw)
        for k, (y, x0) in enumerate(group):
            canvas[:, :, y:y + th, x0:x0 + tw] += out[k] * weight
            norm[:, :, y:y + th, x0:x0 + tw] += weight
    assert canvas is not None
    return (canvas / norm)[:, :, :h, :w].contiguous()  # (B, K, H, W) 去掉填充


# ----------------------------------------------------------------------------------------------------------------
# One image 单张图像
# ----------------------------------------------------------------------------------------------------------------
def _expected_channels(model: nn.Module) -> int | None:
    """``in_channels`` from the model's config, or from its first convolution. 模型期望的输入通道数"""
    config = getattr(model, "config", None)
    if isinstance(config, dict) and config.get("in_channels"):
        return int(config["in_channels"])
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


def match_model_channels(image: np.ndarray, expected: int | None, name: str, checkpoint: str | None = None) -> np.ndarray:
    """Check an image's channels against the model's ``in_channels``.
    检查图像通道数是否与模型的 in_channels 一致

    A grayscale image given to an RGB model is repeated to 3 channels, exactly as the training loaders do
    (``unet_course.data.io.match_channels``). Everything else that differs, RGB into a 1-channel model above all,
    is refused: dropping colour silently would feed the model data it never saw.
    灰度图输入 RGB 模型时复制为三通道（与训练时一致）；其余不一致（尤其 RGB 输入单通道模型）一律报错

    Raises:
        DataError: naming the file, both channel counts and the checkpoint (when given).
    """
    have = int(image.shape[-1])
    if expected is None or have == int(expected):
        return image
    if have == 1 and int(expected) == 3:
        return np.repeat(image, 3, axis=-1)               # (H, W, 1) -> (H, W, 3)
    source = f"the checkpoint {checkpoint!r}" if checkpoint else "the model"
    raise DataError(
        f"{name}: the image has {have} channel(s) but {source} expects {int(expected)}. Images are not converted "
        f"silently (that would drop or invent colour); convert the image to {int(expected)} channel(s) yourself, "
        f"or use a model trained on {have}-channel images."
    )


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    x: torch.Tensor,
    *,
    mode: str = "multiclass",
    tile: int | Sequence[int] | None = None,
    overlap: float = 0.25,
    tile_batch: int = 4,
    blend: str = "gaussian",
    tta: bool = False,
    device: str | torch.device | None = None,
    amp: Any = "auto",
) -> torch.Tensor:
    """Class probabilities for a preprocessed batch, whole image or tiled, optionally with flip TTA.
    对已预处理的批量计算类别概率（整图或切片，可选翻转 TTA）

    Args:
        model: the network (the caller sets eval mode). 网络
        x: ``(B, C, h, w)`` preprocessed images. 已预处理的图像
        mode, tile, overlap, tile_batch, blend, device, amp: as in :func:`predict_image`.
        tta: average over the four flips (identity, horizontal, vertical, both). 四种翻转取平均

    Returns:
        float32 ``(B, K, h, w)`` probabilities on the CPU, ``K >= 2``.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    total: torch.Tensor | None = None
    flips = TTA_FLIPS if tta else TTA_FLIPS[:1]
    for dims in flips:
        xi = x.flip(dims) if dims else x               # 翻转输入
        if tile is None:
            with _amp_context(device, amp):
                logits = model(xi.to(device)).float().cpu()      # (B, K, h, w)
        else:
            logits = sliding_window_inference(model, xi, tile, overlap, tile_batch, blend, device, amp)
        p = logits_to_probs(logits, mode)               # (B, K, h, w)
        p = p.flip(dims) if dims else p                 # 反翻转回原方向
        total = p if total is None else total + p
    assert total is not None
    return total / len(flips)


def predict_image(
    model: nn.Module,
    image: Any,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    scale: float = 1.0,
    mode: str = "multiclass",
    threshold: float | None = 0.5,
    mask_values: Sequence[int] | None = None,
    tile: int | Sequence[int] | None = None,
    overlap: float = 0.25,
    tile_batch: int = 4,
    blend: str = "gaussian",
    tta: bool = False,
    device: str | torch.device | None = None,
    amp: Any = "auto",
    resize_back: bool = True,
    name: str | None = None,
    enhance: str = "none",
) -> Prediction:
    """Predict one raw image with the training preprocessing, at the image's own size.
    用训练时的预处理预测一张原始图像，输出与输入同尺寸

    Steps: uint8 ``(H, W, C)`` -> contrast ``enhance`` (if any) -> ``preprocess_image`` (resize by ``scale``, normalise) -> ``(1, C, h, w)`` ->
    whole-image or sliding-window logits -> probabilities (flip TTA averages them) -> bilinear resize of the
    probabilities back to ``(H, W)`` -> threshold / arg-max -> mask values.
    步骤：预处理 -> 整图或滑动窗口推理 -> 概率（TTA 取平均）-> 双线性插值回原尺寸 -> 阈值/取最大 -> 掩码取值

    Args:
        model: a segmentation network; it is put in eval mode (its train/eval mode is restored afterwards) and
            moved to ``device`` if one is given. 分割网络（临时切到 eval 模式）
        image: uint8 ``(H, W, C)`` / ``(H, W)`` numpy array, a PIL image, or a path. 原始图像
        mean, std: per-channel normalisation of the training data (``meta["normalization"]``). 归一化参数
        scale: resize factor used in training (``meta["preprocess"]["scale"]``). 训练时的缩放比例
        mode: ``"multiclass"`` or ``"binary"``; a 1-channel model is treated as binary either way. 模式
        threshold: foreground threshold when there are two classes; ``None`` -> arg-max. 两类时的前景阈值
        mask_values: ``meta["mask_values"]``; class ``i`` is written as ``mask_values[i]``. None -> indices.
            类别 i 写为 mask_values[i]
        tile: ``None`` for one whole-image pass, else the sliding-window tile size (network resolution).
            None 表示整图推理，否则为滑动窗口切片大小
        overlap, tile_batch, blend: sliding-window settings (see :func:`sliding_window_inference`). 滑动窗口设置
        tta: flip test-time augmentation. 翻转测试时增强
        device: where the network runs; default: the model's device. 推理设备
        amp: ``"auto"`` (fp16 on CUDA only), ``"fp16"``, ``"bf16"`` or ``"off"``. 混合精度
        resize_back: interpolate the probabilities back to ``(H, W)`` (default). With ``False`` the result
            keeps the network's size ``(h, w)``, which shows why the step is needed when ``scale != 1``.
            是否插值回原尺寸；False 时保留网络尺寸，便于演示尺寸不一致的问题
        name: how to call the image in error messages. 错误消息中的图像名称
        enhance: the training's contrast enhancement (``meta["preprocess"]["enhance"]``, see
            :mod:`unet_course.data.enhance`), applied to the full image first. 训练时的对比度增强

    Returns:
        :class:`Prediction` with ``probs`` ``(K, H, W)``, ``labels`` ``(H, W)``, ``mask`` ``(H, W)``.

    Raises:
        DataError: the image cannot be read, or its channels do not fit the model's ``in_channels`` (a gray image
            for an RGB model is repeated to 3 channels, as in training; anything else is refused, see
            :func:`match_model_channels`).
        ConfigError: a bad tiling / amp / mode setting.

    Example::

        model, meta = load_model("runs/drive/best.pt")
        pred = predict_image(model, "01_test.tif", mean=meta["normalization"]["mean"],
                             std=meta["normalization"]["std"], mask_values=meta["mask_values"], tile=256)
        pred.mask.shape        # (584, 565), values {0, 255}
    """
    label = name or (str(image) if isinstance(image, (str, os.PathLike)) else "image")
    img = load_image(image, name=label)                   # (H, W, C) uint8
    height, width = img.shape[:2]
    if enhance != "none":
        from .data.enhance import enhance_image

        img = enhance_image(img, enhance, label)          # (H, W, 1) CLAHE 等对比度增强
    img = match_model_channels(img, _expected_channels(model), label)
    if not (0.0 < float(scale) <= 4.0):
        raise ConfigError(f"scale must be in (0, 4], got {scale!r}.")
    if threshold is not None and not (0.0 < float(threshold) < 1.0):
        raise ConfigError(f"threshold must be in (0, 1), got {threshold!r}.")
    if device is not None:
        device = torch.device(device)
        model.to(device)
    was_training = model.training
    model.eval()
    try:
        x = _preprocess(img, mean, std, float(scale))     # (1, C, h, w)
        probs = predict_probs(model, x, mode=mode, tile=tile, overlap=overlap, tile_batch=tile_batch,
                              blend=blend, tta=tta, device=device, amp=amp)   # (1, K, h, w)
    finally:
        model.train(was_training)
    model_size = (int(x.shape[-2]), int(x.shape[-1]))
    if resize_back and model_size != (height, width):
        # 先插值概率再取阈值：双线性插值是凸组合，概率之和仍为 1
        probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
    probs_np = probs[0].numpy().astype(np.float32, copy=False)   # (K, H, W)
    labels = probs_to_labels(probs_np, threshold if probs_np.shape[0] == 2 else None)
    mask = _labels_to_mask(labels, mask_values)
    return Prediction(probs=probs_np, labels=labels, mask=mask, model_size=model_size,
                      threshold=float(threshold) if threshold is not None and probs_np.shape[0] == 2 else None)


def predict_with_meta(model: nn.Module, meta: dict[str, Any], image: Any, **overrides: Any) -> Prediction:
    """:func:`predict_image` with the preprocessing read from a checkpoint's ``meta``.
    使用检查点 meta 中的预处理参数调用 predict_image

    ``overrides`` replace any keyword (``tile=256``, ``tta=True``, ``scale=0.5``, ``threshold=0.4``); a value of
    ``None`` for ``scale`` / ``threshold`` keeps the checkpoint's. 传入的关键字参数覆盖 meta 中的设置
    """
    settings = settings_from_meta(meta)
    for key in ("scale", "threshold", "mode"):
        if key in overrides and overrides[key] is None:
            overrides.pop(key)
    settings.update(overrides)
    return predict_image(model, image, **settings)


def settings_from_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`predict_image` stored in a checkpoint's ``meta``.
    从检查点 meta 中取出 predict_image 需要的参数

    Raises:
        CheckpointError: ``normalization`` or ``mask_values`` is missing.
    """
    norm = meta.get("normalization") or {}
    if "mean" not in norm or "std" not in norm:
        raise CheckpointError("The checkpoint has no normalization {mean, std}; it cannot be used for prediction.")
    if not meta.get("mask_values"):
        raise CheckpointError("The checkpoint has no mask_values; it cannot map classes back to mask values.")
    pre = meta.get("preprocess") or {}
    threshold = pre.get("threshold")
    return {
        "mean": list(norm["mean"]),
        "std": list(norm["std"]),
        "scale": float(pre.get("scale") or 1.0),
        "mode": pre.get("mode") or "multiclass",
        "threshold": 0.5 if threshold is None else float(threshold),
        "mask_values": list(meta["mask_values"]),
        "enhance": pre.get("enhance") or "none",
    }


# ----------------------------------------------------------------------------------------------------------------
# Scoring 评分
# ----------------------------------------------------------------------------------------------------------------
def _as_long_tensor(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a)).to(torch.int64)


def masked_target(target_labels: Any, valid: Any = None, ignore_index: int = 255) -> torch.Tensor:
    """int64 ``(H, W)`` targets with pixels outside ``valid`` set to ``ignore_index``.
    把 valid 之外的像素设为 ignore_index
    """
    target = _as_long_tensor(target_labels).clone()
    if valid is not None:
        keep = torch.from_numpy(np.array(valid, dtype=bool))
        if keep.shape != target.shape:
            raise DataError(f"valid mask shape {tuple(keep.shape)} differs from the target shape {tuple(target.shape)}.")
        target[~keep] = ignore_index
    return target


def score_prediction(
    pred_labels: Any,
    target_labels: Any,
    valid: Any = None,
    n_classes: int = 2,
    *,
    probs: Any = None,
    ignore_index: int = 255,
) -> dict[str, Any]:
    """Score one prediction against class-index targets, only where ``valid`` (e.g. inside the FOV).
    只在 valid 区域（如视野内）对一张预测评分

    Args:
        pred_labels: int ``(H, W)`` predicted class indices. 预测的类别索引
        target_labels: int ``(H, W)`` true class indices (``ignore_index`` pixels are skipped). 真实类别索引
        valid: bool ``(H, W)`` pixels to score; ``None`` scores all. 参与评分的像素
        n_classes: number of classes ``K``. 类别数
        probs: optional float ``(K, H, W)``; with ``K == 2`` adds ``"auc"`` (ROC AUC of ``probs[1]``).
            可选概率，两类时额外计算 AUC
        ignore_index: target value never scored. 忽略的目标值

    Returns:
        ``ConfusionMatrix.compute()`` (Dice/F1, IoU, accuracy, ...) plus ``"auc"`` when ``probs`` is given for a
        two-class task.

    Example::

        score_prediction(pred.labels, target, valid=fov, n_classes=2, probs=pred.probs)["dice"]
    """
    from .metrics import ConfusionMatrix

    pred = _as_long_tensor(pred_labels)
    target = masked_target(target_labels, valid, ignore_index)
    if pred.shape != target.shape:
        raise DataError(
            f"prediction shape {tuple(pred.shape)} differs from the target shape {tuple(target.shape)}; "
            "predict with resize_back=True so the mask has the image's size."
        )
    cm = ConfusionMatrix(n_classes, ignore_index=ignore_index)
    cm.update(pred, target)
    result = dict(cm.compute())
    if probs is not None and n_classes == 2:
        result["auc"] = _auc(probs, target, ignore_index)
    return result


def _auc(probs: Any, target: torch.Tensor, ignore_index: int) -> float:
    """ROC AUC of ``probs[1]`` over the scored pixels (NaN when only one class is present). 前景概率的 AUC"""
    from .metrics import roc_auc

    scores = torch.as_tensor(np.asarray(probs))[1].float()
    return float(roc_auc(scores, target, ignore_index=ignore_index))


def _target_indices(mask_raw: np.ndarray, mask_values: Sequence[int], name: str) -> np.ndarray:
    """Raw mask values -> class indices in the model's class order. 原始掩码取值 -> 模型的类别索引"""
    from .data.masks import values_to_indices

    return np.asarray(values_to_indices(np.asarray(mask_raw), list(mask_values), name))


def _check_dataset_classes(meta: dict[str, Any], dataset: Any) -> None:
    """The dataset must use the checkpoint's mask values, in the same class order. 数据集与检查点的类别顺序必须一致"""
    ds_values = getattr(dataset, "mask_values", None)
    ck_values = meta.get("mask_values")
    if ds_values is not None and ck_values is not None and list(ds_values) != list(ck_values):
        raise CheckpointError(
            f"The checkpoint maps classes to mask values {list(ck_values)} but the dataset uses {list(ds_values)}; "
            "evaluate the model on the data set it was trained for."
        )


def evaluate_dataset(
    model: nn.Module,
    meta: dict[str, Any],
    dataset: Any,
    *,
    tile: int | Sequence[int] | None = None,
    overlap: float = 0.25,
    tta: bool = False,
    threshold: float | None = None,
    device: str | torch.device | None = None,
    scale: float | None = None,
    tile_batch: int = 4,
    blend: str = "gaussian",
    amp: Any = "auto",
    indices: Sequence[int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score a labelled split at native resolution, with optional tiling and flip TTA.
    在原始分辨率上对有标签的数据划分评分（可选滑动窗口与翻转 TTA）

    Each sample comes from ``dataset.raw(i)`` (uint8 image, raw mask, valid/FOV mask), is predicted with
    :func:`predict_image` (the checkpoint's preprocessing, probabilities resized back to the image size) and
    compared with its own mask at the original size; pixels outside ``valid`` are not scored.
    每个样本通过 dataset.raw(i) 取得，经 predict_image 预测后在原始尺寸上与掩码比较，valid 之外的像素不计分

    Args:
        model: the network. 网络
        meta: the ``meta`` of :func:`unet_course.checkpoint.load_model` (``normalization``, ``preprocess``,
            ``mask_values``, ``class_names``). 检查点元信息
        dataset: a dataset with ``raw(i)`` and ``names`` (``build_dataset(...)``). 数据集
        tile, overlap, tile_batch, blend: sliding window; ``tile=None`` is one whole-image pass. 滑动窗口设置
        tta: flip test-time augmentation. 翻转 TTA
        threshold, scale: override the checkpoint's values (``None`` keeps them). 覆盖检查点中的阈值与缩放
        device, amp: where and how to run. 设备与混合精度
        indices: which samples (default: all). 参与评分的样本
        progress: called with one line per image (e.g. ``print``). 每张图调用一次的进度回调

    Returns:
        ``{"metrics": pooled confusion-matrix metrics (+ "auc": mean per-image AUC for two classes),
        "per_image": [{"name", "dice", ...}], "n_images", "settings": {...}, "seconds"}``. The pooled
        metrics count every scored pixel of every image once (micro average).
        汇总指标按所有图像的全部像素统计（微平均），另附每张图的指标

    Raises:
        DataError: the split has no labels. CheckpointError: the dataset's mask values differ from the model's.
    """
    from .metrics import ConfusionMatrix

    _check_dataset_classes(meta, dataset)
    settings = settings_from_meta(meta)
    if scale is not None:
        settings["scale"] = float(scale)
    if threshold is not None:
        settings["threshold"] = float(threshold)
    n_classes = len(settings["mask_values"])
    ignore_index = int(getattr(dataset, "ignore_index", 255))
    total = ConfusionMatrix(n_classes, ignore_index=ignore_index)
    names = list(getattr(dataset, "names", []) or [])
    chosen = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    per_image: list[dict[str, Any]] = []
    aucs: list[float] = []
    start = time.perf_counter()
    for i in chosen:
        name = names[i] if i < len(names) else f"#{i}"
        image, mask_raw, valid = dataset.raw(i)
        if mask_raw is None:
            raise DataError(
                f"Sample {name!r} has no label, so it cannot be scored; evaluate a labelled split "
                "(e.g. split='val' or 'train'), or use `unet-course predict` for unlabelled images."
            )
        pred = predict_image(model, image, tile=tile, overlap=overlap, tile_batch=tile_batch, blend=blend,
                             tta=tta, device=device, amp=amp, name=name, **settings)
        target = _target_indices(mask_raw, settings["mask_values"], name)     # (H, W)
        scores = score_prediction(pred.labels, target, valid, n_classes, probs=pred.probs,
                                  ignore_index=ignore_index)
        total.update(_as_long_tensor(pred.labels), masked_target(target, valid, ignore_index))
        if "auc" in scores and math.isfinite(scores["auc"]):
            aucs.append(scores["auc"])
        per_image.append({"name": name, **_plain(scores)})
        if progress is not None:
            progress(f"{name}: " + ", ".join(f"{k}={v:.4f}" for k, v in _headline(scores).items()))
    metrics = _plain(total.compute())
    if n_classes == 2:
        metrics["auc"] = float(np.mean(aucs)) if aucs else float("nan")
    return {
        "metrics": metrics,
        "per_image": per_image,
        "n_images": len(per_image),
        "settings": {"tile": tile, "overlap": overlap, "tta": tta, "blend": blend,
                     "scale": settings["scale"], "threshold": settings["threshold"]},
        "seconds": time.perf_counter() - start,
    }


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Tensors / numpy scalars -> Python numbers and lists (JSON-safe). 转为可写入 JSON 的基本类型"""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if torch.is_tensor(value):
            value = value.tolist()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _headline(scores: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics worth printing on one line. 适合单行打印的标量指标"""
    keys = ("dice", "pixel_error", "auc")
    return {k: float(scores[k]) for k in keys if k in scores and isinstance(scores[k], (int, float))}


def compare_resize_vs_sliding(
    model: nn.Module,
    meta: dict[str, Any],
    dataset: Any,
    *,
    train_size: int,
    indices: Sequence[int] | None = None,
    tile: int | None = None,
    overlap: float = 0.5,
    tta: bool = False,
    device: str | torch.device | None = None,
    tile_batch: int = 4,
) -> dict[str, Any]:
    """Two ways to predict an image larger than the training crops, scored at native resolution.
    两种预测大于训练尺寸图像的方法，在原始分辨率上比较

    - ``"resize"``: shrink the whole image so its longer side is ``train_size``, predict it in one pass and
      interpolate the probabilities back (what a model trained on resized images would do at test time).
      缩放：把整图缩小到长边为 train_size，一次前向后插值回原尺寸
    - ``"sliding"``: keep the native resolution the model was trained at and slide ``tile``-pixel tiles
      (default ``train_size``) with ``overlap``. 滑动窗口：保持原始分辨率，用 train_size 大小的切片滑动

    Args:
        model, meta: from :func:`unet_course.checkpoint.load_model` (or a freshly trained model and its meta).
        dataset: a labelled dataset with ``raw(i)``. 有标签的数据集
        train_size: side of the training crops in pixels. 训练裁剪的边长
        indices: held-out samples to score (default: all). 用于评分的样本
        tile, overlap, tta, device, tile_batch: sliding-window settings. 滑动窗口设置

    Returns:
        ``{"resize": evaluate-style result, "sliding": evaluate-style result, "train_size": int}``; compare
        ``result["resize"]["metrics"]["dice"]`` with ``result["sliding"]["metrics"]["dice"]``.
    """
    chosen = list(range(len(dataset))) if indices is None else list(indices)
    if not chosen:
        raise ConfigError("compare_resize_vs_sliding needs at least one sample index.")
    height, width = dataset.raw(chosen[0])[0].shape[:2]
    base_scale = float((meta.get("preprocess") or {}).get("scale") or 1.0)
    resize_scale = min(1.0, train_size / max(height, width))   # 长边缩到训练尺寸
    resize = evaluate_dataset(model, meta, dataset, indices=chosen, scale=resize_scale, tta=tta,
                              device=device)
    sliding = evaluate_dataset(model, meta, dataset, indices=chosen, scale=base_scale, tile=tile or train_size,
                               overlap=overlap, tta=tta, device=device, tile_batch=tile_batch)
    return {"resize": resize, "sliding": sliding, "train_size": int(train_size), "resize_scale": resize_scale}


# ----------------------------------------------------------------------------------------------------------------
# Field of view 视野
# ----------------------------------------------------------------------------------------------------------------
def find_fov_mask(folder: Path, image: Path) -> Path:
    """The field-of-view mask of ``image`` in ``folder``: ``<stem>_mask.*`` (DRIVE's naming) or ``<stem>.*``.
    在 folder 中查找 image 的视野掩码：<stem>_mask.* 或 <stem>.*

    Raises:
        DataError: the folder is missing, or holds no mask for this image (the message names both and the
            names that were tried).
    """
    if not folder.is_dir():
        raise DataError(f"--fov-dir {str(folder)!r} is not a folder; pass the folder of FOV masks "
                        "(for DRIVE: DRIVE/test/mask).")
    for stem in (f"{image.stem}_mask", image.stem):
        for candidate in sorted(folder.glob(f"{stem}.*")):
            if candidate.suffix.lower() in IMAGE_SUFFIXES:
                return candidate
    raise DataError(f"No field-of-view mask for {image.name} in {str(folder)!r} (looked for {image.stem}_mask.* "
                    f"and {image.stem}.*). Name the masks like the images, or leave out --fov-dir.")


def apply_fov(mask: np.ndarray, fov_path: Path, background: int) -> np.ndarray:
    """Set ``mask`` to ``background`` wherever the FOV mask at ``fov_path`` is 0. 视野之外设为背景值

    Raises:
        DataError: the FOV mask's size differs from the prediction's.
    """
    from .data.io import read_mask

    fov = read_mask(fov_path) > 0                                   # (H, W) bool
    if fov.shape != mask.shape:
        raise DataError(f"The FOV mask {str(fov_path)!r} is {fov.shape[1]}x{fov.shape[0]} but the image is "
                        f"{mask.shape[1]}x{mask.shape[0]}; use the FOV masks that belong to these images.")
    out = mask.copy()
    out[~fov] = background
    return out


__all__ = [
    "Prediction",
    "predict_image",
    "predict_with_meta",
    "predict_probs",
    "settings_from_meta",
    "sliding_window_inference",
    "blend_weights",
    "tile_starts",
    "logits_to_probs",
    "probs_to_labels",
    "load_image",
    "match_model_channels",
    "score_prediction",
    "masked_target",
    "evaluate_dataset",
    "compare_resize_vs_sliding",
    "find_fov_mask",
    "apply_fov",
    "TTA_FLIPS",
    "BLEND_MODES",
]
