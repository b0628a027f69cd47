"""DRIVE and ISBI-2012 readers on the real files (fixtures ``drive_root`` / ``isbi_root``). 真实数据集读取测试"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_course.config import TrainConfig
from unet_course.data import DRIVEDataset, ISBI2012Dataset, build_dataset, build_loaders, inspect_masks
from unet_course.data.drive import DRIVE_SIZE
from unet_course.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def drive_all(drive_root):
    return DRIVEDataset(drive_root, split="all")


def test_drive_item_shapes_dtypes_and_values(drive_all):
    assert len(drive_all) == 20
    item = drive_all[0]
    assert item["image"].shape == (3, 584, 565) and item["image"].dtype == torch.float32
    assert item["mask"].shape == DRIVE_SIZE == (584, 565) and item["mask"].dtype == torch.int64
    assert item["name"] == "21_training"
    assert set(item["mask"].unique().tolist()) <= {0, 1, 255}
    assert drive_all.mask_values == [0, 255] and drive_all.class_names == ["background", "vessel"]
    assert drive_all.in_channels == 3 and drive_all.has_labels and drive_all.uniform_size


def test_drive_ignore_index_exactly_outside_fov(drive_all):
    for i in (0, 7, 19):
        image, manual, fov = drive_all.raw(i)
        assert image.dtype == np.uint8 and image.shape == (584, 565, 3)
        assert fov.dtype == bool and manual.shape == fov.shape
        target = drive_all[i]["mask"].numpy()
        assert np.array_equal(target == 255, ~fov)
        vessel = (target == 1).sum() / fov.sum()
        # DRIVE vessels cover roughly 12-14 % of the FOV
        assert 0.08 < vessel < 0.18


def test_drive_test_split_is_prediction_only(drive_root):
    test = build_dataset("drive", root=drive_root, split="test")
    assert len(test) == 20 and not test.has_labels
    item = test[0]
    assert "mask" not in item and item["image"].shape == (3, 584, 565)
    image, mask, fov = test.raw(0)
    assert mask is None and fov is not None and fov.shape == (584, 565)
    assert test.names[0] == "01_test"


def test_drive_train_val_split_is_seeded_and_disjoint(drive_root):
    tr = DRIVEDataset(drive_root, split="train", val_fraction=0.2, seed=0)
    va = DRIVEDataset(drive_root, split="val", val_fraction=0.2, seed=0)
    assert len(tr) == 16 and len(va) == 4
    assert not set(tr.names) & set(va.names)
    assert DRIVEDataset(drive_root, split="val", val_fraction=0.2, seed=0).names == va.names
    assert DRIVEDataset(drive_root, split="val", val_fraction=0.2, seed=1).names != va.names


def test_drive_train_images_keeps_the_first_n_of_the_training_split_and_the_same_validation(drive_root):
    full = DRIVEDataset(drive_root, split="train", folds=5, fold=3)
    fewer = DRIVEDataset(drive_root, split="train", folds=5, fold=3, train_images=8)
    assert len(full) == 16 and fewer.names == full.names[:8]
    val = DRIVEDataset(drive_root, split="val", folds=5, fold=3)
    assert DRIVEDataset(drive_root, split="val", folds=5, fold=3, train_images=8).names == val.names
    assert not set(fewer.names) & set(val.names)
    for bad in (0, 17, 2.5, True):
        with pytest.raises(ConfigError, match=r"train_images=.*from 1 to 16"):
            DRIVEDataset(drive_root, split="train", folds=5, fold=3, train_images=bad)
    # The same option through TrainConfig and the loaders (the CLI's --dataset-options). 经由配置与数据加载器
    cfg = TrainConfig(dataset="drive", data_dir=str(drive_root), folds=5, fold=3, crop_size=64, batch_size=2,
                      dataset_options={"train_images": 4})
    train_loader, val_loader, _ = build_loaders(cfg)
    assert train_loader.dataset.names == full.names[:4] and val_loader.dataset.names == val.names


def test_drive_training_crop_keeps_labels(drive_root):
    tr = DRIVEDataset(drive_root, split="train", crop_size=96, scale=0.5)
    item = tr[0]
    assert item["image"].shape == (3, 96, 96) and set(item["mask"].unique().tolist()) <= {0, 1, 255}


def test_drive_build_loaders(drive_root):
    cfg = TrainConfig(dataset="drive", data_dir=str(drive_root), crop_size=64, batch_size=4, num_workers=0,
                      scale=0.25)
    train, val, info = build_loaders(cfg)
    assert (info.n_train, info.n_val, info.in_channels, info.n_classes) == (16, 4, 3, 2)
    batch = next(iter(val))
    assert batch["image"].shape == (4, 3, 146, 141) and batch["mask"].shape == (4, 146, 141)
    assert next(iter(train))["image"].shape == (4, 3, 64, 64)


def test_drive_batch_larger_than_train_set(drive_root):
    cfg = TrainConfig(dataset="drive", data_dir=str(drive_root), batch_size=17, num_workers=0)
    with pytest.raises(ConfigError, match="17.*16|16.*17"):
        build_loaders(cfg)


def test_drive_missing_fov_mask_names_the_file_and_the_cli_option(drive_root, tmp_path):
    """A copy of DRIVE (links to the shared files) without one FOV mask. 缺少一个视野掩码的 DRIVE 副本（链接）"""
    copy = tmp_path / "DRIVE"
    for folder in ("images", "1st_manual", "mask"):
        (copy / "training" / folder).mkdir(parents=True)
        for path in sorted((drive_root / "training" / folder).iterdir())[:3]:
            if path.name != "21_training_mask.gif":
                (copy / "training" / folder / path.name).symlink_to(path)
    with pytest.raises(DataError) as info:
        DRIVEDataset(copy, split="all")
    assert str(info.value) == (
        f"DRIVE image '21_training.tif' has no field-of-view mask: expected "
        f"{str(copy / 'training' / 'mask' / '21_training_mask.gif')!r}. Restore it, or score every pixel with "
        "--dataset-options '{\"use_fov\": false}' (use_fov=False in Python).")
    assert len(DRIVEDataset(copy, split="all", use_fov=False)) == 3          # the option the message names 消息中的选项


def test_isbi_volume_and_mapping(isbi_root):
    ds = ISBI2012Dataset(isbi_root, split="all")
    assert len(ds) == 30 and ds.mask_values == [255, 0] and ds.class_names == ["cell", "membrane"]
    item = ds[0]
    assert item["image"].shape == (1, 512, 512) and item["mask"].shape == (512, 512)
    image, raw, valid = ds.raw(0)
    assert image.shape == (512, 512, 1) and valid is None
    # membrane is stored as 0 and becomes class 1
    assert np.array_equal(item["mask"].numpy() == 1, raw == 0)
    fraction = np.mean([(ds.raw_mask(i) == 0).mean() for i in range(30)])
    assert 0.18 < fraction < 0.27  # measured: 0.220


def test_isbi_splits(isbi_root):
    tr = build_dataset("isbi2012", root=isbi_root, split="train")
    va = build_dataset("isbi2012", root=isbi_root, split="val")
    assert len(tr) == 25 and len(va) == 5 and va.names[0] == "slice_25"
    ds = {s: ISBI2012Dataset(isbi_root, split=s, n_val=3, n_holdout=3) for s in ("train", "val", "holdout")}
    assert [len(d) for d in ds.values()] == [24, 3, 3]
    assert ds["holdout"].names == ["slice_27", "slice_28", "slice_29"]
    assert len(ISBI2012Dataset(isbi_root, split="val", val_fraction=0.2)) == 6
    test = ISBI2012Dataset(isbi_root, split="test")
    assert len(test) == 30 and not test.has_labels and "mask" not in test[0]
    assert ISBI2012Dataset(isbi_root, split="val", in_channels=3)[0]["image"].shape == (3, 512, 512)


def test_inspect_real_masks_warns_about_0_255(isbi_root, drive_root):
    with pytest.warns(UserWarning, match="255"):
        report = inspect_masks(ISBI2012Dataset(isbi_root, split="all"))
    assert report.mask_values == [255, 0] and report.values == [0, 255]
    rows = {line.split()[0]: line.split()[1] for line in str(report).splitlines()[2:4]}
    assert rows == {"0": "1", "255": "0"}  # value 0 (membrane) is class 1
    drive_report = inspect_masks(drive_root / "training" / "1st_manual", warn=False)
    assert drive_report.n_files == 20 and drive_report.values == [0, 255]
    # the unlabelled test splits: a report with no rows before, now the reason 无标签的测试集：以前输出空表
    for dataset in (DRIVEDataset(drive_root, split="test"), ISBI2012Dataset(isbi_root, split="test")):
        with pytest.raises(DataError, match="'test' split of .* has no masks to inspect.*'train' split"):
            inspect_masks(dataset, warn=False)


def test_in_memory_data_sets_cache_what_load_returns_read_only(drive_root):
    """DRIVE keeps each load() result: the second call returns the same read-only arrays, a crop of the cached
    target never writes into it, and set_enhance starts a new cache. DRIVE 缓存 load 的结果（只读）"""
    ds = DRIVEDataset(drive_root, split="train", crop_size=32)
    assert DRIVEDataset.cache_loaded and ISBI2012Dataset.cache_loaded
    image, target = ds.load(0)
    again = ds.load(0)
    assert again[0] is image and again[1] is target
    assert not image.flags.writeable and not target.flags.writeable
    before = target.copy()
    for _ in range(5):
        ds[0]["mask"].fill_(7)                                          # 改动取出的样本不影响缓存
    assert np.array_equal(ds.load(0)[1], before)
    ds.set_enhance("green-clahe")
    enhanced, target_after = ds.load(0)
    assert enhanced.shape[2] == 1 and enhanced is not image
    assert np.array_equal(target_after, before)
