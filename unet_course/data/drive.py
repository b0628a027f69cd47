"""DRIVE: retinal vessel segmentation (Digital Retinal Images for Vessel Extraction).
DRIVE：视网膜血管分割数据集

Layout (the original release; see data/README.md)::

    DRIVE/
      training/images/21_training.tif ... 40_training.tif      RGB 565x584 (W x H)
      training/1st_manual/21_manual1.gif ...                   vessel labels, 0 / 255
      training/mask/21_training_mask.gif ...                   field of view (FOV), 0 / 255
      test/images/01_test.tif ... 20_test.tif
      test/mask/01_test_mask.gif ...
      test/1st_manual/01_manual1.gif ...                       optional; not in every copy

- ``mask_values = [0, 255]``: class 0 background, class 1 vessel. 类别 0 为背景，类别 1 为血管
- Pixels outside the FOV get ``ignore_index`` (255) in the target, so they are neither trained on nor scored.
  视野外的像素在目标中记为 ignore_index，既不参与训练也不参与评分
- Splits: ``"train"`` / ``"val"`` are a seeded split of the 20 training images (``val_fraction``, ``seed``);
  ``"all"`` is the 20 training images; ``"test"`` is the 20 test images, **without labels** unless
  ``test/1st_manual`` exists (then ``has_labels`` is True). 测试集默认没有标签，仅用于预测
- The 20 + 20 images are small (about 1 MB each), so they are decoded once per process and kept in memory.
  图像只解码一次并缓存在内存中
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..env import data_root
from ..errors import ConfigError, DataError
from .base import SegmentationDataset, select_split, wrong_level_hint
from .io import TIFF_EXTENSIONS, read_image, read_mask, resolve_channels

#: Per-channel RGB mean/std in [0, 1] units over all pixels of the 20 DRIVE training images, computed once with
#: ``compute_mean_std([read_image(p) for p in sorted(glob("DRIVE/training/images/*.tif"))])``.
#: DRIVE 训练集 20 张图像全部像素的 RGB 均值与标准差
DRIVE_MEAN = (0.4974, 0.2706, 0.1624)
DRIVE_STD = (0.3481, 0.1900, 0.1079)
#: Native size of every DRIVE image, ``(H, W)``. DRIVE 图像原始尺寸
DRIVE_SIZE = (584, 565)

DRIVE_LAYOUT = """\
DRIVE/
  training/
    images/21_training.tif ... 40_training.tif
    1st_manual/21_manual1.gif ... 40_manual1.gif
    mask/21_training_mask.gif ... 40_training_mask.gif
  test/
    images/01_test.tif ... 20_test.tif
    mask/01_test_mask.gif ... 20_test_mask.gif
    1st_manual/01_manual1.gif ...   (optional)"""


def _missing_root(root: Path, what: str) -> DataError:
    return DataError(
        f"DRIVE {what} not found at {str(root)!r}.{wrong_level_hint(root, 'DRIVE', 'training/images')} "
        f"Expected this layout:\n{DRIVE_LAYOUT}\n"
        "Download DRIVE (see data/README.md) and pass its folder with --data-dir (in Python: data_dir= or root=), "
        "or set UNET_COURSE_DATA to the folder that holds DRIVE/."
    )


@lru_cache(maxsize=4)
def _load_part(folder: str, part: str, with_fov: bool) -> tuple:
    """Decode every image of ``<folder>/<part>`` once: ``(names, images, manuals or None, fovs or None)``.
    解码某个子集的全部图像（每个进程只做一次）
    """
    base = Path(folder) / part
    img_dir = base / "images"
    if not img_dir.is_dir():
        raise _missing_root(Path(folder), f"'{part}/images' folder")
    paths = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in TIFF_EXTENSIONS and not p.name.startswith("."))
    if not paths:
        raise DataError(f"No .tif images in {str(img_dir)!r}. Expected this layout:\n{DRIVE_LAYOUT}")
    manual_dir = base / "1st_manual"
    has_manual = manual_dir.is_dir() and any(manual_dir.iterdir())
    if part == "training" and not has_manual:
        raise _missing_root(Path(folder), "'training/1st_manual' label folder")
    names, images, manuals, fovs = [], [], [], []
    for p in paths:
        stem = p.stem  # "21_training"
        number = stem.split("_")[0]
        names.append(stem)
        images.append(read_image(p))
        if has_manual:
            mp = manual_dir / f"{number}_manual1.gif"
            if not mp.is_file():
                raise DataError(
                    f"DRIVE image {p.name!r} has no label: expected {str(mp)!r}. Restore the file or remove the image."
                )
            manuals.append(read_mask(mp))
        if with_fov:
            fp = base / "mask" / f"{stem}_mask.gif"
            if not fp.is_file():
                raise DataError(
                    f"DRIVE image {p.name!r} has no field-of-view mask: expected {str(fp)!r}. Restore it, or score "
                    "every pixel with --dataset-options '{\"use_fov\": false}' (use_fov=False in Python)."
                )
            fovs.append(read_mask(fp) > 0)
        for extra, label in ((manuals[-1] if has_manual else None, "label"), (fovs[-1] if with_fov else None, "FOV")):
            if extra is not None and extra.shape != images[-1].shape[:2]:
                raise DataError(
                    f"DRIVE {label} of {p.name!r} is {extra.shape[1]}x{extra.shape[0]} (WxH) but the image is "
                    f"{images[-1].shape[1]}x{images[-1].shape[0]}; the files do not belong together."
                )
    for arr in images + manuals + fovs:
        arr.setflags(write=False)  # 缓存的数组只读，防止被就地修改
    return tuple(names), tuple(images), (tuple(manuals) if has_manual else None), (tuple(fovs) if with_fov else None)


class DRIVEDataset(SegmentationDataset):
    """DRIVE retinal vessels: 20 labelled training images, 20 test images.
    DRIVE 视网膜血管：20 张带标签的训练图像与 20 张测试图像

    Args:
        root: the ``DRIVE`` folder. None -> ``unet_course.env.data_root() / "DRIVE"``. 数据集根目录
        split: ``"train"`` | ``"val"`` | ``"all"`` (training images) | ``"test"``. 数据划分
        val_fraction: share of the 20 training images held out for ``"val"`` (0.2 -> 4 images). 验证比例
        seed: seed of the train/val split. 划分种子
        folds, fold: k-fold cross-validation: validate on fold ``fold`` of ``folds`` (``val_fraction`` unused;
            see :func:`~unet_course.data.base.split_indices`). k 折交叉验证
        train_images: train on only the first that many images of the ``"train"`` split, validation unchanged (a
            learning curve; ``--dataset-options '{"train_images": 8}'``). 只用训练划分的前若干张图像
        in_channels: None or 3 keeps RGB; 1 is refused (see :func:`~unet_course.data.io.match_channels`).
        use_fov: mark pixels outside the FOV with ``ignore_index`` (default True). 是否使用视野掩码
        train, augment, crop_size, scale, mean, std, ignore_index, transform: see
            :class:`~unet_course.data.base.SegmentationDataset`; mean/std default to :data:`DRIVE_MEAN` /
            :data:`DRIVE_STD`.

    Raises:
        DataError: missing folders or files (the message shows the expected layout), unreadable files.
        ConfigError: unknown split or an empty split.
    """

    cache_loaded = True                                  # 全部图像已在内存中：缓存 load 的结果

    def __init__(self, root: str | Path | None = None, split: str = "train", val_fraction: float = 0.2,
                 seed: int = 0, in_channels: int | None = None, use_fov: bool = True, train: bool | None = None,
                 augment: bool = True, crop_size: int | None = None, scale: float = 1.0,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                 ignore_index: int = 255, transform=None, folds: int = 0, fold: int = 0,
                 train_images: int | None = None) -> None:
        if root is None:
            root = data_root() / "DRIVE"
        root = Path(root).expanduser()
        if not root.is_dir():
            raise _missing_root(root, "folder")
        if split not in ("train", "val", "all", "test"):
            raise ConfigError(f"Unknown split {split!r} for DRIVE; choose one of: train, val, all, test.")
        part = "test" if split == "test" else "training"
        names, images, manuals, fovs = _load_part(str(root.resolve()), part, bool(use_fov))
        if split == "test":
            chosen = list(range(len(names)))
        else:
            chosen = select_split(len(names), split, val_fraction, seed, f"DRIVE ({root})", folds=folds, fold=fold,
                                  train_images=train_images)
        self.root = root
        self.split = split
        self._images = [images[i] for i in chosen]
        self._manuals = None if manuals is None else [manuals[i] for i in chosen]
        self._fovs = None if fovs is None else [fovs[i] for i in chosen]
        resolve_channels(self._images[0].shape[2], in_channels, names[chosen[0]])  # RGB：只接受 None 或 3
        super().__init__(
            mask_values=[0, 255], class_names=["background", "vessel"], in_channels=3,
            mean=DRIVE_MEAN if mean is None else mean, std=DRIVE_STD if std is None else std,
            ignore_index=ignore_index, names=[names[i] for i in chosen], has_labels=self._manuals is not None,
            train=(split == "train") if train is None else train, augment=augment, crop_size=crop_size,
            scale=scale, transform=transform, uniform_size=len({im.shape for im in self._images}) == 1,
        )

    def __len__(self) -> int:
        return len(self._images)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        index = self._check_index(index)
        mask = None if self._manuals is None else self._manuals[index]
        fov = None if self._fovs is None else self._fovs[index]
        return self._images[index], mask, fov

    def raw_mask(self, index: int) -> np.ndarray | None:
        index = self._check_index(index)
        return None if self._manuals is None else self._manuals[index]

    def __repr__(self) -> str:
        return f"DRIVEDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
