"""ISBI-2012: neuronal membranes in electron microscopy, the data set of the original U-Net paper.
ISBI-2012：电子显微镜神经细胞膜分割，即 U-Net 原论文使用的数据集

Layout (the challenge's own files)::

    isbi2012/
      train-volume.tif    30 slices, 512x512, uint8 gray (multi-page TIFF)
      train-labels.tif    30 slices, values {0, 255}: 0 = membrane, 255 = cell interior
      test-volume.tif     30 slices, no labels

**Membrane is stored as 0** but it is the structure we segment, so the class order is
``mask_values = [255, 0]``: class 0 = cell interior (stored as 255), class 1 = membrane (stored as 0), the
foreground. A model's class 1 therefore means membrane, and a saved prediction writes membrane back as 0.
细胞膜在文件中存为 0，却是要分割的前景；因此 mask_values = [255, 0]：类别 0 是细胞内部（存为 255），类别 1 是细胞膜（存为 0）

Splits (contiguous slices, never shuffled, because neighbouring slices look alike and a random split would leak):
切片相邻时非常相似，随机划分会泄漏信息，因此按连续切片划分

- default: ``"train"`` = slices 0-24, ``"val"`` = the last 5 (25-29); ``val_fraction`` or ``n_val`` change it
  (``n_val = round(30 * val_fraction)``, e.g. 0.2 -> 6);
- the seed notes' 24/3/3 protocol: ``n_val=3, n_holdout=3`` gives ``"train"`` 0-23, ``"val"`` 24-26 and
  ``"holdout"`` 27-29 (labelled);
- ``"all"``: the 30 labelled slices; ``"test"``: ``test-volume.tif``, no labels.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..env import data_root
from ..errors import ConfigError, DataError
from .base import SegmentationDataset, wrong_level_hint
from .io import read_stack, resolve_channels, to_uint8

#: Mean/std of the 30 training slices in [0, 1] units, computed once with
#: ``compute_mean_std(list(read_stack("isbi2012/train-volume.tif")))``.
#: 30 张训练切片的均值与标准差
ISBI_MEAN = (0.4948,)
ISBI_STD = (0.1726,)
#: Raw values in class-index order: class 0 = interior (255), class 1 = membrane (0). 按类别顺序排列的取值
ISBI_MASK_VALUES = [255, 0]
ISBI_DEFAULT_VAL = 5

ISBI_LAYOUT = """\
isbi2012/
  train-volume.tif   (30 x 512 x 512, uint8)
  train-labels.tif   (30 x 512 x 512, 0 = membrane, 255 = cell interior)
  test-volume.tif    (30 x 512 x 512, optional, no labels)"""


@lru_cache(maxsize=4)
def _load_stack(path: str) -> np.ndarray:
    arr = read_stack(path)
    arr.setflags(write=False)  # 缓存的数组只读
    return arr


def check_label_values(labels: np.ndarray, path: Path) -> None:
    """Refuse a label stack holding anything but 0 (membrane) and 255 (cell interior), naming the slices and the fix,
    before training starts (a 0/1 export is the common case). 标签栈只能含 0 与 255，否则指明切片与修复方法

    >>> check_label_values(np.array([[[0, 1]]], dtype=np.uint8), Path("train-labels.tif"))
    Traceback (most recent call last):
    ...
    unet_course.errors.DataError: 'train-labels.tif' holds value(s) 1 besides ISBI-2012's 0 (membrane) and 255 (cell interior), in slice(s) 0. It looks like a 0/1 export (1 = cell interior): write labels * 255 as train-labels.tif in a new folder beside a copy of train-volume.tif and pass that folder with --data-dir.
    """
    stray = (labels != 0) & (labels != 255)                       # (N, H, W) 不是 0/255 的像素
    if not stray.any():
        return
    values = np.unique(labels[stray]).tolist()
    slices = np.flatnonzero(stray.reshape(len(labels), -1).any(axis=1)).tolist()
    shown = ", ".join(str(v) for v in values[:10]) + (" ..." if len(values) > 10 else "")
    where = ", ".join(str(k) for k in slices[:10]) + (f" ... ({len(slices)} slices)" if len(slices) > 10 else "")
    if set(values) == {1}:
        fix = ("It looks like a 0/1 export (1 = cell interior): write labels * 255 as train-labels.tif in a new "
               "folder beside a copy of train-volume.tif and pass that folder with --data-dir.")
    elif set(values) == {65535}:
        fix = ("It looks like a 16-bit 0/65535 export: write it as 8-bit (labels // 257) as train-labels.tif in a "
               "new folder beside a copy of train-volume.tif and pass that folder with --data-dir.")
    else:
        fix = ("Labels with other values (more classes, or edges blurred by resizing) fit the folder data set: one "
               "image and one mask PNG per slice, --dataset folder (data/README.md), where mask_values names them.")
    raise DataError(f"{str(path)!r} holds value(s) {shown} besides ISBI-2012's 0 (membrane) and 255 (cell "
                    f"interior), in slice(s) {where}. {fix}")


class ISBI2012Dataset(SegmentationDataset):
    """ISBI-2012 EM membranes: 30 labelled 512x512 gray slices (+ 30 unlabelled test slices).
    ISBI-2012 电镜细胞膜：30 张带标签的 512x512 灰度切片

    Args:
        root: the ``isbi2012`` folder. None -> ``unet_course.env.data_root() / "isbi2012"``. 数据集根目录
        split: ``"train"`` | ``"val"`` | ``"holdout"`` | ``"all"`` | ``"test"``. 数据划分
        val_fraction: used when ``n_val`` is None: ``n_val = round(30 * val_fraction)``; None (default) -> 5.
        n_val: number of validation slices taken from the end (before the holdout). 验证切片数
        n_holdout: labelled slices kept aside at the very end for a final score (``"holdout"``). 保留切片数
        seed: accepted for a uniform signature; the split is contiguous and does not use it. 与其它数据集一致
        in_channels: None or 1 keeps gray; 3 repeats the gray channel (documented conversion). 通道数
        train, augment, crop_size, scale, mean, std, ignore_index, transform: see
            :class:`~unet_course.data.base.SegmentationDataset`.

    Raises:
        DataError: missing files (the message shows the layout), unreadable TIFFs, volume/label size mismatch,
            label values other than 0 and 255.
        ConfigError: unknown or empty split.
    """

    #: Score the challenge's cell segmentation too (adapted Rand error, variation of information); class 1
    #: (membrane) is the boundary between cells. 同时计算挑战赛的细胞分割指标；类别 1（膜）是细胞边界
    instance_metrics = True
    boundary_class = 1

    cache_loaded = True                                  # 全部图像已在内存中：缓存 load 的结果

    def __init__(self, root: str | Path | None = None, split: str = "train", val_fraction: float | None = None,
                 n_val: int | None = None, n_holdout: int = 0, seed: int = 0, in_channels: int | None = None,
                 train: bool | None = None, augment: bool = True, crop_size: int | None = None,
                 scale: float = 1.0, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                 ignore_index: int = 255, transform=None) -> None:
        if root is None:
            root = data_root() / "isbi2012"
        root = Path(root).expanduser()
        splits = ("train", "val", "holdout", "all", "test")
        if split not in splits:
            raise ConfigError(f"Unknown split {split!r} for ISBI-2012; choose one of: {', '.join(splits)}.")
        volume_name = "test-volume.tif" if split == "test" else "train-volume.tif"
        volume_path = root / volume_name
        if not volume_path.is_file():
            raise DataError(
                f"ISBI-2012 file {volume_name!r} not found in {str(root)!r}."
                f"{wrong_level_hint(root, 'isbi2012', 'train-volume.tif')} Expected this layout:\n{ISBI_LAYOUT}\n"
                "Download the challenge files (see data/README.md) and pass their folder with --data-dir (in Python: "
                "data_dir= or root=)."
            )
        volume = _load_stack(str(volume_path.resolve()))  # (N, H, W)
        if volume.dtype != np.uint8:  # 16 位体数据：与单张图像相同的位深规则（io 模块）
            volume = to_uint8(volume, str(volume_path))
        labels = None
        if split != "test":
            label_path = root / "train-labels.tif"
            if not label_path.is_file():
                raise DataError(f"ISBI-2012 labels {str(label_path)!r} not found. Expected:\n{ISBI_LAYOUT}")
            labels = _load_stack(str(label_path.resolve()))
            if labels.shape[:3] != volume.shape[:3]:
                raise DataError(
                    f"train-labels.tif has shape {labels.shape} but train-volume.tif has {volume.shape}; they must "
                    "hold the same number of slices of the same size."
                )
            check_label_values(labels, label_path)                  # 只允许 0 与 255
        if volume.ndim != 3:
            raise DataError(f"{volume_name} has shape {volume.shape}; expected gray slices (N, H, W).")
        n = volume.shape[0]
        chosen = self._split(n, split, val_fraction, n_val, n_holdout)
        self.root, self.split = root, split
        self._volume, self._labels, self._index = volume, labels, chosen
        in_ch = resolve_channels(1, in_channels, f"{volume_name} (grayscale slices)")  # 灰度切片：1，或复制为 3
        if mean is None:
            mean = ISBI_MEAN * in_ch
        if std is None:
            std = ISBI_STD * in_ch
        prefix = "test" if split == "test" else "slice"
        super().__init__(
            mask_values=ISBI_MASK_VALUES, class_names=["cell", "membrane"], in_channels=in_ch, mean=mean, std=std,
            ignore_index=ignore_index, names=[f"{prefix}_{i:02d}" for i in chosen], has_labels=labels is not None,
            train=(split == "train") if train is None else train, augment=augment, crop_size=crop_size,
            scale=scale, transform=transform, uniform_size=True,
        )

    @staticmethod
    def _split(n: int, split: str, val_fraction: float | None, n_val: int | None, n_holdout: int) -> list[int]:
        """Contiguous slice indices of ``split``. 计算各划分的连续切片索引"""
        if split in ("test", "all"):
            return list(range(n))
        if n_val is None:
            if val_fraction is None:
                n_val = ISBI_DEFAULT_VAL
            else:
                if not (0.0 <= float(val_fraction) < 1.0):
                    raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction!r}.")
                n_val = 0 if val_fraction == 0 else max(1, int(round(n * float(val_fraction))))
        n_val, n_holdout = int(n_val), int(n_holdout)
        n_train = n - n_val - n_holdout
        if n_val < 0 or n_holdout < 0 or n_train < 1:
            raise ConfigError(
                f"ISBI-2012 has {n} labelled slices; n_val={n_val} and n_holdout={n_holdout} leave {n_train} for "
                "training. Use a smaller val_fraction / n_val / n_holdout."
            )
        ranges = {"train": range(0, n_train), "val": range(n_train, n_train + n_val),
                  "holdout": range(n_train + n_val, n)}
        chosen = list(ranges[split])
        if not chosen:
            option = "n_val (or val_fraction)" if split == "val" else "n_holdout"
            raise ConfigError(
                f"The {split!r} split of ISBI-2012 is empty (n_val={n_val}, n_holdout={n_holdout}). Train with a "
                f"positive {option} in the dataset options, e.g. --dataset-options '{{\"n_val\": 3, \"n_holdout\": "
                "3}' (the 24/3/3 split), so those slices are never trained on; evaluate reads the split from the "
                "checkpoint."
            )
        return chosen

    def __len__(self) -> int:
        return len(self._index)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        index = self._check_index(index)
        k = self._index[index]
        image = self._volume[k][:, :, None]  # (H, W, 1)
        mask = None if self._labels is None else self._labels[k]
        return image, mask, None

    def raw_mask(self, index: int) -> np.ndarray | None:
        index = self._check_index(index)
        return None if self._labels is None else self._labels[self._index[index]]

    def __repr__(self) -> str:
        return f"ISBI2012Dataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
