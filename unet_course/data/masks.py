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
:func:`~unet_course.data.mask_report.inspect_masks` applies the same rule (:func:`find_stray_values`) and reports it as a warning.
**Void values.** Some label sets mark pixels that carry no label with a value of their own (PASCAL VOC's 255
border around each object). Listed as ``void_values``, such a value is no class: :func:`split_void` turns its pixels
into "not valid", which the loss ignores and scoring skips, and discovery leaves it out. :func:`void_hint` says so
when discovered values look like that (small class values plus 255).
无标签取值（如 VOC 的 255 边界）：列入 void_values 后不算类别，由 split_void 标为无效像素（损失忽略、评分跳过）

零星取值：只出现在一个掩码中、像素占比低于 0.1%、且去掉后仍至少有两类的取值视为损坏，自动发现时报错（写明文件、取值与像素数），
不会静默地成为新类别；inspect_masks 使用同一规则给出警告
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .io import read_mask

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


def scan_masks(items: Iterable, names: Iterable[str] | None = None) -> _Scan:
    """Per-value pixel counts and holders over masks (paths, arrays or callables); the input of every rule here.
    统计各取值的像素数与所在文件，是本模块各规则的输入"""
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
    scan = scan_masks(masks, names)
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
