"""Data sets by name: which class builds each, the arguments it takes, and the one rule for a run's split.
按名称构建数据集：各数据集接受的参数，以及重建一次运行的数据划分的唯一规则

``build_dataset(name, root, split, **kw)`` is shared by the CLI, the engine and the notebooks, so a data set is
built the same way everywhere; an argument the data set does not take is refused with the list of those it takes.
``dataset_options`` checks the user's extra arguments (``--dataset-options``) and :func:`split_kwargs` rebuilds
the split a run trained and validated on (seed, fold, validation fraction, sizes), for training, ``cv`` and
``evaluate`` alike. 命令行、训练引擎与 notebook 共用 build_dataset；split_kwargs 是训练、cv 与 evaluate 共用的划分规则
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import data_seed_of
from ..errors import ConfigError, UNetCourseError, did_you_mean
from .base import SegmentationDataset
from .drive import DRIVEDataset
from .folder import CarvanaDataset, FolderPairs
from .isbi import ISBI2012Dataset
from .synthetic import SyntheticSegmentation

__all__ = ["DATASETS", "RESERVED_OPTIONS", "build_dataset", "check_folds", "dataset_key", "dataset_options",
           "options_blamed", "split_kwargs"]


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


def dataset_key(name: str) -> str:
    """The registry's key for a data set name (case, ``_`` and aliases forgiven); ConfigError for an unknown name.
    数据集名称对应的注册键（忽略大小写、下划线与别名）

    >>> dataset_key("ISBI_2012"), dataset_key("Synthetic")
    ('isbi2012', 'synthetic')
    """
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
    key = dataset_key(name)
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
    key = dataset_key(name)
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
        raise ConfigError(f"Dataset {dataset_key(name)!r} could not use dataset_options {json.dumps(options)}: "
                          f"{exc}. Check the values against the data set's docstring (e.g. mean and std are lists, "
                          "one number per channel).") from None


def check_folds(name: str, folds: int) -> None:
    """Refuse ``folds`` for a data set without a k-fold split, instead of ignoring it. 不支持 k 折的数据集拒绝 folds

    >>> check_folds("drive", 5)
    >>> check_folds("synthetic", 5)
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: Dataset 'synthetic' has no k-fold split, so folds=5 cannot be used; k-fold cross-validation works with: drive, carvana, folder. Use val_fraction (or the data set's own split options) instead.
    """
    key = dataset_key(name)
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
    if dataset_key(name).startswith("synthetic"):
        wanted["image_size"] = train_cfg.get("image_size")
        wanted["n_samples"] = train_cfg.get("train_samples" if split == "train" else "val_samples")
    else:
        wanted["val_fraction"] = train_cfg.get("val_fraction")
    if same_dataset:
        if train_cfg.get("folds"):                                  # k 折：第 fold 折是验证集
            wanted.update(folds=train_cfg["folds"], fold=train_cfg.get("fold", 0))
        wanted.update(train_cfg.get("dataset_options") or {})      # 与训练时相同的划分
    return {k: v for k, v in wanted.items() if v is not None}
