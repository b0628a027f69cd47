"""Arrays that ``imshow`` shows correctly: display images, coloured class indices, overlays and error maps.
imshow 能正确显示的数组：显示用图像、按类别上色、叠加图与误差图

**Colour class indices, not raw values.** A ``{0, 1}`` mask shown with ``imshow`` on a 0..255 scale looks all
black. Every mask here is class indices (raw mask values are read through ``mask_values`` with
:func:`unet_course.data.masks.values_to_indices`, never guessed) and is coloured with the fixed :data:`PALETTE`, so
class 1 is always a bright colour.
按类别索引而非原始取值上色：{0, 1} 掩码按 0..255 显示会一片漆黑；原始取值一律通过 mask_values 映射（不做猜测），
再用固定调色板上色
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.masks import values_to_indices

#: Fixed colours for class indices 0..K-1 (uint8 RGB); class 0 (background) is black. 类别索引的固定配色
PALETTE = np.array(
    [
        (0, 0, 0),          # 0 background 背景
        (255, 64, 64),      # 1 red 红
        (64, 200, 255),     # 2 sky blue 天蓝
        (255, 210, 0),      # 3 yellow 黄
        (80, 220, 100),     # 4 green 绿
        (200, 90, 255),     # 5 violet 紫
        (255, 140, 30),     # 6 orange 橙
        (0, 160, 160),      # 7 teal 青
        (255, 120, 200),    # 8 pink 粉
        (150, 150, 150),    # 9 grey 灰
    ],
    dtype=np.uint8,
)

#: Colour of ignored pixels (outside the FOV / ignore_index). 忽略像素的颜色
IGNORE_COLOUR = np.array((40, 40, 90), dtype=np.uint8)


def to_numpy(x: Any) -> np.ndarray:
    """torch tensor / PIL image / array -> numpy array (detached, on the CPU). 转为 numpy 数组"""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def class_indices(mask: Any, mask_values: Sequence[int] | None = None, ignore_index: int = 255) -> np.ndarray:
    """A mask -> int64 class indices ``(H, W)`` for colouring; ``-1`` marks ignored pixels.
    把掩码转为用于上色的类别索引；-1 表示忽略的像素

    Without ``mask_values`` the mask already holds class indices (a dataset item's ``"mask"``, a prediction's
    ``labels``); ``ignore_index`` becomes ``-1``. With ``mask_values`` the raw values are mapped by
    :func:`unet_course.data.masks.values_to_indices`, and ``ignore_index`` pixels (when it is not one of the
    values) become ``-1``. 未给 mask_values 时视为类别索引；给出时按 values_to_indices 映射，未知取值报错

    Raises:
        DataError: a raw value that is not in ``mask_values``.

    >>> class_indices(np.array([[0, 255]], np.uint8), mask_values=[255, 0]).tolist()
    [[1, 0]]
    >>> class_indices(np.array([[0, 1, 255]])).tolist()
    [[0, 1, -1]]
    """
    m = to_numpy(mask)
    if m.ndim == 3:
        m = m[..., 0] if m.shape[-1] in (1, 3, 4) else m[0]      # (H, W, 1) 或 (1, H, W) -> (H, W)
    if m.dtype == np.bool_:
        return m.astype(np.int64)                                 # False/True -> 0/1
    ignored = m == ignore_index
    if mask_values is None:
        return np.where(ignored, -1, m).astype(np.int64)
    if int(ignore_index) in [int(v) for v in mask_values]:
        ignored = np.zeros_like(ignored)                           # 该取值本身是一个类别
    filled = np.where(ignored, int(mask_values[0]), m)            # 忽略像素先填一个合法取值
    out = values_to_indices(filled, mask_values, "mask")          # (H, W) int64
    out[ignored] = -1
    return out


def display_image(image: Any, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> np.ndarray:
    """Any image -> something ``imshow`` shows correctly: uint8 ``(H, W, 3)`` or ``(H, W)``.
    把任意图像转为 imshow 可正确显示的形式

    Args:
        image: uint8 ``(H, W[, C])``, or a float ``(C, H, W)`` tensor as produced by a dataset (normalised; pass
            ``mean``/``std`` to undo it, otherwise it is min-max scaled). 原始图像或归一化后的张量
        mean, std: the normalisation to undo. 需要还原的归一化参数

    Returns:
        uint8 ``(H, W)`` (one channel) or ``(H, W, 3)``; a 4th (alpha) channel is dropped.
    """
    a = to_numpy(image)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)                          # (C, H, W) -> (H, W, C)
    elif a.ndim == 3 and a.shape[0] in (1, 3) and a.dtype != np.uint8:
        a = np.moveaxis(a, 0, -1)                          # 浮点张量默认按 (C, H, W) 处理
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        if mean is not None and std is not None:
            c = a.shape[-1] if a.ndim == 3 else 1
            m = np.asarray(mean, dtype=np.float32).reshape(-1)[:c]
            s = np.asarray(std, dtype=np.float32).reshape(-1)[:c]
            a = a * s + m                                  # 反归一化
            a = a * 255.0 if float(np.nanmax(m)) <= 1.0 else a
        else:
            lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
            a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3:
        a = a[..., :3]
        if a.shape[-1] == 1:
            a = a[..., 0]
    return a


def colorize(labels: Any, palette: np.ndarray | None = None, ignore_index: int | None = 255) -> np.ndarray:
    """Class indices ``(H, W)`` -> uint8 RGB ``(H, W, 3)`` with a fixed palette.
    类别索引 -> 固定调色板的 RGB 图像

    Index ``i`` gets ``palette[i % len(palette)]`` (class 0 black, class 1 red, ...); ``ignore_index`` and negative
    values get :data:`IGNORE_COLOUR`. 忽略值和负值使用专门的颜色

    >>> colorize(np.array([[0, 1]]))[0, 1].tolist()
    [255, 64, 64]
    """
    pal = PALETTE if palette is None else np.asarray(palette, dtype=np.uint8)
    lab = to_numpy(labels).astype(np.int64)
    ignored = lab < 0
    if ignore_index is not None:
        ignored |= lab == ignore_index
    rgb = pal[np.where(ignored, 0, lab) % len(pal)]        # (H, W, 3)
    rgb[ignored] = IGNORE_COLOUR
    return rgb


def overlay(image: Any, labels: Any, alpha: float = 0.5, palette: np.ndarray | None = None,
            mask_values: Sequence[int] | None = None, background: int | None = 0) -> np.ndarray:
    """Blend class colours over an image; background pixels keep the image.
    把类别颜色半透明地叠加到图像上；背景像素保持原图

    Args:
        image: uint8 ``(H, W[, C])`` (or a normalised ``(C, H, W)`` tensor). 图像
        labels: ``(H, W)`` class indices, or raw mask values together with ``mask_values``. 类别索引或原始取值
        alpha: opacity of the colour. 颜色不透明度
        palette: colours per class index (default :data:`PALETTE`). 调色板
        mask_values: raw values in class order, to read a raw mask (see :func:`class_indices`). 原始取值
        background: class index left uncoloured (``None`` colours every class). 不上色的类别

    Returns:
        uint8 ``(H, W, 3)``.

    Raises:
        ValueError: the mask and the image differ in size. DataError: a raw value not in ``mask_values``.
    """
    img = display_image(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)       # 灰度 -> RGB
    lab = class_indices(labels, mask_values)
    if lab.shape != img.shape[:2]:
        raise ValueError(f"overlay: mask shape {lab.shape} differs from the image shape {img.shape[:2]}.")
    colours = colorize(lab, palette).astype(np.float32)
    paint = np.ones(lab.shape, dtype=bool) if background is None else lab != background
    out = img.astype(np.float32)
    out[paint] = (1.0 - alpha) * out[paint] + alpha * colours[paint]
    return np.clip(out, 0, 255).astype(np.uint8)


def error_map(pred: Any, truth: Any, valid: Any = None) -> np.ndarray:
    """Binary error colours: TP white, FP red, FN blue, TN black, outside ``valid`` dark grey.
    二值误差图：TP 白、FP 红、FN 蓝、TN 黑，valid 之外为深灰

    Args:
        pred, truth: ``(H, W)`` class indices (foreground = class >= 1; ``255`` or ``-1`` in truth is ignored).
            类别索引
        valid: bool ``(H, W)`` scored pixels. 参与评分的像素

    Returns:
        uint8 ``(H, W, 3)``.
    """
    p = to_numpy(pred) > 0
    t = to_numpy(truth)
    ignored = (t == 255) | (t < 0)
    t_fg = (t > 0) & ~ignored
    rgb = np.zeros((*p.shape, 3), dtype=np.uint8)
    rgb[p & t_fg] = (255, 255, 255)
    rgb[p & ~t_fg] = (255, 60, 60)
    rgb[~p & t_fg] = (60, 120, 255)
    skip = ignored if valid is None else ~to_numpy(valid).astype(bool) | ignored
    rgb[skip] = (60, 60, 60)
    return rgb


__all__ = ["IGNORE_COLOUR", "PALETTE", "class_indices", "colorize", "display_image", "error_map", "overlay",
           "to_numpy"]
