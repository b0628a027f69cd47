"""What every segmentation data set of the package provides.
本包所有分割数据集的共同接口

A data set only has to say how to read sample ``i`` at native resolution (:meth:`SegmentationDataset.raw`); the
base class maps raw mask values to class indices, marks pixels outside the valid region with ``ignore_index``,
fixes the channel count and applies the joint transform. ``dataset[i]`` is always the dict
``{"image": float32 (C, H, W), "mask": int64 (H, W), "name": str}`` (no ``"mask"`` for unlabelled splits).
子类只需实现 raw(i)；基类负责取值到类别索引的映射、无效区域置为 ignore_index、通道对齐与联合变换
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError
from .enhance import ENHANCED_MEAN, ENHANCED_STD, check_method, enhance_image, enhanced_channels
from .io import match_channels
from .masks import values_to_indices
from .transforms import SegmentationTransform
from .workers import sync_worker_rng

SPLITS = ("train", "val", "test", "all")


def split_indices(n: int, val_fraction: float, seed: int = 0, *, folds: int = 0,
                  fold: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic train/val split of ``range(n)``, or fold ``fold`` of a k-fold split.
    对 range(n) 做确定性的训练/验证划分，或 k 折交叉验证中的第 fold 折

    ``n_val = round(n * val_fraction)``, at least 1 when ``val_fraction > 0``. The permutation comes from
    ``np.random.default_rng(seed)``, so the same ``(n, val_fraction, seed)`` always gives the same split, on any
    machine. With ``folds = k > 1`` (cross-validation) ``val_fraction`` is not used: the permuted items are dealt
    into ``k`` folds (``perm[fold::k]``), fold ``fold`` is validation and the rest is training, so over
    ``fold = 0 .. k-1`` every item is validated exactly once. Both lists are returned sorted.
    相同的参数在任何机器上都给出相同划分；folds = k 时把打乱后的样本轮流分到 k 折，每个样本恰好验证一次

    Raises:
        ConfigError: ``val_fraction`` outside [0, 1), ``fold`` outside ``0 .. folds-1``, more folds than items, or
            a split that would be empty.

    >>> split_indices(10, 0.2, seed=0)
    ([0, 1, 2, 3, 5, 7, 8, 9], [4, 6])
    >>> [split_indices(10, 0.0, seed=0, folds=5, fold=k)[1] for k in range(5)]
    [[4, 5], [6, 9], [0, 2], [7, 8], [1, 3]]
    """
    if folds:
        return _fold_indices(n, seed, folds, fold)
    if not (0.0 <= float(val_fraction) < 1.0):
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction!r}.")
    n_val = 0 if val_fraction == 0 else max(1, int(round(n * float(val_fraction))))
    if n_val >= n:
        largest = f"at most {(n - 1) / n:.2f} here, or " if n > 1 else ""
        raise ConfigError(
            f"val_fraction={val_fraction} on {n} item(s) puts {n_val} in validation and leaves an empty training "
            f"split. Use a smaller val_fraction ({largest}0 to train on all {n} without validation: --val-fraction 0) "
            "or add data."
        )
    perm = np.random.default_rng(int(seed)).permutation(n)
    return sorted(perm[n_val:].tolist()), sorted(perm[:n_val].tolist())


def _fold_indices(n: int, seed: int, folds: int, fold: int) -> tuple[list[int], list[int]]:
    """The k-fold rule of :func:`split_indices`. k 折划分规则"""
    if not (2 <= int(folds) <= n):
        raise ConfigError(f"folds={folds} needs 2 <= folds <= {n} (the number of items; each fold validates on at "
                          f"least one): give at most {n} folds.")       # cv 中 0 无意义，所以不建议 0
    if not (0 <= int(fold) < int(folds)):
        raise ConfigError(f"fold={fold} must be in 0 .. {int(folds) - 1} for folds={folds}.")
    perm = np.random.default_rng(int(seed)).permutation(n)
    val = perm[int(fold)::int(folds)]                                  # 每隔 k 个取一个：第 fold 折
    return sorted(set(range(n)) - set(val.tolist())), sorted(val.tolist())


def select_split(n: int, split: str, val_fraction: float, seed: int, what: str, *, folds: int = 0,
                 fold: int = 0, train_images: int | None = None) -> list[int]:
    """Indices of ``split`` (``"train"``, ``"val"`` or ``"all"``) among ``n`` labelled items.
    返回某个划分在 n 个样本中的索引

    ``train_images`` keeps only the first that many items of the ``"train"`` split (a learning curve: how does the
    score grow with the labelled data?); the other splits are unchanged, so the validation images stay the same.
    train_images 只保留训练划分的前若干个样本（学习曲线），验证划分不变

    >>> select_split(10, "train", 0.2, 0, "toy", folds=5, fold=0), select_split(10, "val", 0.2, 0, "toy", folds=5, fold=0)
    ([0, 1, 2, 3, 6, 7, 8, 9], [4, 5])
    >>> select_split(10, "train", 0.2, 0, "toy", folds=5, fold=0, train_images=3)
    [0, 1, 2]
    """
    if split == "all":
        return list(range(n))
    if split not in ("train", "val"):
        raise ConfigError(f"Unknown split {split!r} for {what}; choose one of: train, val, all.")
    train_idx, val_idx = split_indices(n, val_fraction, seed, folds=folds, fold=fold)
    chosen = train_idx if split == "train" else val_idx
    if split == "train" and train_images is not None:
        if isinstance(train_images, bool) or not isinstance(train_images, int) or not 1 <= train_images <= len(chosen):
            raise ConfigError(f"train_images={train_images!r} for {what}: give a whole number from 1 to {len(chosen)}, "
                              f"the size of its training split.")
        chosen = chosen[:train_images]                                  # 只用前 N 张训练图像
    if not chosen:
        raise ConfigError(
            f"The {split!r} split of {what} is empty ({n} item(s), val_fraction={val_fraction}). Use "
            f"val_fraction > 0 for a validation split, or split='all'."
        )
    return chosen


def wrong_level_hint(root: Path, name: str | None, marker: str) -> str:
    """A sentence for a data folder one level off, or ``""``: ``root`` is the data root that holds the data set's
    folder ``name`` (not checked when None: a folder data set has no fixed name), or a folder inside the data set
    (its parent holds ``marker``).
    数据目录差了一层时的提示：给的是数据根目录，或是数据集内部的子目录

    >>> wrong_level_hint(Path("/nowhere"), "DRIVE", "training/images")
    ''
    """
    if name is not None and (root / name / marker).exists():
        return (f" {str(root)!r} is the data root that holds {name}/: pass --data-dir {str(root / name)!r}, or "
                f"--data-root {str(root)!r} without --data-dir.")
    if (root.parent / marker).exists():
        return f" {str(root)!r} is a folder inside the data set: pass its parent, --data-dir {str(root.parent)!r}."
    return ""


class SegmentationDataset(Dataset):
    """Base class: raw samples in, normalised tensors out.
    基类：输入原始样本，输出归一化后的张量

    Subclasses implement ``__len__`` and :meth:`raw`; they may override :meth:`load` (faster path straight to class
    indices) and :meth:`raw_mask` (mask only, for :func:`~unet_course.data.mask_report.inspect_masks`).

    Attributes:
        mask_values: raw mask values in class-index order. 按类别顺序排列的原始取值
        class_names: one name per class. 类别名称
        in_channels: channels of ``item["image"]``. 图像通道数
        mean, std: normalisation, per channel, [0, 1] units. 归一化参数
        ignore_index: target value never scored. 忽略的目标值
        has_labels: False for prediction-only splits (no ``"mask"`` key). 是否带标签
        names: the stem of each sample. 样本名称
        uniform_size: all images share one size (so evaluation can batch them). 所有图像尺寸是否一致
        transform: the :class:`SegmentationTransform` in use. 使用的变换

    Args:
        train: build the training transform (random crop + augmentation) instead of the evaluation one.
        augment: flips / rotations / intensity jitter in training. 训练增强
        crop_size: random training crop. 训练裁剪
        scale: resize factor. 缩放比例
        transform: a callable ``(image, target) -> (tensor, tensor)`` replacing the default transform.
    """

    #: Keep each sample's :meth:`load` result (image and class-index target, read-only) after the first call. Data
    #: sets that hold every decoded image in memory anyway (DRIVE, ISBI-2012) switch it on, so a random crop no
    #: longer turns the whole mask into class indices again. 已把全部图像放在内存中的数据集缓存 load 的结果
    cache_loaded: bool = False

    def __init__(self, *, mask_values: Sequence[int], class_names: Sequence[str], in_channels: int,
                 mean: Sequence[float], std: Sequence[float], ignore_index: int = 255, names: Sequence[str] = (),
                 has_labels: bool = True, train: bool = False, augment: bool = True, crop_size: int | None = None,
                 scale: float = 1.0, transform=None, uniform_size: bool = True) -> None:
        self.mask_values = [int(v) for v in mask_values]
        self.class_names = list(class_names)
        self.in_channels = int(in_channels)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ConfigError(
                f"mean {self.mean} / std {self.std} must have one entry per channel (in_channels={self.in_channels})."
            )
        self.ignore_index = int(ignore_index)
        if self.ignore_index < len(self.mask_values):
            raise ConfigError(
                f"ignore_index={self.ignore_index} collides with class index {self.ignore_index} "
                f"({len(self.mask_values)} classes); use a value >= {len(self.mask_values)} (default 255)."
            )
        self.names = list(names)
        self.has_labels = bool(has_labels)
        self.uniform_size = bool(uniform_size)
        self.scale = float(scale)
        self.crop_size = crop_size
        self.train = bool(train)
        self.augment = bool(augment)
        self.rotate = 0.0                    # set_warp 设置的随机旋转角度上限
        self.elastic = 0.0                   # set_warp 设置的弹性形变位移标准差
        self.enhance = "none"
        self._enhanced: dict[int, np.ndarray] = {}
        self._loaded: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._custom_transform = transform is not None
        self.transform = transform if transform is not None else self._default_transform()

    def _default_transform(self) -> SegmentationTransform:
        return SegmentationTransform(
            train=self.train, crop_size=self.crop_size, scale=self.scale, mean=self.mean, std=self.std,
            augment=self.augment, ignore_index=self.ignore_index, rotate=self.rotate, elastic=self.elastic,
        )

    def set_warp(self, rotate: float = 0.0, elastic: float = 0.0) -> SegmentationDataset:
        """Rotate training crops by a random angle in ``[-rotate, rotate]`` degrees and deform them elastically
        with displacements of standard deviation ``elastic`` pixels (see :class:`SegmentationTransform`); returns
        ``self``. Only a training split with ``augment`` warps. 训练裁剪的随机旋转与弹性形变（仅训练集且启用增强时）

        Raises:
            ConfigError: the data set was given its own ``transform`` (it would silently not warp), or a value is
                out of range.
        """
        if self._custom_transform and (rotate or elastic):
            name = "rotate" if rotate else "elastic"
            raise ConfigError(f"{name} has no effect on a data set built with its own transform=; add it to that "
                              f"transform instead, or leave {name} at 0.")
        self.rotate, self.elastic = float(rotate), float(elastic)
        if not self._custom_transform:
            self.transform = self._default_transform()
        return self

    def set_enhance(self, method: str, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None) -> SegmentationDataset:
        """Switch on a contrast enhancement (:mod:`unet_course.data.enhance`) for every sample; returns ``self``.
        为所有样本启用对比度增强（返回自身）

        The image then has :func:`~unet_course.data.enhance.enhanced_channels` channels (1 for CLAHE) and is
        normalised with ``mean``/``std`` (default :data:`~unet_course.data.enhance.ENHANCED_MEAN` / ``_STD``).
        Each enhanced image is computed once and cached.
        启用后通道数变为增强后的通道数（CLAHE 为 1），并使用新的归一化参数；增强结果按图缓存
        """
        self.enhance = check_method(method)
        self._enhanced = {}
        self._loaded = {}
        if self.enhance != "none":
            self.in_channels = enhanced_channels(self.enhance, self.in_channels)
            self.mean = tuple(float(m) for m in (ENHANCED_MEAN if mean is None else mean))
            self.std = tuple(float(s) for s in (ENHANCED_STD if std is None else std))
            if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
                raise ConfigError(f"mean {self.mean} / std {self.std} must have {self.in_channels} entry per channel "
                                  f"after enhance={self.enhance!r}.")
            if not self._custom_transform:
                self.transform = self._default_transform()
        return self

    # ------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        """Number of classes ``K = len(mask_values)``. 类别数"""
        return len(self.mask_values)

    def __len__(self) -> int:  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def _check_index(self, index: int) -> int:
        n = len(self)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for a data set of {n} item(s)")
        return i

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Sample at native resolution: ``(image uint8 (H, W, C), mask raw values (H, W) or None, valid (H, W)
        bool or None)``. 原始分辨率的样本：图像、原始掩码取值、有效区域
        """
        raise NotImplementedError

    def raw_mask(self, index: int) -> np.ndarray | None:
        """Raw mask values of sample ``index`` (``None`` without labels). 仅返回原始掩码"""
        return self.raw(index)[1]

    def _enhance(self, index: int, image: np.ndarray, name: str) -> np.ndarray:
        """The image after :attr:`enhance` (computed once per index, then cached). 增强后的图像（按索引缓存）"""
        if self.enhance == "none":
            return image
        if index not in self._enhanced:
            self._enhanced[index] = enhance_image(image, self.enhance, name)
        return self._enhanced[index]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(image uint8 (H, W, in_channels), target int64 (H, W) or None)``: class indices, ``ignore_index``
        outside the valid region. 返回通道对齐后的图像和类别索引目标
        """
        index = self._check_index(index)
        if index in self._loaded:
            return self._loaded[index]
        image, mask, valid = self.raw(index)
        name = self.names[index] if index < len(self.names) else str(index)
        image = match_channels(self._enhance(index, image, name), self.in_channels, name)
        target = None
        if mask is not None:
            target = values_to_indices(mask, self.mask_values, name)  # (H, W) int64
            if valid is not None:
                target[~valid] = self.ignore_index
        if self.cache_loaded:
            for array in (image, target):
                if array is not None:
                    array.setflags(write=False)                       # 缓存的数组只读，防止被就地修改
            self._loaded[index] = (image, target)
        return image, target

    def __getitem__(self, index: int) -> dict:
        index = self._check_index(index)
        image, target = self.load(index)
        x, y = self.transform(image, target)
        item = {"image": x, "name": self.names[index]}
        if y is not None:
            item["mask"] = y.to(torch.int64)
        return item

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """The items of one batch, as ``DataLoader`` fetches them. In a worker of the package's loaders the random
        state is first brought to the current epoch (:func:`~unet_course.data.workers.sync_worker_rng`), so an
        epoch's augmentations do not depend on the epochs before it. 一个批量的样本；工作进程中先对齐本轮的随机状态
        """
        sync_worker_rng()
        return [self[i] for i in indices]

    def describe(self) -> dict:
        """Plain-types summary (for logs, notebooks and checkpoints). 基本类型组成的摘要"""
        return {
            "dataset": type(self).__name__, "n_items": len(self), "in_channels": self.in_channels,
            "n_classes": self.n_classes, "mask_values": list(self.mask_values), "class_names": list(self.class_names),
            "mean": list(self.mean), "std": list(self.std), "ignore_index": self.ignore_index,
            "has_labels": self.has_labels, "enhance": self.enhance,
        }
