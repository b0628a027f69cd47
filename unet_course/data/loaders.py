"""One entry point from a name (or a :class:`~unet_course.config.TrainConfig`) to data sets and loaders.
从名称（或 TrainConfig）到数据集与数据加载器的统一入口

``build_dataset(name, root, split, **kw)`` is shared by the CLI, the engine and the notebooks, so a data set is
built the same way everywhere. ``build_loaders(cfg)`` adds the train/val ``DataLoader`` pair and a small
:class:`DataInfo` that the model and the checkpoint need (channels, classes, ``mask_values``, normalisation).
命令行、训练引擎与 notebook 共用 build_dataset；build_loaders 额外返回 DataInfo（通道数、类别数、取值映射、归一化）

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

import inspect
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler, default_collate

from ..config import data_seed_of
from ..errors import ConfigError, DataError, UNetCourseError, did_you_mean
from .base import SegmentationDataset, split_indices
from .drive import DRIVEDataset
from .folder import CarvanaDataset, FolderPairs
from .isbi import ISBI2012Dataset
from .synthetic import SyntheticSegmentation
from .workers import WorkerSetup

__all__ = ["DATASETS", "DataInfo", "build_dataset", "build_loaders", "check_folds", "dataset_options",
           "options_blamed", "resolve_num_workers", "split_kwargs", "split_indices", "collate_segmentation",
           "SegmentationLoader", "worker_free_message"]


def _synthetic(root=None, split: str = "train", **kw) -> SyntheticSegmentation:
    kw.setdefault("task", "binary")
    return SyntheticSegmentation(split=split, **kw)


def _synthetic_multiclass(root=None, split: str = "train", **kw) -> SyntheticSegmentation:
    if kw.get("task", "multiclass") != "multiclass":
        raise ConfigError(f"Dataset 'synthetic-multiclass' has task='multiclass', got task={kw['task']!r}; use "
                          "dataset 'synthetic' for the binary task.")
    kw["task"] = "multiclass"
    return SyntheticSegmentation(split=split, **kw)


def _drive(root=None, split: str = "train", **kw) -> DRIVEDataset:
    return DRIVEDataset(root=root, split=split, **kw)


def _isbi(root=None, split: str = "train", **kw) -> ISBI2012Dataset:
    return ISBI2012Dataset(root=root, split=split, **kw)


def _carvana(root=None, split: str = "train", **kw) -> CarvanaDataset:
    return CarvanaDataset(root=root, split=split, **kw)


def _folder(root=None, split: str = "train", imgs_dir=None, masks_dir=None, **kw) -> FolderPairs:
    if imgs_dir is None or masks_dir is None:
        if root is None:
            raise ConfigError(
                "Dataset 'folder' needs data_dir=<root> holding images/ and masks/, or imgs_dir=... and "
                "masks_dir=...; expected layout:\n" + FolderPairs.layout
            )
        root = Path(root).expanduser()
        imgs_dir = imgs_dir if imgs_dir is not None else root / "images"
        masks_dir = masks_dir if masks_dir is not None else root / "masks"
    return FolderPairs(imgs_dir, masks_dir, split=split, **kw)


#: Registry: data set name -> builder ``(root=None, split="train", **kw) -> SegmentationDataset``.
#: 数据集注册表：名称 -> 构建函数
DATASETS: dict[str, Callable[..., SegmentationDataset]] = {
    "synthetic": _synthetic,
    "synthetic-multiclass": _synthetic_multiclass,
    "drive": _drive,
    "isbi2012": _isbi,
    "carvana": _carvana,
    "folder": _folder,
}

#: Keyword arguments of each builder, for error messages. 每个构建函数接受的参数
_ACCEPTS = {
    "synthetic": SyntheticSegmentation, "synthetic-multiclass": SyntheticSegmentation, "drive": DRIVEDataset,
    "isbi2012": ISBI2012Dataset, "carvana": FolderPairs, "folder": FolderPairs,
}


def _normalise_name(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    aliases = {"isbi": "isbi2012", "isbi-2012": "isbi2012", "synthetic-binary": "synthetic"}
    key = aliases.get(key, key)
    if key not in DATASETS:
        raise ConfigError(f"Unknown dataset {name!r}; known data sets: {', '.join(DATASETS)}.")
    return key


def _accepted(key: str) -> set[str]:
    params = set(inspect.signature(_ACCEPTS[key].__init__).parameters) - {"self", "kwargs"}
    if key == "carvana":
        params |= set(inspect.signature(CarvanaDataset.__init__).parameters) - {"self", "kwargs"}
        params -= {"imgs_dir", "masks_dir"}
    if key == "folder":
        params |= {"root"}
    return params | {"root", "split"}


def build_dataset(name: str, root=None, split: str = "train", **kw) -> SegmentationDataset:
    """Build a data set by name.
    按名称构建数据集

    Args:
        name: one of :data:`DATASETS` (``synthetic``, ``synthetic-multiclass``, ``drive``, ``isbi2012``,
            ``carvana``, ``folder``). 数据集名称
        root: data folder; None -> ``unet_course.env.data_root()/<DRIVE|isbi2012|carvana>`` (unused for
            synthetic; required for ``folder`` unless ``imgs_dir``/``masks_dir`` are given). 数据目录
        split: ``"train"`` | ``"val"`` | ``"test"`` | ``"all"`` (and ``"holdout"`` for ISBI-2012). 数据划分
        **kw: passed to the data set class (``val_fraction``, ``seed``, ``crop_size``, ``scale``, ``augment``,
            ``in_channels``, ``ignore_index``, ``mean``, ``std``, ...; synthetic: ``n_samples``, ``image_size``).

    Returns:
        A :class:`~unet_course.data.base.SegmentationDataset`.

    Raises:
        ConfigError: unknown name (known names listed) or an argument the data set does not take.
        DataError: missing or bad data (see each data set).

    >>> ds = build_dataset("synthetic", split="val", n_samples=2, image_size=32)
    >>> len(ds), ds.mask_values, ds.in_channels
    (2, [0, 255], 3)
    """
    key = _normalise_name(name)
    unknown = sorted(set(kw) - _accepted(key))
    if unknown:
        raise ConfigError(
            f"Dataset {key!r} does not take {', '.join(unknown)}; it accepts: {', '.join(sorted(_accepted(key)))}."
        )
    return DATASETS[key](root=root, split=split, **kw)


#: Arguments that :func:`build_loaders` sets itself from other TrainConfig fields. build_loaders 自行设置的参数
#: A key here would silently override (or be overridden by) its own setting. 这些键会与其专门的设置冲突
RESERVED_OPTIONS = {"root": "data_dir", "split": None, "augment": "augment", "crop_size": "crop_size",
                    "n_samples": "train_samples / val_samples", "image_size": "image_size", "seed": "data_seed",
                    "scale": "scale", "ignore_index": "ignore_index", "in_channels": "in_channels",
                    "val_fraction": "val_fraction", "folds": "folds", "fold": "fold", "train": None, "transform": None}


def dataset_options(name: str, options: dict | None) -> dict:
    """``TrainConfig.dataset_options`` checked against what the data set ``name`` accepts.
    检查 dataset_options 是否为该数据集接受的参数

    Raises:
        ConfigError: not a dict, a key the data set does not take (the message lists what it accepts), or a key
            that has its own TrainConfig field.

    >>> dataset_options("isbi2012", {"n_val": 3, "n_holdout": 3})
    {'n_val': 3, 'n_holdout': 3}
    """
    key = _normalise_name(name)
    if not options:
        return {}
    if not isinstance(options, dict):
        raise ConfigError(f"dataset_options must be a dict (JSON object), got {type(options).__name__}.")
    taken = sorted(k for k in options if k in RESERVED_OPTIONS)
    if taken:
        why = "; ".join(f"{k} has its own setting, {RESERVED_OPTIONS[k]}" if RESERVED_OPTIONS[k]
                        else f"{k} is chosen by the loaders" for k in taken)
        raise ConfigError(f"dataset_options may not set {', '.join(taken)}: {why}.")
    unknown = sorted(set(options) - _accepted(key))
    if unknown:
        accepted = sorted(_accepted(key) - set(RESERVED_OPTIONS))
        raise ConfigError(f"dataset_options {', '.join(unknown)} are not arguments of dataset {key!r}."
                          f"{did_you_mean(unknown, accepted)} It accepts: {', '.join(accepted)}.")
    return dict(options)


@contextmanager
def options_blamed(name: str, options: dict | None) -> Iterator[None]:
    """Turn a ``TypeError`` / ``ValueError`` a data set raises while taking user-given ``options`` (a string where
    a list belongs, say) into a :class:`ConfigError` that names them; without options nothing changes.
    数据集因 dataset_options 的取值出错时，给出指明这些选项的错误而不是堆栈

    >>> with options_blamed("synthetic", {"std": -1}):
    ...     tuple(float(s) for s in -1)
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: Dataset 'synthetic' could not use dataset_options {"std": -1}: 'int' object is not iterable. Check the values against the data set's docstring (e.g. mean and std are lists, one number per channel).
    """
    try:
        yield
    except UNetCourseError:
        raise
    except (TypeError, ValueError) as exc:
        if not options:
            raise
        raise ConfigError(f"Dataset {_normalise_name(name)!r} could not use dataset_options {json.dumps(options)}: "
                          f"{exc}. Check the values against the data set's docstring (e.g. mean and std are lists, "
                          "one number per channel).") from None


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
            f"Images of different sizes {sorted(shapes)} in one batch ({', '.join(names[:4])}). Use batch_size=1 "
            "for evaluation, or a crop_size/scale that gives equal sizes."
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


def check_folds(name: str, folds: int) -> None:
    """Refuse ``folds`` for a data set without a k-fold split, instead of ignoring it. 不支持 k 折的数据集拒绝 folds

    >>> check_folds("drive", 5)
    >>> check_folds("synthetic", 5)
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: Dataset 'synthetic' has no k-fold split, so folds=5 cannot be used; k-fold cross-validation works with: drive, carvana, folder. Use val_fraction (or the data set's own split options) instead.
    """
    key = _normalise_name(name)
    if folds and "folds" not in _accepted(key):
        able = ", ".join(k for k in DATASETS if "folds" in _accepted(k))
        raise ConfigError(f"Dataset {key!r} has no k-fold split, so folds={folds} cannot be used; k-fold "
                          f"cross-validation works with: {able}. Use val_fraction (or the data set's own split "
                          "options) instead.")


def split_kwargs(name: str, split: str, train_cfg: dict[str, Any], same_dataset: bool = True) -> dict[str, Any]:
    """The one rule for rebuilding a run's ``split``: arguments of :func:`build_dataset` taken from its
    ``train_config`` (the same data seed, fold, validation fraction and sizes), so a checkpoint is scored on the
    images it was validated on and never on images it trained on.
    从训练配置重建同一划分（同样的种子、折、验证比例与尺寸），保证评分图像与训练时的验证集一致

    The run's ``dataset_options`` (e.g. ISBI-2012's ``n_val``/``n_holdout``) and its k-fold split (``folds``,
    ``fold``) are included when the data set is the one it was trained on (``same_dataset``).
    在同一数据集上评分时带上训练时的 dataset_options 与 k 折划分

    >>> split_kwargs("isbi2012", "holdout", {"seed": 0, "val_fraction": 0.2, "dataset_options": {"n_holdout": 3}})
    {'seed': 0, 'val_fraction': 0.2, 'n_holdout': 3}
    >>> split_kwargs("drive", "val", {"seed": 1, "data_seed": 0, "val_fraction": 0.2, "folds": 5, "fold": 3})
    {'seed': 0, 'val_fraction': 0.2, 'folds': 5, 'fold': 3}
    """
    wanted: dict[str, Any] = {"seed": data_seed_of(train_cfg), "in_channels": train_cfg.get("in_channels")}
    if _normalise_name(name).startswith("synthetic"):
        wanted["image_size"] = train_cfg.get("image_size")
        wanted["n_samples"] = train_cfg.get("train_samples" if split == "train" else "val_samples")
    else:
        wanted["val_fraction"] = train_cfg.get("val_fraction")
    if same_dataset:
        if train_cfg.get("folds"):                                  # k 折：第 fold 折是验证集
            wanted.update(folds=train_cfg["folds"], fold=train_cfg.get("fold", 0))
        wanted.update(train_cfg.get("dataset_options") or {})      # 与训练时相同的划分
    return {k: v for k, v in wanted.items() if v is not None}


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
            unknown data set, an empty split.
        DataError: missing or bad data.
    """
    key = _normalise_name(cfg.dataset)
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
