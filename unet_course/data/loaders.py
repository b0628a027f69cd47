"""From a :class:`~unet_course.config.TrainConfig` to the train/val loaders.
从 TrainConfig 到训练与验证数据加载器

``build_loaders(cfg)`` builds both splits through :mod:`unet_course.data.registry` (``build_dataset`` and the
split rule ``split_kwargs``) and returns the train/val ``DataLoader`` pair and a small :class:`DataInfo` that the
model and the checkpoint need (channels, classes, ``mask_values``, normalisation).
build_loaders 经由 registry 构建两个划分，返回数据加载器与 DataInfo（通道数、类别数、取值映射、归一化）

Worker processes: ``num_workers="auto"`` gives 0 (load in the main process) where forking is unsafe or pointless:
Windows and macOS (spawn start method, which also breaks notebooks that define code in cells) and machines with
<= 2 CPU cores, where a worker would only compete with the training process; else ``min(4, cpu_count - 1)``.
工作进程数 "auto"：Windows、macOS（spawn）以及不超过 2 核的机器上为 0，否则为 min(4, CPU 数 - 1)

Errors from workers: torch re-raises an exception from a worker process as the same class whose message is
"Caught DataError in DataLoader worker process 0. Original Traceback ..." followed by the worker's traceback.
:class:`SegmentationLoader` (the class :func:`build_loaders` returns) turns a
:class:`~unet_course.errors.UNetCourseError` back into its own message, so ``num_workers=1`` shows exactly what
``num_workers=0`` shows.
工作进程中的错误：torch 会把消息包装为 "Caught ... Original Traceback ..."；SegmentationLoader 还原为原始消息，
与 num_workers=0 时完全相同
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch
from torch.utils.data import DataLoader, RandomSampler, default_collate

from ..errors import ConfigError, DataError, UNetCourseError
from .base import SegmentationDataset, split_indices
from .registry import (
    build_dataset,
    check_folds,
    dataset_key,
    dataset_options,
    options_blamed,
    split_kwargs,
)
from .workers import WorkerSetup

__all__ = ["DataInfo", "build_loaders", "resolve_num_workers", "split_indices", "collate_segmentation",
           "SegmentationLoader", "worker_free_message"]


@dataclass
class DataInfo:
    """What the model, the loss and the checkpoint need to know about the data.
    模型、损失与检查点需要的数据信息

    Attributes:
        in_channels: image channels. 图像通道数
        n_classes: ``len(mask_values)``. 类别数
        mask_values: raw values in class-index order. 取值映射
        class_names: one per class. 类别名称
        mean, std: normalisation. 归一化参数
        ignore_index: target value never scored. 忽略值
        n_train, n_val: items per split. 各划分样本数
        dataset: the registry name. 数据集名称
        enhance: contrast enhancement applied before normalisation (:mod:`unet_course.data.enhance`). 对比度增强
    """

    in_channels: int
    n_classes: int
    mask_values: list[int]
    class_names: list[str]
    mean: list[float]
    std: list[float]
    ignore_index: int
    n_train: int
    n_val: int
    dataset: str
    extra: dict = field(default_factory=dict)
    enhance: str = "none"

    def to_dict(self) -> dict:
        """Plain types only (JSON / checkpoint safe). 仅含基本类型"""
        return asdict(self)


def resolve_num_workers(num_workers: int | str = "auto") -> int:
    """DataLoader worker count: an integer is used as given; ``"auto"`` picks a safe value.
    数据加载工作进程数：整数原样使用；"auto" 自动选择安全值

    ``"auto"`` -> 0 on Windows and macOS (spawn start method; code defined in a notebook cell cannot be pickled
    into spawned workers) and on machines with <= 2 CPU cores (workers would only compete with training);
    otherwise ``min(4, cpu_count - 1)``.

    Raises:
        ConfigError: a negative number or an unknown string.
    """
    if num_workers == "auto":
        if sys.platform.startswith("win") or sys.platform == "darwin":
            return 0
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cpus = os.cpu_count() or 1
        return 0 if cpus <= 2 else min(4, cpus - 1)
    if isinstance(num_workers, str):
        if num_workers.isdigit():
            return int(num_workers)
        raise ConfigError(f"num_workers must be 'auto' or an integer >= 0, got {num_workers!r}.")
    if int(num_workers) < 0:
        raise ConfigError(f"num_workers must be 'auto' or an integer >= 0, got {num_workers!r}.")
    return int(num_workers)


def collate_segmentation(batch: list[dict]) -> dict:
    """``default_collate`` with a clear error when images of different sizes meet in one batch.
    与 default_collate 相同，但尺寸不一致时给出清楚的错误
    """
    shapes = {tuple(item["image"].shape) for item in batch}
    if len(shapes) > 1:
        names = [item.get("name", "?") for item in batch]
        raise DataError(
            f"Images of different sizes {sorted(shapes)} in one batch ({', '.join(map(str, names[:4]))}). Use "
            "batch_size=1, or (training) a crop_size that gives every sample one size."
        )
    return default_collate(batch)


def worker_free_message(exc: BaseException) -> str | None:
    r"""The original message of an error torch re-raised from a worker, or None if ``exc`` was not wrapped.
    从 torch 重新抛出的工作进程错误中取回原始消息；未被包装时返回 None

    torch builds ``type(exc)("Caught X in DataLoader worker process N.\nOriginal Traceback ...\n<module>.X: msg\n")``;
    the original message is what follows the last ``<module>.X: `` line of that traceback.

    >>> from unet_course.errors import DataError
    >>> worker_free_message(DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most "
    ...     "recent call last):\n  File \"x.py\", line 1\nunet_course.errors.DataError: bad 'a.png'\n"))
    "bad 'a.png'"
    >>> worker_free_message(DataError("bad 'a.png'")) is None
    True
    """
    text = str(exc)
    if not text.startswith("Caught ") or "\nOriginal Traceback" not in text:
        return None
    cls = type(exc)
    qualified = cls.__qualname__ if cls.__module__ in ("__main__", "builtins") else f"{cls.__module__}.{cls.__qualname__}"
    marker = f"\n{qualified}: "
    at = text.rfind(marker)
    if at < 0:
        return None
    return text[at + len(marker):].removesuffix("\n")


class _CleanErrors:
    """Iterator over a DataLoader's batches that unwraps worker errors (see :func:`worker_free_message`).
    遍历批量，并把工作进程中的 UNetCourseError 还原为原始消息
    """

    def __init__(self, iterator) -> None:
        self._it = iterator

    def __iter__(self) -> _CleanErrors:
        return self

    def __len__(self) -> int:
        return len(self._it)

    def __getattr__(self, name: str):
        if name == "_it":  # 未初始化（如复制时）：避免无限递归
            raise AttributeError(name)
        return getattr(self._it, name)  # 其余属性交给 torch 的迭代器

    def __next__(self):
        try:
            return next(self._it)
        except UNetCourseError as exc:
            clean = worker_free_message(exc)
            if clean is None:
                raise
            raise type(exc)(clean) from None  # 与 num_workers=0 时相同的类与消息，不带工作进程的回溯


class SegmentationLoader(DataLoader):
    """A :class:`~torch.utils.data.DataLoader` whose worker errors read as in the main process.
    工作进程中的错误与主进程中显示的消息相同的 DataLoader

    Same arguments and behaviour as ``DataLoader``; only a :class:`~unet_course.errors.UNetCourseError` raised in
    a worker (or the pin-memory thread) is re-raised with its own class and message and without the worker's
    traceback. Other exceptions (bugs) keep torch's full report.
    参数与行为同 DataLoader；只有 UNetCourseError 会去掉工作进程的回溯，其余异常保持原样
    """

    def __iter__(self) -> Iterator:
        if self.persistent_workers and self._iterator is not None and self.generator is not None:
            # A new iterator takes one draw from the generator (its workers' base seed) before the shuffle; the
            # persistent one, reused from the second epoch on, does not. Take it anyway, so each epoch's shuffle
            # is the same as with a new iterator, and a run resumed at this epoch (new workers) replays it.
            # 复用的常驻迭代器不再抽取基础种子；照样抽取一次，使每轮的打乱与新迭代器（以及续训）一致
            torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        return _CleanErrors(super().__iter__())


def _train_and_val_datasets(cfg, key: str) -> tuple[SegmentationDataset, SegmentationDataset | None]:
    """The two splits of ``cfg``; no validation set for real data with ``val_fraction == 0``.
    按 cfg 构建训练与验证数据集；真实数据 val_fraction=0 时没有验证集
    """
    check_folds(key, getattr(cfg, "folds", 0))                        # 不支持 k 折的数据集不能静默忽略 folds
    options = dataset_options(key, getattr(cfg, "dataset_options", None))   # 如 ISBI-2012 的 n_val / n_holdout
    settings = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))
    common = dict(scale=cfg.scale, ignore_index=cfg.ignore_index)
    root = None if key.startswith("synthetic") else cfg.data_dir
    # val_fraction=0 on real data: every image trains, no validation (best.pt by training loss) 不做验证
    has_val = key.startswith("synthetic") or cfg.val_fraction > 0
    with options_blamed(key, options):                              # 选项取值有误时指明选项
        # the split (seed, fold, sizes, options) by the rule evaluate and cv use 与 evaluate、cv 同一划分规则
        train_ds = build_dataset(key, root=root, split="train", augment=cfg.augment, crop_size=cfg.crop_size,
                                 **common, **split_kwargs(key, "train", settings))
        val_ds = (build_dataset(key, root=root, split="val", **common, **split_kwargs(key, "val", settings))
                  if has_val else None)
    rotate, elastic = getattr(cfg, "rotate", 0.0), getattr(cfg, "elastic", 0.0)
    if rotate or elastic:                                   # 旋转与弹性形变只作用于训练裁剪
        train_ds.set_warp(rotate=rotate, elastic=elastic)
    enhance = getattr(cfg, "enhance", "none")
    if enhance != "none":                                   # 对比度增强：训练与验证使用同一方法
        for ds in (train_ds, val_ds):
            if ds is not None:
                ds.set_enhance(enhance)
    return train_ds, val_ds


def build_loaders(cfg, device: torch.device | str | None = None) -> tuple[DataLoader, DataLoader | None, DataInfo]:
    """Train and validation loaders for a :class:`~unet_course.config.TrainConfig`.
    根据 TrainConfig 构建训练与验证数据加载器

    Honours ``dataset, data_dir, scale, crop_size, image_size, train_samples, val_samples, val_fraction,
    samples_per_epoch, augment, rotate, elastic, num_workers, batch_size, seed, data_seed, ignore_index, in_channels, enhance``. The
    data sets split with :func:`~unet_course.config.data_seed_of` (``data_seed``, else ``seed``). The training loader
    shuffles with its own ``torch.Generator`` seeded by ``cfg.seed``; the caller can reseed it per epoch through
    ``train_loader.generator.manual_seed(...)`` for exact resumption (with ``samples_per_epoch`` the same
    generator drives the ``RandomSampler``, ``train_loader.sampler.generator``). ``samples_per_epoch`` (real data
    only; synthetic data use ``train_samples``) draws that many items per epoch, repeating the training set in
    fresh permutations, which suits random crops of a few large images. ``drop_last`` is on only when an epoch is
    larger than a batch. The validation loader never augments; it uses ``batch_size`` (or 1 when image sizes
    differ). With ``val_fraction=0`` on real data every labelled image trains and the validation loader is None.
    ``dataset_options`` (:func:`dataset_options`) reach the data set, e.g. ISBI-2012's 24/3/3 split
    ``{"n_val": 3, "n_holdout": 3}``.
    训练加载器使用自带的 torch.Generator 打乱顺序，调用方可在每轮重新设置种子；验证加载器不做增强

    Args:
        cfg: the training configuration. 训练配置
        device: where training runs; ``pin_memory`` is used only for CUDA. 训练设备

    Returns:
        ``(train_loader, val_loader, info)``; ``val_loader`` is None when ``val_fraction == 0`` (real data).

    Raises:
        ConfigError: ``batch_size`` larger than the training set or ``samples_per_epoch`` (both sizes named),
            whole training images of different sizes in batches of more than one, unknown data set, an empty split.
        DataError: missing or bad data.
    """
    key = dataset_key(cfg.dataset)
    train_ds, val_ds = _train_and_val_datasets(cfg, key)
    generator = torch.Generator()
    generator.manual_seed(int(cfg.seed))
    epoch_size, sampler = len(train_ds), None
    per_epoch = getattr(cfg, "samples_per_epoch", None)
    if per_epoch is not None and not key.startswith("synthetic"):
        if int(per_epoch) < 1:
            raise ConfigError(f"samples_per_epoch must be >= 1 or None, got {per_epoch!r}.")
        # 真实数据：每轮抽取 samples_per_epoch 个样本（训练集按随机排列重复），配合随机裁剪使用
        epoch_size = int(per_epoch)
        sampler = RandomSampler(train_ds, replacement=False, num_samples=epoch_size, generator=generator)
    if cfg.batch_size > epoch_size:
        what = (f"samples_per_epoch={epoch_size}" if sampler is not None
                else f"the training set ({len(train_ds)} items of {key!r})")
        raise ConfigError(
            f"batch_size={cfg.batch_size} is larger than {what}. Use batch_size <= {epoch_size}, a smaller "
            "val_fraction, more samples_per_epoch (real data) or more train_samples (synthetic)."
        )
    if cfg.batch_size > 1 and cfg.crop_size is None and not train_ds.uniform_size:
        where = f" in {str(cfg.data_dir)!r}" if getattr(cfg, "data_dir", None) else ""
        raise ConfigError(
            f"The training images of {key!r}{where} differ in size, so whole images cannot share a batch of "
            f"{cfg.batch_size}. Train on random crops of one size with --crop-size N (crop_size=N, e.g. 256; an "
            "image smaller than N is padded), or give one image per step with --batch-size 1."
        )
    workers = resolve_num_workers(cfg.num_workers)
    dev = torch.device(device) if device is not None else None
    pin = dev is not None and dev.type == "cuda"
    loader_kw = dict(num_workers=workers, pin_memory=pin, collate_fn=collate_segmentation,
                     worker_init_fn=WorkerSetup() if workers > 0 else None, persistent_workers=workers > 0)
    train_loader = SegmentationLoader(train_ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                              generator=generator, drop_last=epoch_size > cfg.batch_size, **loader_kw)
    val_loader = None
    if val_ds is not None:
        val_bs = cfg.batch_size if val_ds.uniform_size else 1
        val_loader = SegmentationLoader(val_ds, batch_size=val_bs, shuffle=False, **loader_kw)
    info = DataInfo(
        in_channels=train_ds.in_channels, n_classes=train_ds.n_classes, mask_values=list(train_ds.mask_values),
        class_names=list(train_ds.class_names), mean=list(train_ds.mean), std=list(train_ds.std),
        ignore_index=train_ds.ignore_index, n_train=len(train_ds), n_val=len(val_ds) if val_ds is not None else 0,
        dataset=key,
        enhance=train_ds.enhance,
    )
    return train_loader, val_loader, info
