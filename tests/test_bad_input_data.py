"""Bad data input: each case raises DataError/ConfigError whose message names the file/value and the fix.
错误的数据输入：每种情况都抛出写明文件/取值与修复方法的 DataError / ConfigError
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unet_course.config import TrainConfig
from unet_course.data import FolderPairs, SegmentationLoader, build_dataset, build_loaders, read_image
from unet_course.data import folder as folder_module
from unet_course.errors import ConfigError, DataError
from unet_course.training import fit


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _pairs(root: Path, n: int = 3, size=(16, 20), rgb: bool = True) -> tuple[Path, Path]:
    imgs, masks = root / "images", root / "masks"
    imgs.mkdir(parents=True)
    masks.mkdir(parents=True)
    for i in range(n):
        shape = (*size, 3) if rgb else size
        img = np.random.default_rng(i).integers(0, 255, shape, dtype=np.uint8)
        mask = np.zeros(size, np.uint8)
        mask[2:8, 3:9] = 255
        (imgs / f"s{i}.png").write_bytes(_png(img))
        (masks / f"s{i}_mask.png").write_bytes(_png(mask))
    return imgs, masks


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """SHA-256 and mtime of every file under ``root``: proves that no input file was changed. 输入文件的指纹"""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_missing_root_shows_expected_layout(tmp_path):
    with pytest.raises(DataError) as err:
        build_dataset("drive", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "nowhere" in msg and "training/" in msg and "1st_manual/21_manual1.gif" in msg and "mask/" in msg
    with pytest.raises(DataError) as err:
        build_dataset("carvana", root=tmp_path / "nocars")
    assert "train_masks/" in str(err.value) and "train.zip" in str(err.value)
    with pytest.raises(DataError) as err:
        build_dataset("isbi2012", root=tmp_path)
    assert "train-volume.tif" in str(err.value) and "train-labels.tif" in str(err.value)


@pytest.mark.parametrize("values,fix", [((0, 1), "0/1 export (1 = cell interior): write labels * 255"),
                                        ((0, 65535), "16-bit 0/65535 export: write it as 8-bit (labels // 257)"),
                                        ((0, 128, 255), "fit the folder data set")])
def test_isbi_labels_other_than_0_and_255_are_refused_naming_the_file_and_slices(tmp_path, values, fix):
    """A 0/1 label stack stopped at the first slice with a message about a mask 'slice_01' and advice (pass
    mask_values=[...]) that ISBI-2012 does not take. 以前 0/1 标签栈的报错只提到 slice_01，建议也不适用"""
    rng = np.random.default_rng(0)
    labels = np.full((30, 16, 16), 255, np.uint16 if max(values) > 255 else np.uint8)
    labels[4:6] = rng.choice(values, size=(2, 16, 16))                  # slices 4 and 5 only
    labels[4:6, 0, 0] = values[1]                                       # each holds the odd value
    tifffile.imwrite(tmp_path / "train-volume.tif", rng.integers(0, 255, (30, 16, 16), dtype=np.uint8))
    tifffile.imwrite(tmp_path / "train-labels.tif", labels)
    with pytest.raises(DataError) as err:
        build_dataset("isbi2012", root=tmp_path)
    msg = str(err.value)
    assert f"{str(tmp_path / 'train-labels.tif')!r} holds value(s) {values[1]}" in msg
    assert "in slice(s) 4, 5." in msg and fix in msg


def test_a_data_folder_one_level_off_names_the_right_one(tmp_path):
    """``--data-dir DATA_ROOT`` or ``--data-dir DRIVE/training`` showed only the expected layout.
    数据目录差一层时，错误信息直接给出正确的目录"""
    (tmp_path / "DRIVE" / "training" / "images").mkdir(parents=True)
    (tmp_path / "isbi2012").mkdir()
    (tmp_path / "isbi2012" / "train-volume.tif").write_bytes(b"")
    with pytest.raises(DataError, match="is the data root that holds DRIVE/: pass --data-dir '.*DRIVE'"):
        build_dataset("drive", root=tmp_path)
    with pytest.raises(DataError, match="is a folder inside the data set: pass its parent, --data-dir '.*DRIVE'"):
        build_dataset("drive", root=tmp_path / "DRIVE" / "training")
    with pytest.raises(DataError, match="holds isbi2012/: pass --data-dir '.*isbi2012', or --data-root"):
        build_dataset("isbi2012", root=tmp_path)
    for folder in ("train", "train_masks"):
        (tmp_path / "carvana-image-masking-challenge" / folder).mkdir(parents=True)
    with pytest.raises(DataError, match="holds carvana-image-masking-challenge/: pass --data-dir"):
        build_dataset("carvana", root=tmp_path)
    with pytest.raises(DataError, match="inside the data set: pass its parent, --data-dir '.*challenge'"):
        build_dataset("carvana", root=tmp_path / "carvana-image-masking-challenge" / "train")
    imgs, _ = _pairs(tmp_path / "pairs")
    with pytest.raises(DataError, match="'.*images' is a folder inside the data set: pass its parent, --data-dir '.*pairs'"):
        build_dataset("folder", root=imgs)


@pytest.mark.parametrize("suffix", ["", "_seg"])
def test_unpaired_images_name_the_mask_suffix_that_pairs_them(tmp_path, suffix):
    """Masks named like their images (or ``x_seg.png``) got only "fix mask_suffix"; the error now names the value.
    掩码与图像同名（或用其他后缀）时，错误信息直接给出能配对的 mask_suffix"""
    imgs, masks = _pairs(tmp_path)
    for mask in sorted(masks.iterdir()):                                # s0_mask.png -> s0{suffix}.png
        mask.rename(masks / mask.name.replace("_mask", suffix))
    with pytest.raises(DataError) as err:
        build_dataset("folder", root=tmp_path)
    option = json.dumps({"mask_suffix": suffix})
    assert f"Every image pairs with a mask for mask_suffix={suffix!r}: pass --dataset-options '{option}'" in str(
        err.value)
    assert len(build_dataset("folder", root=tmp_path, split="all", mask_suffix=suffix)) == 3   # and it does


def test_folder_with_no_images(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError) as err:
        build_dataset("folder", root=tmp_path)
    msg = str(err.value)
    assert "No images found" in msg and str(tmp_path / "images") in msg and ".png" in msg


@pytest.mark.parametrize("missing, named, says", [
    ("masks/s1_mask.png", "s1.png", ("no mask", "s1_mask.<ext>", "mask_suffix")),   # an image without its mask
    ("images/s2.png", "s2_mask.png", ("no image", "remove the mask")),              # a mask without its image
])
def test_unpaired_file_is_named_with_the_fix(tmp_path, missing, named, says):
    imgs, masks = _pairs(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(DataError) as err:
        FolderPairs(imgs, masks)
    msg = str(err.value)
    assert named in msg and all(part in msg for part in says), msg


def test_image_and_mask_sizes_differ(tmp_path):
    imgs, masks = _pairs(tmp_path, size=(16, 20))
    (masks / "s0_mask.png").write_bytes(_png(np.zeros((8, 10), np.uint8)))
    ds = FolderPairs(imgs, masks, mask_values=[0, 255])
    with pytest.raises(DataError) as err:
        ds[0]
    msg = str(err.value)
    assert "s0.png" in msg and "s0_mask.png" in msg and "20x16" in msg and "10x8" in msg and "NEAREST" in msg


def test_corrupt_image_file(tmp_path):
    imgs, masks = _pairs(tmp_path)
    (imgs / "x.jpg").write_bytes(b"\x00\x01garbage, not a JPEG at all" * 10)
    (masks / "x_mask.png").write_bytes(_png(np.zeros((16, 20), np.uint8)))
    with pytest.raises(DataError) as err:
        # raised while building (the header check reads it) or at the latest when the item is loaded
        ds = FolderPairs(imgs, masks, mask_values=[0, 255], mean=(0.5,) * 3, std=(0.2,) * 3)
        ds[ds.names.index("x")]
    msg = str(err.value)
    assert "x.jpg" in msg and "Cannot decode" in msg and "re-download" in msg


def test_truncated_tiff_is_named_as_corrupt_without_decoder_noise(tmp_path, capfd):
    """A TIFF cut short after its header read as an empty array and failed later as "shape (0,)", after two
    tifffile log lines. 截断的 TIFF 以前被读成空数组，报错含糊且伴有 tifffile 日志
    """
    from unet_course.data import read_stack

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8),
                     photometric="minisblack")
    cut = buf.getvalue()
    (tmp_path / "cut.tif").write_bytes(cut[:4096] + cut[-200:])      # 头与页目录在，像素缺失
    (tmp_path / "head.tif").write_bytes(cut[:4096])                   # 页目录也缺失
    for name in ("cut.tif", "head.tif"):
        with pytest.raises(DataError, match=rf"{name}.*(corrupt|truncated)"):
            read_image(tmp_path / name)
        with pytest.raises(DataError, match=rf"{name}.*corrupt or truncated; re-download"):
            read_stack(tmp_path / name)
    out, err = capfd.readouterr()
    assert "tifffile" not in out + err and "EXIF" not in out + err


def test_mask_value_outside_the_discovered_mapping(tmp_path):
    imgs, masks = _pairs(tmp_path, n=4)
    bad = np.zeros((16, 20), np.uint8)
    bad[0, :5] = 128
    (masks / "s2_mask.png").write_bytes(_png(bad))
    # values discovered on 2 of the 4 masks (s0 and s3): s2's value 128 is met only when s2 is loaded
    ds = FolderPairs(imgs, masks, max_scan=2)
    assert ds.mask_values == [0, 255]
    with pytest.raises(DataError) as err:
        ds[2]
    msg = str(err.value)
    assert "s2_mask.png" in msg and "128" in msg and "[0, 255]" in msg and "mask_values=[...]" in msg


def test_rgb_data_with_in_channels_1_raises(tmp_path, drive_root):
    imgs, masks = _pairs(tmp_path, rgb=True)
    with pytest.raises(DataError) as err:
        FolderPairs(imgs, masks, in_channels=1)
    assert "RGB" in str(err.value) and "in_channels=3" in str(err.value)
    with pytest.raises(DataError) as err:
        build_dataset("drive", root=drive_root, in_channels=1)
    assert "21_training" in str(err.value) and "in_channels=3" in str(err.value)
    with pytest.raises(DataError, match="in_channels=4"):
        build_dataset("folder", root=tmp_path, in_channels=4)


def test_empty_split_from_too_large_val_fraction(tmp_path):
    imgs, masks = _pairs(tmp_path, n=3)
    with pytest.raises(ConfigError) as err:
        FolderPairs(imgs, masks, split="train", val_fraction=0.9)
    msg = str(err.value)
    assert "val_fraction=0.9" in msg and "3 item(s)" in msg and "smaller val_fraction" in msg


def test_unknown_dataset_name_lists_known_names():
    with pytest.raises(ConfigError) as err:
        build_dataset("imagenet")
    msg = str(err.value)
    assert "imagenet" in msg
    for name in ("synthetic", "drive", "isbi2012", "carvana", "folder"):
        assert name in msg
    with pytest.raises(ConfigError, match="known data sets"):
        build_loaders(TrainConfig(dataset="cityscapes"))


def test_batch_size_larger_than_training_set():
    cfg = TrainConfig(dataset="synthetic", train_samples=5, val_samples=2, image_size=32, batch_size=8,
                      num_workers=0)
    with pytest.raises(ConfigError) as err:
        build_loaders(cfg)
    msg = str(err.value)
    assert "batch_size=8" in msg and "5 items" in msg


# --- issue #12 item 8: a huge (highly compressed) zip member is refused before it is read ---------------------
def test_zip_member_over_the_size_cap_is_refused_before_reading(tmp_path, monkeypatch):
    imgs, masks = _pairs(tmp_path / "data", n=2)
    archive = tmp_path / "train.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(imgs.iterdir()):
            zf.writestr(f"train/{p.name}", p.read_bytes())
        zf.writestr("train/bomb.png", bytes(2 * 2**20))  # 2 MiB of zeros, a few KB compressed
    (masks / "bomb_mask.png").write_bytes(_png(np.zeros((16, 20), np.uint8)))
    assert archive.stat().st_size < 64 * 1024
    monkeypatch.setattr(folder_module, "MAX_ZIP_MEMBER_BYTES", 2**20)  # a 1 MiB cap keeps the test fast
    before = _snapshot(tmp_path)
    with pytest.raises(DataError) as err:
        FolderPairs(archive, masks, mask_values=[0, 255], mean=(0.5,) * 3, std=(0.2,) * 3)
    msg = str(err.value)
    assert "train.zip" in msg and "train/bomb.png" in msg and str(2 * 2**20) in msg and str(2**20) in msg
    assert "cap" in msg and "MAX_ZIP_MEMBER_BYTES" in msg
    # members under the cap are read as before
    small = tmp_path / "small.zip"
    with zipfile.ZipFile(small, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(imgs.iterdir()):
            zf.writestr(f"train/{p.name}", p.read_bytes())
    (masks / "bomb_mask.png").unlink()
    before.pop("data/masks/bomb_mask.png")
    assert FolderPairs(small, masks, mask_values=[0, 255])[1]["image"].shape == (3, 16, 20)
    after = _snapshot(tmp_path)
    after.pop("small.zip")
    assert after == before


# --- issue #12 item 9: one bit-depth rule for every 16-bit file --------------------------------------------------
def test_16_bit_images_with_different_maxima_read_the_same_raw_value_alike(tmp_path):
    imgs, masks = tmp_path / "images", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    low = np.full((16, 20), 200, np.uint16)                 # maximum 200 (<= 255)
    high = low.copy()
    high[0, 0] = 60000                                      # maximum 60000
    for name, arr in (("low", low), ("high", high)):
        (imgs / f"{name}.png").write_bytes(_png(arr))       # PIL writes uint16 as a 16-bit PNG
        (masks / f"{name}_mask.png").write_bytes(_png(np.zeros((16, 20), np.uint8)))
    before = _snapshot(tmp_path)
    a, b = read_image(imgs / "low.png"), read_image(imgs / "high.png")
    assert a.dtype == np.uint8 and a[5, 5, 0] == b[5, 5, 0] == round(200 / 257)  # value / 257, every file
    assert b[0, 0, 0] == round(60000 / 257)
    ds = FolderPairs(imgs, masks, mask_values=[0], ignore_index=255)
    raw_low, raw_high = ds.raw(ds.names.index("low"))[0], ds.raw(ds.names.index("high"))[0]
    assert raw_low[5, 5, 0] == raw_high[5, 5, 0]
    assert _snapshot(tmp_path) == before


# --- issue #12 item 10: an error in a DataLoader worker reads as in the main process -------------------------------
def test_worker_error_message_equals_the_main_process_message(tmp_path):
    imgs, masks = _pairs(tmp_path, n=2)
    good = (imgs / "s1.png").read_bytes()
    (imgs / "s1.png").write_bytes(good[: len(good) // 2])  # truncated: the header reads, the pixels do not
    before = _snapshot(tmp_path)
    ds = FolderPairs(imgs, masks, mask_values=[0, 255], mean=(0.5,) * 3, std=(0.2,) * 3)
    messages = []
    for workers in (0, 1):
        loader = SegmentationLoader(ds, batch_size=1, num_workers=workers)
        with pytest.raises(DataError) as err:
            list(loader)
        assert type(err.value) is DataError and err.value.__cause__ is None
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "s1.png" in messages[1] and "Cannot decode" in messages[1]
    assert "Traceback" not in messages[1] and "worker process" not in messages[1]
    assert _snapshot(tmp_path) == before


def test_build_loaders_returns_loaders_that_unwrap_worker_errors(tmp_path):
    _pairs(tmp_path, n=4)
    train, val, _ = build_loaders(TrainConfig(dataset="folder", data_dir=str(tmp_path), batch_size=1,
                                              num_workers=0, val_fraction=0.25))
    assert isinstance(train, SegmentationLoader) and isinstance(val, SegmentationLoader)


# --- issue #12 item 12: a stray value in one mask is refused, not turned into a class ----------------------------
def test_stray_mask_value_in_one_file_is_refused_naming_file_value_and_count(tmp_path):
    imgs, masks = _pairs(tmp_path, n=4, size=(64, 64))
    stray = np.zeros((64, 64), np.uint8)
    stray[2:8, 3:9] = 255
    stray[40:43, 40:43] = 7                                 # 9 pixels of value 7 among 0/255
    (masks / "s2_mask.png").write_bytes(_png(stray))
    before = _snapshot(tmp_path)
    with pytest.raises(DataError) as err:
        FolderPairs(imgs, masks)
    msg = str(err.value)
    assert "s2_mask.png" in msg and "value 7" in msg and "9 pixel(s)" in msg
    assert "Clean the file" in msg and "mask_values=[0, 7, 255]" in msg
    # the documented fix: an explicit list makes 7 a class on purpose
    assert FolderPairs(imgs, masks, mask_values=[0, 7, 255]).n_classes == 3
    assert _snapshot(tmp_path) == before


def _stack_folder(root: Path, image_pages: int, mask_pages: int) -> Path:
    """Four pairs; images and masks saved as TIFF stacks of the given page counts. 图像与掩码保存为多页 TIFF"""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        tifffile.imwrite(root / "images" / f"{i}.tif", (rng.random((image_pages, 40, 40)) * 255).astype(np.uint8))
        mask = np.zeros((mask_pages, 40, 40), np.uint8)
        mask[:, 8:24, 8:24] = 255
        tifffile.imwrite(root / "masks" / f"{i}_mask.tif", mask)
    return root


def test_a_multi_page_tiff_is_not_read_as_its_first_page(tmp_path: Path):
    """A folder of TIFF stacks trained on the first page of each file, in silence (4 samples instead of 20), and
    ``inspect`` of ISBI's train-labels.tif scanned one slice of 30. 以前多页 TIFF 只悄悄读取第一页
    """
    from unet_course.data.mask_report import inspect_masks

    root = _stack_folder(tmp_path / "masks_stacked", image_pages=1, mask_pages=5)
    with pytest.raises(DataError, match=r"masks/0_mask\.tif' is a multi-page TIFF \(5 pages\).*one page per file"):
        build_dataset("folder", root=str(root), split="train")
    root = _stack_folder(tmp_path / "images_stacked", image_pages=6, mask_pages=1)
    with pytest.raises(DataError, match=r"images/\d\.tif' is a multi-page TIFF \(6 pages\)"):
        build_dataset("folder", root=str(root), split="train")
    with pytest.raises(DataError, match="multi-page TIFF"):
        read_image(root / "images" / "0.tif")
    report = inspect_masks(tmp_path / "masks_stacked" / "masks", warn=False)    # inspect reads every page 每一页
    assert report.n_files == 20 and sum(report.counts) == 20 * 40 * 40
    single = inspect_masks(tmp_path / "masks_stacked" / "masks" / "0_mask.tif", warn=False)
    assert single.n_files == 5


def test_inspect_names_a_colour_stack(tmp_path: Path):
    """A stack of RGB pages is refused with its name, as a colour mask file is. 彩色多页掩码报错并写明文件"""
    from unet_course.data.mask_report import inspect_masks

    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((4, 16, 16, 3), np.uint8), photometric="rgb")
    with pytest.raises(DataError, match=r"rgb\.tif' has pages of shape \(16, 16, 3\)"):
        inspect_masks(tmp_path / "rgb.tif", warn=False)


def test_masks_holding_one_value_are_refused_and_inspect_says_so(tmp_path: Path):
    """Empty masks (an export that lost its labels) made one class, and training stopped in the loss with a message
    about logits and channels. 全为同一取值的掩码：以前在损失函数中才报出与通道数有关的错误
    """
    from unet_course.data.mask_report import inspect_masks

    imgs, masks = _pairs(tmp_path / "data", n=4)
    for m in masks.iterdir():
        m.write_bytes(_png(np.zeros((16, 20), np.uint8)))
    before = _snapshot(tmp_path)
    with pytest.raises(DataError, match=r"all 4 masks hold only the value 0.*nothing to segment.*mask_values"):
        FolderPairs(imgs, masks)
    with pytest.raises(ConfigError, match=r"1 class \(mask_values \[0\]\).*at least 2"):
        fit(TrainConfig(dataset="folder", data_dir=str(tmp_path / "data"), epochs=1, batch_size=1, num_workers=0,
                        dataset_options={"mask_values": [0]}, out_dir=str(tmp_path / "run"), progress="none"))
    assert FolderPairs(imgs, masks, mask_values=[0, 255]).n_classes == 2   # the fix the message names
    report = inspect_masks(masks, warn=False)
    assert any("only the value 0" in w for w in report.warnings)
    with pytest.raises(DataError, match=r"subfolders 'images/', 'masks/' hold image files.*data/masks'"):
        inspect_masks(tmp_path / "data", warn=False)
    assert _snapshot(tmp_path) == before


def test_inspect_of_the_images_folder_names_the_masks_beside_it(tmp_path, monkeypatch):
    """``inspect data/images`` (the images given where masks belong) said only that a mask is a colour image and
    advised converting it; the error now names the masks folder beside it, also for ``inspect .`` inside it.
    误把图像目录交给 inspect：错误信息指出同级的掩码目录"""
    from unet_course.data.mask_report import inspect_masks

    imgs, masks = _pairs(tmp_path / "data")
    with pytest.raises(DataError, match=r"is a colour image.*'.*data/images' may be the images folder: .*its "
                                        r"sibling '.*data/masks' looks like them"):
        inspect_masks(imgs, warn=False)
    monkeypatch.chdir(imgs)
    with pytest.raises(DataError, match=r"'\.' may be the images folder: .*sibling '\.\./masks'"):
        inspect_masks(".", warn=False)
    (masks / "s0_mask.png").write_bytes(_png(np.full((16, 20, 3), (9, 8, 7), np.uint8)))   # a real colour mask
    with pytest.raises(DataError) as err:
        inspect_masks(masks, warn=False)
    assert "is a colour image" in str(err.value) and "may be the images folder" not in str(err.value)
