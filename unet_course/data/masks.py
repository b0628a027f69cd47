"""From raw mask values to class indices, and back.
掩码原始取值与类别索引之间的相互转换

Mask files store *values* (0/255 for a binary PNG, 0/1 in Carvana's GIFs, 0 = membrane in ISBI-2012). The loss
needs *class indices* ``0..K-1``. The bridge is ``mask_values``: the list of raw values **in class-index order**,
so class ``i`` is stored on disk as ``mask_values[i]``. Discovery sorts the values it finds (``[0, 255]``); a data
set may fix its own order (ISBI-2012 uses ``[255, 0]`` so that membrane is class 1, the foreground).
掩码文件存储的是"取值"，损失函数需要的是"类别索引"；二者之间的桥梁是按类别顺序排列的 mask_values

Why not use the values directly? A 0/255 mask used as indices asks for class 255 in a 2-class model, which either
crashes the loss or, with ``ignore_index=255``, silently ignores every foreground pixel.
为什么不能直接使用取值：0/255 掩码中的 255 对二分类模型是越界的类别索引，或者恰好等于 ignore_index 而被静默忽略

**Stray values.** Discovery refuses a value that looks like damage rather than a class, instead of silently adding a
class for it. A value is *stray* when (1) at least two masks were scanned, (2) exactly one of them holds it, (3) it
covers less than :data:`STRAY_FRACTION` (0.1 %) of all scanned mask pixels, and (4) the other values still make at
least two classes (so a binary data set whose only foreground is one small object is never refused). The
:class:`~unet_course.errors.DataError` names the file, the value and its pixel count, and gives the two fixes: clean
the file, or pass the full ``mask_values=[...]`` if the value is a real class (an explicit list skips discovery).
:func:`inspect_masks` applies the same rule (:func:`find_stray_values`) and reports it as a warning.
**Void values.** Some label sets mark pixels that carry no label with a value of their own (PASCAL VOC's 255
border around each object). Listed as ``void_values``, such a value is no class: :func:`split_void` turns its pixels
into "not valid", which the loss ignores and scoring skips, and discovery leaves it out. :func:`void_hint` says so
when discovered values look like that (small class values plus 255).
无标签取值（如 VOC 的 255 边界）：列入 void_values 后不算类别，由 split_void 标为无效像素（损失忽略、评分跳过）

零星取值：只出现在一个掩码中、像素占比低于 0.1%、且去掉后仍至少有两类的取值视为损坏，自动发现时报错（写明文件、取值与像素数），
不会静默地成为新类别；inspect_masks 使用同一规则给出警告
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .io import image_subfolders, is_image_file, page_count, read_mask, read_stack

# 已发现取值的内存缓存：键由数据来源决定
_VALUES_CACHE: dict[tuple, list[int]] = {}

#: A value held by one mask only and covering less than this fraction of all scanned mask pixels is *stray*
#: (see the module docstring). 零星取值的像素占比上限
STRAY_FRACTION = 0.001


def _as_numpy(mask) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        return mask.detach().cpu().numpy()
    return np.asarray(mask)


@dataclass
class _Scan:
    """Per-value pixel counts and the files holding each value. 每个取值的像素数及其所在文件"""

    counts: dict[int, int] = field(default_factory=dict)
    n_holding: dict[int, int] = field(default_factory=dict)  # 含该取值的文件数
    first_file: dict[int, str] = field(default_factory=dict)  # 第一个含该取值的文件
    holders: dict[int, set[str]] = field(default_factory=dict)  # the files holding each value 含该取值的全部文件
    shapes: list[tuple[int, int]] = field(default_factory=list)
    n_files: int = 0

    def add(self, arr: np.ndarray, name: str) -> None:
        vals, cnt = np.unique(arr, return_counts=True)
        for v, c in zip(vals.tolist(), cnt.tolist()):
            v = int(v)
            self.counts[v] = self.counts.get(v, 0) + int(c)
            self.n_holding[v] = self.n_holding.get(v, 0) + 1
            self.first_file.setdefault(v, name)
            self.holders.setdefault(v, set()).add(name)
        shape = (int(arr.shape[0]), int(arr.shape[1]))
        if shape not in self.shapes:
            self.shapes.append(shape)
        self.n_files += 1


def _as_mask(item) -> np.ndarray | None:
    """An array from a path, a zero-argument callable or an array-like. 把路径、可调用对象或数组转换为掩码数组"""
    if callable(item):
        return item()
    if isinstance(item, str | Path):
        return read_mask(item)
    return _as_numpy(item)


def _scan(items: Iterable, names: Iterable[str] | None = None) -> _Scan:
    scan = _Scan()
    names_it = iter(names) if names is not None else None
    for i, item in enumerate(items):
        name = next(names_it) if names_it is not None else (Path(item).name if isinstance(item, str | Path)
                                                            else f"mask[{i}]")
        arr = _as_mask(item)
        if arr is not None:
            scan.add(arr, name)
    return scan


def find_stray_values(scan: _Scan) -> list[tuple[int, str, int]]:
    """``(value, file, pixels)`` for each stray value of a scan (rule: module docstring). 找出零星取值"""
    total = sum(scan.counts.values())
    if scan.n_files < 2 or total == 0:
        return []
    strays = [(v, scan.first_file[v], c) for v, c in sorted(scan.counts.items())
              if scan.n_holding[v] == 1 and c < STRAY_FRACTION * total]
    if len(scan.counts) - len(strays) < 2:  # 去掉后不足两类：这是真实的稀有类别
        return []
    return strays


def mixed_binary_encodings(scan: _Scan) -> str:
    """The error text when binary masks use two encodings, 0/1 in some files and 0/255 in others ("" otherwise).
    二值掩码混用两种编码（部分文件 0/1、部分 0/255）时的报错文本

    Discovery would make three classes of them in silence. The rule: the non-zero values are exactly 1 and 255
    and no file holds both (a file holding both is a real 3-value mask, e.g. classes plus a 255 border).
    规则：非零取值恰为 1 和 255，且没有任何文件同时含有二者
    """
    if set(scan.counts) - {0} != {1, 255} or scan.holders[1] & scan.holders[255]:
        return ""
    ones, full = sorted(scan.holders[1]), sorted(scan.holders[255])
    return (f"Masks mix two binary encodings: {len(ones)} file(s) hold 0/1 (e.g. {ones[0]!r}) and {len(full)} hold "
            f"0/255 (e.g. {full[0]!r}), so discovery would make three classes (0, 1, 255) of one foreground. Re-save "
            "them with one encoding (e.g. foreground = mask > 0, saved as 0/255), or, if 1 and 255 are two classes "
            "that never meet in one mask, pass mask_values=[0, 1, 255].")


def stray_message(strays: list[tuple[int, str, int]], values: list[int], total: int) -> str:
    """The text of the stray-value error/warning: file, value, pixels and the fix. 零星取值的报错文本"""
    found = "; ".join(f"value {v} on {c} pixel(s) ({100 * c / max(1, total):.3f}% of all mask pixels) only in {f!r}"
                      for v, f, c in strays)
    clean = [v for v in values if v not in {s[0] for s in strays}]
    return (
        f"Stray mask value(s): {found}. A value that one mask holds on so few pixels is most likely damage (a "
        f"mis-painted or interpolated pixel), and discovery would silently turn it into an extra class. Clean the "
        f"file (set those pixels to one of {clean}), or, if it is a real class, pass the full list "
        f"mask_values={values} (class i is stored as mask_values[i])."
    )


def discover_mask_values(masks: Iterable, *, names: Iterable[str] | None = None, cache_key: tuple | None = None,
                         refuse_stray: bool = True, void_values: Sequence[int] = ()) -> list[int]:
    """Sorted unique values over a collection of masks, refusing stray values.
    统计一组掩码中出现过的全部取值（升序），遇到零星取值时报错

    Args:
        masks: arrays ``(H, W)``, or paths to mask files, or a mix. 掩码数组或掩码文件路径
        names: file names for messages, one per mask (default: the path's name, or ``mask[i]``). 用于报错的文件名
        cache_key: if given, the result is cached in memory under this key and reused (train and val data sets of
            the same folder scan once). 若给出则在内存中缓存结果
        refuse_stray: raise on stray values (rule: module docstring). 是否拒绝零星取值
        void_values: values that mark unlabelled pixels; left out of the result. 无标签取值（不计入结果）

    Returns:
        ``list[int]`` of the raw values, ascending; this is the default class-index order.

    Raises:
        DataError: no masks were given, or a stray value was found (file, value, pixel count and fix named).

    >>> import numpy as np
    >>> discover_mask_values([np.array([[0, 255]]), np.array([[0, 0]])])
    [0, 255]
    """
    if cache_key is not None and cache_key in _VALUES_CACHE:
        return list(_VALUES_CACHE[cache_key])
    scan = _scan(masks, names)
    if scan.n_files == 0:
        raise DataError("No masks to scan for values; check that the masks folder holds mask files.")
    for v in void_values:                                 # no class, and never stray 不是类别，也不算零星取值
        for table in (scan.counts, scan.n_holding, scan.first_file, scan.holders):
            table.pop(int(v), None)
    if mixed_binary_encodings(scan):
        raise DataError(mixed_binary_encodings(scan))
    values = sorted(scan.counts)
    strays = find_stray_values(scan) if refuse_stray else []
    if strays:
        raise DataError(stray_message(strays, values, sum(scan.counts.values())))
    if cache_key is not None:
        _VALUES_CACHE[cache_key] = list(values)
    return values


def _lookup_table(mask_values: Sequence[int], size: int) -> np.ndarray:
    lut = np.full(size, -1, dtype=np.int64)
    for i, v in enumerate(mask_values):
        if 0 <= v < size:
            lut[v] = i
    return lut


def values_to_indices(mask, mask_values: Sequence[int], name: str = "<mask>") -> np.ndarray:
    """Map raw mask values to class indices ``0..K-1``.
    把原始掩码取值映射为类别索引 0..K-1

    Args:
        mask: integer array ``(H, W)`` of raw values. 原始取值数组
        mask_values: raw values in class-index order (class ``i`` <-> ``mask_values[i]``). 按类别顺序的取值列表
        name: file name shown in the error. 报错时显示的文件名

    Returns:
        ``np.int64`` array ``(H, W)`` of class indices.

    Raises:
        DataError: the mask holds a value that is not in ``mask_values``; the message names the file and the
            values.

    >>> import numpy as np
    >>> values_to_indices(np.array([[255, 0]], np.uint8), [255, 0]).tolist()
    [[0, 1]]
    """
    arr = _as_numpy(mask)
    values = [int(v) for v in mask_values]
    if arr.dtype == np.uint8:
        lut = _lookup_table(values, 256)
        out = lut[arr]  # (H, W) 查表，越界取值得到 -1
        bad_where = out < 0
    else:
        order = np.argsort(values)
        sorted_vals = np.asarray(values, dtype=np.int64)[order]
        flat = arr.astype(np.int64)
        pos = np.clip(np.searchsorted(sorted_vals, flat), 0, len(values) - 1)
        bad_where = sorted_vals[pos] != flat
        out = order[pos].astype(np.int64)
    if bad_where.any():
        bad = np.unique(arr[bad_where]).tolist()
        shown = ", ".join(str(b) for b in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise DataError(
            f"Mask {name!r} holds value(s) {shown} ({int(bad_where.sum())} pixels) that are not in the data set's "
            f"mask_values {values}. Either this mask is damaged (e.g. resized with interpolation or saved as JPEG; "
            "run inspect_masks() on the folder), or the mapping was discovered on a subset: pass the full list as "
            "mask_values=[...] when building the data set."
        )
    return out


def indices_to_values(labels, mask_values: Sequence[int]) -> np.ndarray:
    """Map class indices back to the raw values used on disk (for saving predictions).
    把类别索引映射回磁盘上的原始取值（保存预测结果时使用）

    Args:
        labels: integer array or tensor ``(..., H, W)`` of class indices ``0..K-1``. 类别索引
        mask_values: raw values in class-index order. 按类别顺序的取值列表

    Returns:
        NumPy array of raw values, ``uint8`` when every value fits in 8 bits.

    Raises:
        DataError: a label is outside ``0..K-1`` (for example an ``ignore_index`` of 255).

    >>> import numpy as np
    >>> indices_to_values(np.array([[0, 1]]), [255, 0]).tolist()
    [[255, 0]]
    """
    lab = _as_numpy(labels).astype(np.int64)
    table = np.asarray([int(v) for v in mask_values], dtype=np.int64)
    if lab.size and (lab.min() < 0 or lab.max() >= len(table)):
        raise DataError(
            f"Labels hold class index {int(lab.max()) if lab.max() >= len(table) else int(lab.min())}, outside "
            f"0..{len(table) - 1} for mask_values {table.tolist()}. Map ignore_index pixels to a class first."
        )
    out = table[lab]
    if table.min() >= 0 and table.max() <= 255:
        return out.astype(np.uint8)
    return out.astype(np.int32)


def split_void(mask, void_values: Sequence[int], fill: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Separate the pixels that carry no label (``void_values``) from a raw mask. 把无标签像素从原始掩码中分离出来

    Args:
        mask: raw values ``(H, W)``. 原始取值
        void_values: values that mark unlabelled pixels (e.g. ``[255]``). 无标签取值
        fill: a real mask value written over void pixels, so that :func:`values_to_indices` accepts them.
            写在无标签像素上的有效取值

    Returns:
        ``(mask, valid)``: the mask with void pixels set to ``fill``, and the bool ``(H, W)`` map of labelled pixels
        (None when no pixel is void). Readers mask the targets with ``valid`` (``ignore_index`` outside it), as they
        do with DRIVE's field of view. 返回替换后的掩码与有标签像素的布尔图

    >>> m, valid = split_void(np.array([[0, 1, 255]]), [255], fill=0)
    >>> m.tolist(), valid.tolist()
    ([[0, 1, 0]], [[True, True, False]])
    """
    arr = _as_numpy(mask)
    void = np.isin(arr, np.asarray(list(void_values), dtype=np.int64)) if len(void_values) else None
    if void is None or not void.any():
        return arr, None
    out = arr.copy()
    out[void] = fill                                      # (H, W) every pixel now holds a class value 每个像素都是类别取值
    return out, ~void


def void_hint(values: Sequence[int]) -> str:
    """A hint when discovered values look like small class values plus 255, the usual "no label" value ("" else).
    当取值看起来是若干小类别值加上 255（常见的"无标签"取值）时给出提示

    >>> void_hint([0, 255])
    ''
    >>> "void_values" in void_hint([0, 1, 2, 255])
    True
    """
    rest = [int(v) for v in values if int(v) != 255]
    if len(rest) == len(values) or len(rest) < 2 or max(rest) >= 128:
        return ""
    return (f"Mask value 255 is taken as class {len(rest)} (mask_values {list(values)}). If it marks pixels without "
            "a label (as PASCAL VOC's object borders do), pass --dataset-options '{\"void_values\": [255]}' "
            "(void_values=[255]): training then ignores those pixels and scoring skips them.")


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
    masky = [d for d in subs if "mask" in d.name.lower() or "label" in d.name.lower() or "manual" in d.name.lower()]
    pick = (masky or subs)[0]
    return (f" Its subfolders {', '.join(repr(d.name + '/') for d in subs[:6])} hold image files; pass the masks "
            f"folder itself, e.g. {str(pick)!r}.")


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
    scan = _scan(items, names)
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
