"""Inspect mask files: which raw values they hold, how often, and the mistakes those values reveal.
检查掩码文件：存储了哪些原始取值、各占多少，以及这些取值暴露出的常见错误

:func:`inspect_masks` (``unet-course inspect``) scans a folder, a list of files or arrays, or a data set, and returns
a :class:`MaskReport` whose warnings use the rules of :mod:`unet_course.data.masks` (stray values, two binary
encodings, a void-looking 255), so inspection and discovery never disagree.
inspect_masks 扫描掩码并返回报告；警告使用 masks 模块中的同一组规则，检查与自动发现不会互相矛盾
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .io import image_subfolders, is_image_file, page_count, read_stack
from .masks import find_stray_values, mixed_binary_encodings, scan_masks, stray_message, void_hint


@dataclass
class MaskReport:
    """What a set of mask files holds, with warnings about common mistakes.
    一组掩码的统计报告，并附带常见错误的警告

    Attributes:
        values: sorted raw values found. 发现的取值
        counts: pixel count per value (same order as ``values``). 每个取值的像素数
        n_files: number of masks scanned. 扫描的掩码数
        shapes: distinct ``(H, W)`` seen. 出现过的尺寸
        warnings: human-readable warnings (also issued with :func:`warnings.warn`). 警告列表
        mapping: the class-index order: a data set's own ``mask_values`` when a data set was inspected, else the
            sorted values. 类别顺序：检查数据集时使用其 mask_values，否则为升序取值
    """

    values: list[int]
    counts: list[int]
    n_files: int
    shapes: list[tuple[int, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    mapping: list[int] | None = None

    @property
    def frequencies(self) -> list[float]:
        """Fraction of all pixels holding each value. 每个取值占全部像素的比例"""
        total = max(1, sum(self.counts))
        return [c / total for c in self.counts]

    @property
    def mask_values(self) -> list[int]:
        """Raw values in class-index order (``mapping``, or the sorted values). 按类别顺序排列的取值"""
        return list(self.mapping) if self.mapping is not None else list(self.values)

    def __str__(self) -> str:
        lines = [f"Masks scanned: {self.n_files}   shapes: {', '.join(f'{h}x{w}' for h, w in self.shapes[:5])}"
                 + (" ..." if len(self.shapes) > 5 else ""),
                 f"{'value':>7} {'class':>6} {'pixels':>12} {'fraction':>9}"]
        rows = list(zip(self.values, self.counts, self.frequencies))
        order = self.mask_values
        for v, c, f in rows[:20]:
            cls = str(order.index(v)) if v in order else "-"
            lines.append(f"{v:>7} {cls:>6} {c:>12} {f:>9.4f}")
        if len(rows) > 20:
            lines.append(f"  ... {len(rows) - 20} more values")
        for w in self.warnings:
            lines.append(f"WARNING: {w}")
        return "\n".join(lines)


def _pages(paths: Sequence[Path]) -> tuple[list, list[str]]:
    """Each file as one mask, except a multi-page TIFF: each of its pages, named ``file.tif[k]``.
    每个文件一个掩码；多页 TIFF 的每一页各算一个
    """
    items: list = []
    names: list[str] = []
    for path in paths:
        if page_count(path) > 1:
            stack = read_stack(path)                                          # (N, H, W)
            if stack.ndim != 3:
                raise DataError(f"Mask stack {str(path)!r} has pages of shape {stack.shape[1:]}; a mask page must "
                                "hold one value per pixel. Convert it to single-channel index masks.")
            items += list(stack)
            names += [f"{path.name}[{k}]" for k in range(len(stack))]
        else:
            items.append(path)
            names.append(path.name)
    return items, names


def _mask_sources(masks) -> tuple[list, list[str]]:
    """Turn a folder / list of paths / list of arrays / data set into (items, names). 统一输入为掩码列表"""
    if hasattr(masks, "raw_mask") and hasattr(masks, "__len__"):
        if not getattr(masks, "has_labels", True):
            split = getattr(masks, "split", "this")
            raise DataError(f"The {split!r} split of {type(masks).__name__} has no masks to inspect (its images come "
                            "without labels, e.g. a test set whose labels are held back); inspect the 'train' "
                            "split instead.")
        items = [(lambda i=i: masks.raw_mask(i)) for i in range(len(masks))]
        names = list(getattr(masks, "names", [str(i) for i in range(len(masks))]))
        return items, names
    if isinstance(masks, str | Path):
        folder = Path(masks)
        if folder.is_dir():
            paths = sorted(p for p in folder.iterdir() if is_image_file(p))
            if not paths:
                raise DataError(f"No mask files found in {str(folder)!r}.{_subfolder_hint(folder)}")
            return _pages(paths)
        return _pages([folder])
    items = list(masks)
    names = [Path(m).name if isinstance(m, str | Path) else f"mask[{i}]" for i, m in enumerate(items)]
    return items, names


def _subfolder_hint(folder: Path) -> str:
    """Name the subfolders that hold image files (a data set's root was given instead of its masks folder)."""
    subs = image_subfolders(folder)
    if not subs:
        return ""
    masky = [d for d in subs if _named_like_masks(d)]
    pick = (masky or subs)[0]
    return (f" Its subfolders {', '.join(repr(d.name + '/') for d in subs[:6])} hold image files; pass the masks "
            f"folder itself, e.g. {str(pick)!r}.")


def _named_like_masks(folder: Path) -> bool:
    """True for a folder named like a mask folder (``masks``, ``labels``, DRIVE's ``1st_manual``). 目录名像掩码目录"""
    return any(word in folder.name.lower() for word in ("mask", "label", "manual"))


def _sibling_hint(masks) -> str:
    """For a folder that failed as masks and is not named like them: name a sibling that is (the images given).
    作为掩码读取失败、名字又不像掩码目录时，指出名字像掩码目录的同级目录（误传了图像目录）"""
    if not isinstance(masks, str | Path) or not Path(masks).is_dir() or _named_like_masks(Path(masks)):
        return ""
    folder = Path(masks).resolve()
    siblings = [d for d in image_subfolders(folder.parent) if d != folder and _named_like_masks(d)]
    if not siblings:
        return ""
    pick = siblings[0] if Path(masks).is_absolute() else Path(os.path.relpath(siblings[0]))   # "." -> "../masks"
    return (f" {str(masks)!r} may be the images folder: inspect reads masks, and its sibling {str(pick)!r} looks "
            "like them.")


def inspect_masks(masks, *, ignore_index: int = 255, max_files: int | None = None, warn: bool = True) -> MaskReport:
    """Scan masks and report their values, pixel frequencies and likely mistakes.
    扫描掩码，报告取值、像素频率以及可能的错误

    Warnings are raised (``warnings.warn``) and stored in ``report.warnings`` for:

    - **0/255 binary masks**: used directly as class indices, 255 is out of range for 2 classes and equals
      ``ignore_index``; the data sets map values through ``mask_values`` so this is handled, but hand-written code
      must do the same. 0/255 掩码不能直接当作类别索引
    - **interpolated masks**: besides two dominant values there are many distinct in-between values on a thin
      fraction of pixels, the mark of a mask resized with bilinear/bicubic interpolation (or saved as JPEG).
      插值缩放（或 JPEG 保存）过的掩码会在边界处出现许多中间取值
    - **stray values**: a value held by one mask on a tiny fraction of pixels (:func:`find_stray_values`, the rule
      that makes discovery refuse it). 只出现在一个掩码中的零星取值
    - **two binary encodings**: some masks 0/1, others 0/255 (:func:`mixed_binary_encodings`, the rule that makes
      discovery refuse them). 二值掩码混用 0/1 与 0/255 两种编码

    Args:
        masks: a folder of mask files, a list of paths or arrays, or a data set with ``raw_mask(i)``.
            掩码目录、路径或数组列表，或提供 raw_mask(i) 的数据集
        ignore_index: the target value ignored by the loss. 损失忽略的目标值
        max_files: scan at most this many (evenly spaced). 最多扫描的文件数
        warn: also call :func:`warnings.warn`. 是否同时发出 Python 警告

    Returns:
        A :class:`MaskReport`; ``print(report)`` gives a table.
    """
    items, names = _mask_sources(masks)
    mapping = list(masks.mask_values) if hasattr(masks, "raw_mask") and hasattr(masks, "mask_values") else None
    if max_files is not None and len(items) > max_files:
        keep = np.linspace(0, len(items) - 1, max_files).round().astype(int)
        items = [items[i] for i in keep]
        names = [names[i] for i in keep]
    if not items:
        raise DataError("inspect_masks got no masks to scan.")
    try:
        scan = scan_masks(items, names)
    except DataError as exc:
        raise DataError(f"{exc}{_sibling_hint(masks)}") from None
    values = sorted(scan.counts)
    report = MaskReport(values=values, counts=[scan.counts[v] for v in values], n_files=len(items),
                        shapes=scan.shapes, mapping=mapping)
    report.warnings = _diagnose(values, report.counts, ignore_index, report.mask_values)
    strays = find_stray_values(scan)
    if strays:
        report.warnings.append(stray_message(strays, values, sum(report.counts)))
    if mixed_binary_encodings(scan):
        report.warnings.append(mixed_binary_encodings(scan))
    elif void_hint(values):                               # 255 beside small class values 小类别值加 255
        report.warnings.append(void_hint(values))
    if warn:
        for w in report.warnings:
            warnings.warn(w, UserWarning, stacklevel=2)
    return report


def _diagnose(values: list[int], counts: list[int], ignore_index: int, mapping: list[int]) -> list[str]:
    """Heuristics behind :func:`inspect_masks`' warnings. 警告背后的启发式规则"""
    out: list[str] = []
    total = max(1, sum(counts))
    if not values:
        return out
    k = len(values)
    if k == 1:
        out.append(
            f"Every scanned mask holds only the value {values[0]}: one class, nothing to segment (training refuses "
            "such a folder). Check that these are the label files; an export that lost its labels writes empty "
            "masks."
        )
    if max(values) >= k:
        detail = f"equals ignore_index={ignore_index}, so those pixels would be silently ignored" if (
            ignore_index in values) else "would be an out-of-range class index"
        out.append(
            f"Mask values {values[:6]}{' ...' if k > 6 else ''} are not class indices 0..{k - 1}: used directly as "
            f"indices, value {max(values)} {detail}. The data sets map raw values through mask_values="
            f"{mapping[:6]}{' ...' if len(mapping) > 6 else ''} (class i is stored as mask_values[i]); do the same "
            "(values_to_indices) in your own code."
        )
    if k > 2:
        order = np.argsort(counts)[::-1]
        lo, hi = sorted((values[order[0]], values[order[1]]))
        between = [(v, c) for v, c in zip(values, counts) if lo < v < hi]
        frac = sum(c for _, c in between) / total
        top2 = (counts[order[0]] + counts[order[1]]) / total
        if len(between) >= 5 and frac < 0.2 and top2 > 0.8:
            out.append(
                f"Masks look resized with interpolation (or saved as JPEG): besides {lo} and {hi} they hold "
                f"{len(between)} distinct in-between values on {100 * frac:.2f}% of pixels. Resize masks with "
                "NEAREST interpolation and save them losslessly (PNG/GIF), or re-binarise them (e.g. mask > 127)."
            )
    return out
