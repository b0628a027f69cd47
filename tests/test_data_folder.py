"""Image/mask pairs from folders and zips, with a small Carvana-layout fixture. 文件夹与 zip 中的图像/掩码对"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_course.config import TrainConfig
from unet_course.data import (
    CarvanaDataset,
    FolderPairs,
    build_dataset,
    build_loaders,
    read_mask,
    values_to_indices,
)
from unet_course.errors import ConfigError

H, W = 30, 40


def _car(i: int) -> tuple[np.ndarray, np.ndarray]:
    """A coloured image with a bright "car" rectangle, and its 0/1 mask. 带矩形"车辆"的彩色图像及其 0/1 掩码"""
    rng = np.random.default_rng(i)
    img = rng.integers(0, 90, (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), np.uint8)
    mask[5 + i % 4 : 22, 6 : 30 + i % 5] = 1
    img[mask == 1] = (220, 180, 60)
    return img, mask


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture()
def carvana_root(tmp_path: Path) -> Path:
    """``train/ID_0i.jpg`` + ``train_masks/ID_0i_mask.gif`` (values 0/1) and the same as two zips.
    Carvana 目录结构夹具：文件夹与 zip 两种形式
    """
    root = tmp_path / "carvana"
    (root / "train").mkdir(parents=True)
    (root / "train_masks").mkdir()
    for i in range(6):
        img, mask = _car(i)
        (root / "train" / f"ID_0{i}.jpg").write_bytes(_encode(img, "JPEG"))
        (root / "train_masks" / f"ID_0{i}_mask.gif").write_bytes(_encode(mask, "GIF"))
    zroot = tmp_path / "carvana_zip"
    zroot.mkdir()
    for folder in ("train", "train_masks"):
        with zipfile.ZipFile(zroot / f"{folder}.zip", "w") as zf:
            for p in sorted((root / folder).iterdir()):
                zf.write(p, f"{folder}/{p.name}")  # Kaggle's zips hold a top folder
    return root


def test_folder_pairs_read_carvana_layout(carvana_root):
    ds = FolderPairs(carvana_root / "train", carvana_root / "train_masks")
    assert len(ds) == 6 and ds.names == [f"ID_0{i}" for i in range(6)]
    assert ds.mask_values == [0, 1] and ds.in_channels == 3 and ds.n_classes == 2
    item = ds[2]
    assert item["image"].shape == (3, H, W) and item["mask"].shape == (H, W)
    assert torch.equal(item["mask"], torch.from_numpy(_car(2)[1]).long())
    image, mask, valid = ds.raw(2)
    assert image.dtype == np.uint8 and image.shape == (H, W, 3) and valid is None
    # mean/std were computed from the images themselves
    pixels = np.stack([ds.raw(i)[0] for i in range(6)]).reshape(-1, 3) / 255.0
    assert np.allclose(ds.mean, pixels.mean(0), atol=1e-6)


def test_zip_archives_give_the_same_samples(carvana_root):
    zroot = carvana_root.parent / "carvana_zip"
    folder = CarvanaDataset(carvana_root, split="all")
    zipped = CarvanaDataset(zroot, split="all")
    assert zipped.names == folder.names and zipped.mask_values == folder.mask_values == [0, 1]
    assert zipped.class_names == ["background", "car"]
    for i in (0, 5):
        a, b = folder.raw(i), zipped.raw(i)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert "train.zip:train/ID_00.jpg" in zipped.images_src.label(zipped.pairs[0][1])


def test_zip_dataset_is_picklable_and_works_in_workers(carvana_root):
    zipped = CarvanaDataset(carvana_root.parent / "carvana_zip", split="all")
    zipped.raw(0)  # opens the archive in this process
    clone = pickle.loads(pickle.dumps(zipped))
    assert np.array_equal(clone.raw(3)[0], zipped.raw(3)[0])
    loader = torch.utils.data.DataLoader(zipped, batch_size=3, num_workers=2)
    masks = torch.cat([b["mask"] for b in loader])
    expected = torch.stack([torch.from_numpy(_car(i)[1]).long() for i in range(6)])
    assert torch.equal(masks, expected)


def test_carvana_train_val_split(carvana_root):
    tr = build_dataset("carvana", root=carvana_root, split="train", val_fraction=0.34, seed=0)
    va = build_dataset("carvana", root=carvana_root, split="val", val_fraction=0.34, seed=0)
    assert len(tr) == 4 and len(va) == 2 and not set(tr.names) & set(va.names)
    assert tr.train and not va.train


def test_any_extension_and_equal_stems(tmp_path):
    imgs, masks = tmp_path / "images", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    exts = [("png", "PNG"), ("bmp", "BMP"), ("tif", "TIFF"), ("jpeg", "JPEG")]
    for i, (ext, fmt) in enumerate(exts):
        img, mask = _car(i)
        (imgs / f"case{i}.{ext}").write_bytes(_encode(img, fmt))
        (masks / f"case{i}.png").write_bytes(_encode(mask * 255, "PNG"))
    (imgs / ".DS_Store").write_bytes(b"junk")  # hidden files are skipped
    ds = build_dataset("folder", root=tmp_path, split="all", mask_suffix="")
    assert len(ds) == 4 and ds.mask_values == [0, 255]
    for i in range(4):
        assert np.array_equal(ds.raw(i)[1], _car(i)[1] * 255)


def _write_pairs(root: Path, name: str, mask_suffix: str, gray: bool = False) -> tuple[Path, Path]:
    """Three PNG pairs ``images/<name><i>.png`` + ``masks/<name><i><mask_suffix>.png``. 三对 PNG 图像与掩码"""
    imgs, masks = root / "images", root / "masks"
    imgs.mkdir()
    masks.mkdir()
    for i in range(3):
        img, mask = _car(i)
        img = img.mean(2).astype(np.uint8) if gray else img               # (H, W) or (H, W, 3)
        (imgs / f"{name}{i}.png").write_bytes(_encode(img, "PNG"))
        (masks / f"{name}{i}{mask_suffix}.png").write_bytes(_encode(mask, "PNG"))
    return imgs, masks


def test_gray_images_repeat_to_rgb_when_asked(tmp_path):
    imgs, masks = _write_pairs(tmp_path, "g", "_mask", gray=True)
    native = FolderPairs(imgs, masks)
    assert native.in_channels == 1 and native[0]["image"].shape == (1, H, W)
    rgb = FolderPairs(imgs, masks, in_channels=3)
    x = rgb[0]["image"]
    assert x.shape == (3, H, W) and len(rgb.mean) == 3
    assert torch.allclose(x[0] * rgb.std[0] + rgb.mean[0], x[1] * rgb.std[1] + rgb.mean[1])


def test_mask_suffix_is_honoured_and_strict_false_skips(tmp_path):
    imgs, masks = _write_pairs(tmp_path, "a", "_label")
    (imgs / "lonely.png").write_bytes(_encode(_car(5)[0], "PNG"))
    with pytest.warns(UserWarning, match="lonely"):
        ds = FolderPairs(imgs, masks, mask_suffix="_label", strict=False)
    assert ds.names == ["a0", "a1", "a2"]


def test_build_loaders_folder(carvana_root):
    cfg = TrainConfig(dataset="folder", batch_size=2, num_workers=0, crop_size=16, val_fraction=0.34)
    # the generic layout: a root with images/ + masks/
    root = carvana_root.parent / "generic"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for p in (carvana_root / "train").iterdir():
        (root / "images" / p.name).write_bytes(p.read_bytes())
    for p in (carvana_root / "train_masks").iterdir():
        (root / "masks" / p.name).write_bytes(p.read_bytes())
    train, val, info = build_loaders(cfg.replace(data_dir=str(root)))
    assert (info.n_train, info.n_val, info.mask_values, info.dataset) == (4, 2, [0, 1], "folder")
    assert next(iter(train))["image"].shape == (2, 3, 16, 16)
    assert next(iter(val))["mask"].shape == (2, H, W)
    assert read_mask(root / "masks" / "ID_00_mask.gif").max() == 1


def test_samples_per_epoch_repeats_a_small_training_set(carvana_root):
    cfg = TrainConfig(dataset="carvana", data_dir=str(carvana_root), batch_size=6, num_workers=0, crop_size=16,
                      val_fraction=0.34, samples_per_epoch=12)
    train, _, info = build_loaders(cfg)
    assert info.n_train == 4 and len(train) == 2  # 12 draws from 4 images, batches of 6 (> 4 is fine here)
    names = [n for batch in train for n in batch["name"]]
    assert len(names) == 12 and all(names.count(n) == 3 for n in set(names))
    assert train.sampler.generator is train.generator
    with pytest.raises(ConfigError, match="samples_per_epoch=4"):
        build_loaders(cfg.replace(samples_per_epoch=4))


def _phone_photo(shown: np.ndarray, orientation: int = 6, fmt: str = "JPEG") -> bytes:
    """JPEG bytes storing ``shown`` (H, W, 3) turned, with the EXIF tag that turns it back for display (phones).
    以旋转后的像素存储、并带有显示时转回的 EXIF 方向标记的 JPEG（手机照片）"""
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)  # tag 6 turns this back 90° clockwise
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.mark.parametrize(("size", "fmt"), [((40, 24), "JPEG"), ((32, 32), "JPEG"), ((40, 24), "PNG")])
def test_photos_with_an_exif_orientation_are_read_as_shown_and_pair_with_their_masks(tmp_path, size, fmt):
    from unet_course.data.io import image_size, read_image

    imgs, masks = tmp_path / "images", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    h, w = size
    shown = np.full((h, w, 3), 40, np.uint8)              # (H, W, 3) as a viewer shows the photo
    mask = np.zeros((h, w), np.uint8)
    mask[2:12, 3:9] = 255                                  # drawn on the shown photo, off every symmetry axis
    shown[mask > 0] = 230
    photo = imgs / ("p.jpg" if fmt == "JPEG" else "p.png")
    photo.write_bytes(_phone_photo(shown, fmt=fmt))
    (masks / "p.png").write_bytes(_encode(mask, "PNG"))
    assert Image.open(photo).size == (h, w)               # stored turned: (W, H) swapped
    assert read_image(photo).shape == (h, w, 3) == image_size(photo)
    ds = FolderPairs(imgs, masks, mask_suffix="")
    image, labels, _ = ds.raw(0)
    assert image.shape[:2] == labels.shape == (h, w)
    assert image[labels > 0].mean() > 200 > 60 > image[labels == 0].mean()  # the bright patch lies under the mask


def test_tiff_files_are_read_as_stored_whatever_their_orientation_tag(tmp_path):
    import tifffile

    from unet_course.data.io import image_size, read_image

    arr = np.arange(6 * 10, dtype=np.uint8).reshape(6, 10)
    tifffile.imwrite(tmp_path / "t.tif", arr, extratags=[(274, "H", 1, 6, True)])  # Orientation = 6
    assert np.array_equal(read_image(tmp_path / "t.tif")[..., 0], arr)
    assert image_size(tmp_path / "t.tif") == (6, 10, 1)


def _voc_like(root: Path, n: int = 4) -> None:
    """Masks with classes 0, 1, 2 and a 255 border of unlabelled pixels (PASCAL VOC style). VOC 风格的掩码"""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        mask = np.zeros((24, 32), np.uint8)
        mask[4:16, 4:20] = 1
        mask[8:12, 8:12] = 2
        mask[3, :] = 255                                   # the void border 无标签边界
        Image.fromarray((mask * 60).astype(np.uint8)).convert("RGB").save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")


def test_void_values_mark_unlabelled_pixels_that_training_ignores_and_scoring_skips(tmp_path):
    import warnings

    from unet_course.inference.scoring import masked_target

    _voc_like(tmp_path / "voc")
    imgs, masks = tmp_path / "voc" / "images", tmp_path / "voc" / "masks"
    with pytest.warns(UserWarning, match=r"void_values.*\[255\]"):       # before: 255 silently became class 3
        plain = FolderPairs(imgs, masks, mask_suffix="")
    assert plain.mask_values == [0, 1, 2, 255]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                      # no hint once the value is named
        ds = FolderPairs(imgs, masks, mask_suffix="", void_values=[255], ignore_index=255)
    assert ds.mask_values == [0, 1, 2] and ds.n_classes == 3
    image, mask, valid = ds.raw(0)
    assert valid is not None and not valid[3].any() and valid[4:].all()    # (H, W) the border only
    assert set(np.unique(mask).tolist()) == {0, 1, 2}
    target = masked_target(values_to_indices(mask, ds.mask_values), valid, ds.ignore_index)
    _, loaded = ds.load(0)
    assert np.array_equal(loaded, target.numpy())                          # training and scoring agree
    assert (loaded[3] == 255).all() and set(np.unique(loaded[4:]).tolist()) == {0, 1, 2}
    with pytest.raises(ConfigError, match="both mask_values"):
        FolderPairs(imgs, masks, mask_suffix="", mask_values=[0, 1, 2, 255], void_values=[255])
    with pytest.raises(ConfigError, match="list of integer"):
        FolderPairs(imgs, masks, mask_suffix="", void_values=255)
