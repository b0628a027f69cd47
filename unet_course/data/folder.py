"""Image/mask pairs from two folders or two zip archives (the Carvana layout).
从两个文件夹或两个 zip 压缩包读取图像/掩码对（Carvana 目录结构）

Images and masks are paired by file stem: ``ID_01.jpg`` <-> ``ID_01<mask_suffix>.<any extension>``, so with the
default ``mask_suffix="_mask"`` Carvana's ``train/00087a6bd4dc_01.jpg`` pairs with
``train_masks/00087a6bd4dc_01_mask.gif``. Both sides accept jpg/jpeg/png/tif/tiff/gif/bmp.
图像与掩码按文件名主干配对，两侧都接受 jpg/jpeg/png/tif/tiff/gif/bmp

Either side may be a ``.zip`` archive (Kaggle's ``train.zip`` / ``train_masks.zip``): members are read into
memory and decoded from bytes, nothing is unzipped, and a top folder inside the archive (``train/``) is fine.
This matters on Kaggle, where ``/kaggle/input`` is read-only. A member larger than :data:`MAX_ZIP_MEMBER_BYTES`
(256 MiB uncompressed) is refused before it is read, and at most that many bytes (+1) are ever read from one
member, so a small archive holding a huge, highly compressed member (a "zip bomb") cannot exhaust memory.
任一侧都可以是 zip 压缩包：直接从内存解码，不解压到磁盘（Kaggle 的输入目录只读）；
单个成员解压后超过 MAX_ZIP_MEMBER_BYTES（256 MiB）时在读取前报错，且每个成员最多读取该上限 + 1 字节

Mask values are discovered (sorted unique values over the masks, cached in memory per folder) unless
``mask_values`` is given; the result is exposed as ``dataset.mask_values`` so that checkpoints can store it.
Nothing is written next to the data.
掩码取值自动发现并缓存在内存中（不会写入数据目录），也可以通过 mask_values 显式给出
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from ..env import data_root
from ..errors import ConfigError, DataError
from .base import SegmentationDataset, select_split, wrong_level_hint
from .io import (
    IMAGE_EXTENSIONS,
    image_size,
    is_image_file,
    match_channels,
    read_image,
    read_mask,
    resolve_channels,
)
from .masks import discover_mask_values, split_void, values_to_indices, void_hint
from .transforms import compute_mean_std

# 内存缓存：均值/标准差按数据来源缓存，训练集与验证集共用
_STATS_CACHE: dict[tuple, tuple[tuple[float, ...], tuple[float, ...]]] = {}
# masks folders already told about a possible void value 已提示过无标签取值的掩码文件夹
_HINTED: set[str] = set()

#: Largest uncompressed size of one zip member (one image or mask file): 256 MiB, far above any real image
#: (a Carvana JPEG is about 0.1 MB, a 16-bit 8k x 8k TIFF 128 MiB). Checked against the member's declared size
#: before reading, and enforced while reading. 单个 zip 成员解压后的最大字节数
MAX_ZIP_MEMBER_BYTES = 256 * 2**20

FOLDER_LAYOUT = f"""\
<root>/
  images/   case_001.png  case_002.jpg ...      (any of {' '.join(IMAGE_EXTENSIONS)})
  masks/    case_001_mask.png  case_002_mask.gif ...   (stem + mask_suffix, any extension)"""

CARVANA_LAYOUT = """\
carvana/                       (Kaggle: /kaggle/input/carvana-image-masking-challenge)
  train/         00087a6bd4dc_01.jpg ...          1918x1280 RGB
  train_masks/   00087a6bd4dc_01_mask.gif ...     values 0 / 1
or, not unzipped:
  train.zip         (members train/00087a6bd4dc_01.jpg ...)
  train_masks.zip   (members train_masks/00087a6bd4dc_01_mask.gif ...)"""


class _DirSource:
    """Image files in one folder (or in its single sub-folder, for doubly nested unzips). 文件夹中的图像文件"""

    def __init__(self, path: Path) -> None:
        self.path = path
        files = [p for p in path.iterdir() if p.is_file() and is_image_file(p)]
        if not files:
            subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
            if len(subdirs) == 1:
                files = [p for p in subdirs[0].iterdir() if p.is_file() and is_image_file(p)]
        self.keys = sorted(str(p) for p in files)

    def stem(self, key: str) -> str:
        return Path(key).stem

    def read(self, key: str) -> str:
        return key

    def label(self, key: str) -> str:
        return key


class _ZipSource:
    """Image members of a zip archive, read without unzipping; the handle is reopened in each process.
    zip 压缩包中的图像成员；每个进程各自打开文件句柄（fork 后共享句柄会读错数据）
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zf: zipfile.ZipFile | None = None
        self._pid = -1
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"Cannot open {str(path)!r} as a zip archive ({exc}); re-download it.") from None
        self.keys = sorted(
            n for n in names
            if not n.endswith("/") and not n.startswith("__MACOSX/") and is_image_file(PurePosixPath(n).name)
        )

    def _handle(self) -> zipfile.ZipFile:
        if self._zf is None or self._pid != os.getpid():
            self._zf = zipfile.ZipFile(self.path)
            self._pid = os.getpid()
        return self._zf

    def stem(self, key: str) -> str:
        return PurePosixPath(key).stem

    def read(self, key: str) -> bytes:
        """The member's bytes, refusing members over :data:`MAX_ZIP_MEMBER_BYTES`. 读取成员字节（有大小上限）"""
        cap = MAX_ZIP_MEMBER_BYTES
        try:
            zf = self._handle()
            declared = zf.getinfo(key).file_size  # 目录中声明的解压后大小，读取前检查
            if declared > cap:
                raise self._too_large(key, f"declares {declared} bytes", cap)
            with zf.open(key) as member:
                data = member.read(cap + 1)  # 最多读取 cap + 1 字节：声明不实也不会耗尽内存
        except (zipfile.BadZipFile, OSError, KeyError) as exc:
            raise DataError(f"Cannot read {self.label(key)!r} ({exc}); the archive is damaged, re-download it.") from None
        if len(data) > cap:
            raise self._too_large(key, f"holds more than {cap} bytes (its header claims {declared})", cap)
        return data

    def _too_large(self, key: str, size: str, cap: int) -> DataError:
        return DataError(
            f"Zip member {key!r} of {str(self.path)!r} {size} uncompressed, over the cap of {cap} bytes "
            f"({cap / 2**20:.0f} MiB) per image. The archive is damaged or not an image archive (a small zip that "
            "unpacks to gigabytes is a zip bomb); re-download it, or raise unet_course.data.folder."
            "MAX_ZIP_MEMBER_BYTES if your images really are that large."
        )

    def label(self, key: str) -> str:
        return f"{self.path}:{key}"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_zf"], state["_pid"] = None, -1  # 句柄不能被 pickle，在工作进程中重新打开
        return state


class ZipMasks:
    """The mask files of a ``.zip`` (Carvana's ``train_masks.zip``), read without unzipping, as
    :func:`~unet_course.data.mask_report.inspect_masks` takes a data set: ``len``, ``names`` and ``raw_mask(i)``.
    zip 中的掩码文件（不解压），按 inspect_masks 接受数据集的方式提供

    Raises:
        DataError: not a zip archive, or one without image members.
    """

    def __init__(self, path: str | Path) -> None:
        self.source = _ZipSource(Path(path).expanduser())
        if not self.source.keys:
            raise DataError(f"{str(path)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)}) to inspect.")
        self.names = [self.source.label(k) for k in self.source.keys]

    def __len__(self) -> int:
        return len(self.source.keys)

    def raw_mask(self, index: int) -> np.ndarray:
        key = self.source.keys[index]
        return read_mask(self.source.read(key), name=self.source.label(key))


def _check_void(void_values, mask_values) -> list[int]:
    """``void_values`` as sorted ints (None: none); refused when not integers or when a class value is void too."""
    void_values = () if void_values is None else void_values
    if isinstance(void_values, int | str) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                     for v in void_values):
        raise ConfigError(f"void_values must be a list of integer mask values, e.g. [255]; got {void_values!r}.")
    both = sorted(set(void_values) & set(mask_values or ()))
    if both:
        raise ConfigError(f"Mask value(s) {both} are in both mask_values {list(mask_values)} and void_values "
                          f"{list(void_values)}; a value is either a class or void, not both.")
    return sorted({int(v) for v in void_values})


def _open_source(path: Path, what: str, layout: str) -> _DirSource | _ZipSource:
    if path.is_dir():
        return _DirSource(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        return _ZipSource(path)
    hint = wrong_level_hint(path.parent, None, path.name)            # e.g. --data-dir ROOT/images 目录差了一层
    raise DataError(
        f"{what} {str(path)!r} does not exist (or is neither a folder nor a .zip).{hint} Expected a layout "
        f"like:\n{layout}"
    )


def _by_stem(source, strip_suffix: str, what: str) -> dict[str, str]:
    """Map stem (minus ``strip_suffix``) -> key, refusing duplicates. 建立主干名到文件的映射，拒绝重复"""
    out: dict[str, str] = {}
    for key in source.keys:
        stem = source.stem(key)
        if strip_suffix:
            if not stem.endswith(strip_suffix):
                continue
            stem = stem[: -len(strip_suffix)]
        if stem in out:
            raise DataError(
                f"Two {what} share the stem {stem!r}: {source.label(out[stem])!r} and {source.label(key)!r}. Keep "
                "one file per sample."
            )
        out[stem] = key
    return out


def _list_some(names: list[str], n: int = 5) -> str:
    shown = ", ".join(repr(x) for x in names[:n])
    return shown + (f" ... ({len(names)} in all)" if len(names) > n else "")


class FolderPairs(SegmentationDataset):
    """Segmentation pairs from an images folder/zip and a masks folder/zip, matched by stem.
    按文件名主干匹配的图像/掩码对（文件夹或 zip）

    Args:
        imgs_dir: folder or ``.zip`` with the images. 图像文件夹或 zip
        masks_dir: folder or ``.zip`` with the masks. 掩码文件夹或 zip
        mask_suffix: a mask's stem is the image's stem plus this (``"_mask"``; ``""`` for equal stems).
            掩码文件名主干 = 图像主干 + 后缀
        split: ``"all"`` | ``"train"`` | ``"val"`` (seeded split over the sorted pairs). 数据划分
        val_fraction, seed, folds, fold: the train/val split, or fold ``fold`` of a k-fold split (see
            :func:`~unet_course.data.base.split_indices`). 划分参数
        mask_values: raw values in class-index order; None -> discovered (sorted). 取值映射
        max_scan: discover values on at most this many masks (evenly spaced); None scans all. A value met later
            that is not in the mapping raises :class:`DataError` naming the file. 发现取值时最多扫描的掩码数
        max_classes: refuse more discovered values than this (a sign of interpolated/JPEG masks). 类别数上限
        void_values: raw values that mark pixels without a label (PASCAL VOC's 255 border): no class; the loss
            ignores them and scoring skips them (:func:`~unet_course.data.masks.split_void`). 无标签取值
        in_channels: None -> from the first image (1 for gray, 3 otherwise); gray images are repeated when 3 are
            asked; RGB data with ``in_channels=1`` raises. 通道数
        strict: unpaired files raise :class:`DataError`; with False they are skipped with a warning. 严格配对
        stats_samples: images (evenly spaced over all pairs) used to compute mean/std when not given. 统计样本数
        name: data set label used in messages. 数据集名称
        train, augment, crop_size, scale, mean, std, ignore_index, transform: see
            :class:`~unet_course.data.base.SegmentationDataset`.

    Raises:
        DataError: missing folder (layout shown), no images, unpaired files, corrupt files, size mismatch between
            an image and its mask (both sizes named), unexpected mask values.
        ConfigError: unknown or empty split.
    """

    layout = FOLDER_LAYOUT

    def __init__(self, imgs_dir: str | Path, masks_dir: str | Path, mask_suffix: str = "_mask",
                 split: str = "all", val_fraction: float = 0.2, seed: int = 0,
                 mask_values: list[int] | None = None, max_scan: int | None = None, max_classes: int = 16,
                 in_channels: int | None = None, strict: bool = True, stats_samples: int = 32,
                 name: str = "folder", train: bool | None = None, augment: bool = True,
                 crop_size: int | None = None, scale: float = 1.0, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None, ignore_index: int = 255, transform=None,
                 folds: int = 0, fold: int = 0, void_values: list[int] | tuple[int, ...] = ()) -> None:
        imgs_dir, masks_dir = Path(imgs_dir).expanduser(), Path(masks_dir).expanduser()
        self.void_values = _check_void(void_values, mask_values)
        self.images_src = _open_source(imgs_dir, "Images folder", self.layout)
        self.masks_src = _open_source(masks_dir, "Masks folder", self.layout)
        self.mask_suffix = mask_suffix
        self.all_pairs = self._pair_up(imgs_dir, masks_dir, strict)  # [(stem, image key, mask key)]
        chosen = select_split(len(self.all_pairs), split, val_fraction, seed, f"{name} ({imgs_dir})",
                              folds=folds, fold=fold)
        self.pairs = [self.all_pairs[i] for i in chosen]
        self.split = split
        self.dataset_name = name
        if mask_values is None:  # 取值映射：显式给出，或在（部分）掩码上发现并缓存
            mask_values = self._discover_values(masks_dir, max_scan, max_classes)
            if not self.void_values and void_hint(mask_values) and str(masks_dir) not in _HINTED:
                _HINTED.add(str(masks_dir))                   # once per folder (train and val) 每个文件夹提示一次
                warnings.warn(f"Masks in {str(masks_dir)!r}: {void_hint(mask_values)}", UserWarning, stacklevel=2)
        # 通道数：按 io.resolve_channels 的规则，由第一张图像（仅读文件头）与 in_channels 决定
        first = self.all_pairs[0][1]
        native = image_size(self.images_src.read(first), self.images_src.label(first))[2]
        in_ch = resolve_channels(native, in_channels, self.images_src.label(first))
        if mean is None or std is None:  # 均值/标准差：未给出时在均匀抽取的图像上计算并缓存
            mean_c, std_c = self._stats(imgs_dir, in_ch, stats_samples)
            mean = mean_c if mean is None else mean
            std = std_c if std is None else std
        super().__init__(
            mask_values=mask_values,
            class_names=["background", "foreground"] if len(mask_values) == 2
            else [f"class_{i}" for i in range(len(mask_values))],
            in_channels=in_ch, mean=mean, std=std, ignore_index=ignore_index, names=[s for s, _, _ in self.pairs],
            has_labels=True, train=(split == "train") if train is None else train, augment=augment,
            crop_size=crop_size, scale=scale, transform=transform, uniform_size=self._uniform_size(),
        )

    def _pair_up(self, imgs_dir: Path, masks_dir: Path, strict: bool) -> list[tuple[str, str, str]]:
        """``(stem, image key, mask key)`` for every pair, sorted; unpaired files raise (or warn). 按主干名配对"""
        mask_suffix = self.mask_suffix
        if not self.images_src.keys:
            raise DataError(
                f"No images found in {str(imgs_dir)!r} (looked for {', '.join(IMAGE_EXTENSIONS)}). Expected a layout "
                f"like:\n{self.layout}"
            )
        images = _by_stem(self.images_src, "", "images")
        masks = _by_stem(self.masks_src, mask_suffix, "masks")
        no_mask = sorted(set(images) - set(masks))
        no_image = sorted(set(masks) - set(images))
        problems = []
        if no_mask:
            example = f"{no_mask[0]}{mask_suffix}.<ext>"
            problems.append(
                f"{len(no_mask)} image(s) have no mask in {str(masks_dir)!r}: "
                f"{_list_some([self.images_src.label(images[s]) for s in no_mask])}. Expected e.g. {example!r} "
                f"(mask_suffix={mask_suffix!r}); fix mask_suffix or add the missing masks."
                f"{self._suffix_hint(set(images), no_mask[0])}")
        if no_image:
            problems.append(
                f"{len(no_image)} mask(s) have no image in {str(imgs_dir)!r}: "
                f"{_list_some([self.masks_src.label(masks[s]) for s in no_image])}. Expected an image named "
                f"{no_image[0]!r}.<ext>; add the image or remove the mask.")
        for msg in problems:
            if strict:
                raise DataError(msg)
            warnings.warn(msg + " Skipping them (strict=False).", UserWarning, stacklevel=3)
        stems = sorted(set(images) & set(masks))
        if not stems:
            raise DataError(f"No image/mask pairs between {str(imgs_dir)!r} and {str(masks_dir)!r}.")
        return [(s, images[s], masks[s]) for s in stems]

    def _suffix_hint(self, images: set[str], first: str) -> str:
        """A sentence naming the ``mask_suffix`` that pairs every image (tried: what follows the first unpaired
        image's stem in a mask's stem, e.g. ``""`` for masks named like the images); ``""`` if none does.
        能让所有图像配对的 mask_suffix（例如掩码与图像同名时为空字符串）"""
        stems = {self.masks_src.stem(key) for key in self.masks_src.keys}
        for suffix in sorted({stem[len(first):] for stem in stems if stem.startswith(first)}):
            try:
                paired = set(_by_stem(self.masks_src, suffix, "masks"))
            except DataError:                                       # two masks would share a stem 该后缀有重复
                continue
            if images <= paired:
                option = json.dumps({"mask_suffix": suffix})
                return (f" Every image pairs with a mask for mask_suffix={suffix!r}: pass --dataset-options "
                        f"'{option}' (in Python: mask_suffix={suffix!r}).")
        return ""

    def _discover_values(self, masks_dir: Path, max_scan: int | None, max_classes: int) -> list[int]:
        """Sorted values over (an even sample of) the masks, cached; stray values refused. 发现掩码取值"""
        scan = self.all_pairs
        if max_scan is not None and len(scan) > max_scan:
            scan = [scan[i] for i in np.linspace(0, len(scan) - 1, max_scan).round().astype(int)]
        key = ("folder-values", str(masks_dir.resolve()), self.mask_suffix, len(self.all_pairs), max_scan,
               tuple(self.void_values))
        values = discover_mask_values((self._read_mask(mk) for _, _, mk in scan),
                                      names=[self.masks_src.label(mk) for _, _, mk in scan], cache_key=key,
                                      void_values=self.void_values)
        if len(values) < 2:  # 只有一种取值：没有可分割的前景
            where = f"all {len(scan)} masks" if len(scan) > 1 else "the only mask"
            if len(scan) < len(self.all_pairs):
                where = f"{len(scan)} evenly spaced masks of {len(self.all_pairs)} (max_scan={max_scan})"
            raise DataError(
                f"Masks in {str(masks_dir)!r}: {where} hold only the value {values[0]}, so there is one class and "
                "nothing to segment. Check that these are the label files (an export that lost its labels writes "
                "empty masks); if the foreground is real but rare, name the values, e.g. "
                "--dataset-options '{\"mask_values\": [0, 255]}' (mask_values=[0, 255])."
            )
        if len(values) > max_classes:
            raise DataError(
                f"Masks in {str(masks_dir)!r} hold {len(values)} distinct values "
                f"({values[:8]} ...), more than max_classes={max_classes}. They look resized with "
                "interpolation or saved as JPEG (run inspect_masks() on the folder); resave them with NEAREST "
                "resizing as PNG/GIF, or pass mask_values=[...] / max_classes=... if this is intended."
            )
        return values

    def _stats(self, imgs_dir: Path, in_ch: int, stats_samples: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean/std over ``stats_samples`` evenly spaced images, cached per folder. 计算并缓存均值与标准差"""
        key = ("folder-stats", str(imgs_dir.resolve()), len(self.all_pairs), in_ch, stats_samples)
        if key not in _STATS_CACHE:
            idx = np.linspace(0, len(self.all_pairs) - 1, min(stats_samples, len(self.all_pairs)))
            imgs = (self._read_image(self.all_pairs[int(i)][1], in_ch) for i in idx.round().astype(int))
            _STATS_CACHE[key] = compute_mean_std(imgs)
        return _STATS_CACHE[key]

    # ------------------------------------------------------------------
    def _read_image(self, key: str, in_channels: int | None = None) -> np.ndarray:
        label = self.images_src.label(key)
        image = read_image(self.images_src.read(key), name=label)
        return match_channels(image, in_channels, label)

    def _read_mask(self, key: str) -> np.ndarray:
        return read_mask(self.masks_src.read(key), name=self.masks_src.label(key))

    def _uniform_size(self, limit: int = 16) -> bool:
        """Do (a sample of) the chosen images share one size? Headers only. 抽样检查图像尺寸是否一致"""
        keys = [k for _, k, _ in self.pairs]
        if len(keys) > limit:
            keys = [keys[i] for i in np.linspace(0, len(keys) - 1, limit).round().astype(int)]
        sizes = {image_size(self.images_src.read(k), self.images_src.label(k))[:2] for k in keys}
        return len(sizes) == 1

    def __len__(self) -> int:
        return len(self.pairs)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        index = self._check_index(index)
        _, img_key, mask_key = self.pairs[index]
        image = self._read_image(img_key)
        mask = self._read_mask(mask_key)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"Size mismatch: image {self.images_src.label(img_key)!r} is {image.shape[1]}x{image.shape[0]} "
                f"(WxH) but its mask {self.masks_src.label(mask_key)!r} is {mask.shape[1]}x{mask.shape[0]}. "
                "Resize the mask to the image size with NEAREST interpolation, or fix the pairing."
            )
        mask, valid = split_void(mask, self.void_values, fill=self.mask_values[0])  # valid: None or (H, W) bool
        return image, mask, valid

    def raw_mask(self, index: int) -> np.ndarray | None:
        index = self._check_index(index)
        return self._read_mask(self.pairs[index][2])

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        index = self._check_index(index)
        image, mask, valid = self.raw(index)
        label = self.images_src.label(self.pairs[index][1])
        image = match_channels(self._enhance(index, image, label), self.in_channels, label)
        target = values_to_indices(mask, self.mask_values, self.masks_src.label(self.pairs[index][2]))  # (H, W)
        if valid is not None:
            target[~valid] = self.ignore_index            # void pixels: ignored by the loss 无标签像素：损失忽略
        return image, target

    def __repr__(self) -> str:
        return (f"FolderPairs(images={str(self.images_src.path)!r}, masks={str(self.masks_src.path)!r}, "
                f"split={self.split!r}, n={len(self)}, mask_values={self.mask_values})")


def carvana_paths(root: str | Path) -> tuple[Path, Path]:
    """Find Carvana's images and masks under ``root``: folders ``train``/``train_masks``, else the zips.
    在 root 下查找 Carvana 的图像与掩码：优先文件夹，其次 zip

    Raises:
        DataError: neither layout is there (the message shows both).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"Carvana folder {str(root)!r} does not exist. Expected this layout:\n{CARVANA_LAYOUT}\nDownload the "
            "Kaggle competition data (see data/README.md) and pass the folder with --data-dir (in Python: data_dir= "
            "or root=)."
        )
    for imgs, masks in (("train", "train_masks"), ("train.zip", "train_masks.zip")):
        if (root / imgs).exists() and (root / masks).exists():
            return root / imgs, root / masks
    hint = next((h for name in ("carvana", "carvana-image-masking-challenge")
                 if (h := wrong_level_hint(root, name, "train_masks"))), "")   # 目录差了一层
    raise DataError(
        f"No Carvana images/masks in {str(root)!r} (found: {sorted(p.name for p in root.iterdir())[:8]}).{hint} "
        f"Expected this layout:\n{CARVANA_LAYOUT}"
    )


class CarvanaDataset(FolderPairs):
    """Kaggle Carvana Image Masking: :class:`FolderPairs` with Carvana's names and suffix.
    Kaggle Carvana 数据集：使用 Carvana 默认路径与后缀的 FolderPairs

    ``root`` holds ``train/`` + ``train_masks/`` or ``train.zip`` + ``train_masks.zip``; ``mask_suffix="_mask"``.
    Values are discovered on ``max_scan=64`` evenly spaced masks by default (Carvana's GIFs hold 0/1) to keep
    start-up fast on 5088 files; pass ``max_scan=None`` to scan all.
    默认在 64 个均匀抽取的掩码上发现取值以加快启动

    Args:
        root: the Carvana folder; None -> ``data_root()/carvana`` or ``data_root()/carvana-image-masking-challenge``.
        split: ``"train"`` | ``"val"`` | ``"all"``. 数据划分
        **kwargs: passed to :class:`FolderPairs`.
    """

    layout = CARVANA_LAYOUT

    def __init__(self, root: str | Path | None = None, split: str = "train", mask_suffix: str = "_mask",
                 max_scan: int | None = 64, **kwargs) -> None:
        if root is None:
            base = data_root()
            candidates = [base / "carvana", base / "carvana-image-masking-challenge"]
            root = next((c for c in candidates if c.is_dir()), candidates[0])
        imgs, masks = carvana_paths(root)
        if "imgs_dir" in kwargs or "masks_dir" in kwargs:
            raise ConfigError("carvana takes root=...; use dataset 'folder' to give imgs_dir / masks_dir.")
        super().__init__(imgs, masks, mask_suffix=mask_suffix, split=split, max_scan=max_scan, name="carvana",
                         **kwargs)
        self.root = Path(root)
        if self.mask_values == [0, 1] or self.mask_values == [0, 255]:
            self.class_names = ["background", "car"]
