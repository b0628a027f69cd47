"""The procedural default data set, and the loaders built on it. 程序化默认数据集及其数据加载器"""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
import torch

from unet_course.config import TrainConfig
from unet_course.data import (
    DATASETS,
    DataInfo,
    SyntheticSegmentation,
    build_dataset,
    build_loaders,
    resolve_num_workers,
    split_indices,
    values_to_indices,
)
from unet_course.errors import ConfigError


def _dice(pred: np.ndarray, gt: np.ndarray) -> float:
    return 2.0 * float((pred & gt).sum()) / max(1.0, float(pred.sum() + gt.sum()))


def _otsu(gray: np.ndarray) -> int:
    """Otsu's threshold on a uint8 image: maximise the between-class variance. 大津阈值"""
    p = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    p /= p.sum()
    w0 = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    between = (mu[-1] * w0 - mu) ** 2 / np.maximum(w0 * (1.0 - w0), 1e-12)
    return int(np.argmax(between))


def _best_threshold_dice(gray: np.ndarray, gt: np.ndarray) -> float:
    """Foreground Dice of the best of all 256 global thresholds (``pred = gray >= t``), chosen with the labels.
    用标签挑选的最优全局阈值的 Dice（最强的阈值基线）
    """
    g, f = gray.ravel(), gt.ravel()
    tp = np.cumsum(np.bincount(g[f], minlength=256)[::-1])[::-1]
    pp = np.cumsum(np.bincount(g, minlength=256)[::-1])[::-1]
    return float((2.0 * tp / np.maximum(pp + f.sum(), 1)).max())


def test_items_follow_the_package_convention():
    ds = SyntheticSegmentation(8, 64, seed=0, split="val")
    item = ds[3]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (64, 64) and item["mask"].dtype == torch.int64
    assert item["name"] == "synthetic_00003"
    assert set(item["mask"].unique().tolist()) <= {0, 1}
    assert ds.mask_values == [0, 255] and ds.n_classes == 2 and ds.has_labels and ds.in_channels == 3
    assert len(ds.mean) == len(ds.std) == 3
    # normalised with the documented constants: roughly zero mean, unit spread over a few images
    stacked = torch.stack([ds[i]["image"] for i in range(8)])
    assert abs(stacked.mean().item()) < 0.3 and 0.6 < stacked.std().item() < 1.5


def test_deterministic_per_seed_split_and_index():
    a = SyntheticSegmentation(4, 48, seed=7)
    b = SyntheticSegmentation(4, 48, seed=7)
    for i in range(4):
        ia, la = a.load(i)
        ib, lb = b.load(i)
        assert np.array_equal(ia, ib) and np.array_equal(la, lb)
    assert not np.array_equal(a.load(0)[0], a.load(1)[0])
    assert not np.array_equal(a.load(0)[0], SyntheticSegmentation(4, 48, seed=8).load(0)[0])
    assert not np.array_equal(a.load(0)[0], SyntheticSegmentation(4, 48, seed=7, split="val").load(0)[0])


def test_raw_matches_load_through_mask_values():
    ds = SyntheticSegmentation(3, 48, task="multiclass", seed=2)
    image, raw_mask, valid = ds.raw(1)
    _, labels = ds.load(1)
    assert valid is None and image.dtype == np.uint8 and image.shape == (48, 48, 3)
    assert np.array_equal(values_to_indices(raw_mask, ds.mask_values), labels)


def test_foreground_fraction_and_multiclass_classes():
    """Measured over 64 samples of 128x128: foreground about 10 % on average (each class present).
    实测：前景平均约占 10 %
    """
    binary = SyntheticSegmentation(64, 128, seed=0, split="val")
    fractions = [binary.load(i)[1].mean() for i in range(64)]
    assert 0.07 < float(np.mean(fractions)) < 0.20
    assert min(fractions) > 0.02
    multi = SyntheticSegmentation(16, 128, task="multiclass", seed=0, split="val")
    assert multi.mask_values == [0, 128, 255] and multi.class_names == ["background", "vessel", "blob"]
    counts = np.zeros(3)
    for i in range(16):
        counts += np.bincount(multi.load(i)[1].ravel(), minlength=3)
    assert (counts > 0).all()
    # the binary and multiclass tasks draw the same structures for the same (seed, split, index)
    b_img, b_lab = SyntheticSegmentation(1, 64, seed=5).load(0)
    m_img, m_lab = SyntheticSegmentation(1, 64, seed=5, task="multiclass").load(0)
    assert np.array_equal(b_img, m_img) and np.array_equal(b_lab, m_lab > 0)


def test_global_threshold_fails():
    """A global threshold cannot solve the task; a U-Net can (>= 0.9 val Dice, see the engine tests).
    全局阈值无法解决该任务

    Measured on 64 validation samples (seed 0, 128x128, gray = channel mean): Otsu Dice 0.38; the best of all 256
    thresholds picked *per image with the labels* (an oracle, the strongest threshold baseline) 0.51 on average,
    0.71 at most; the best single threshold for the whole set 0.49. A small U-Net reaches >= 0.9.
    实测：Otsu 的 Dice 为 0.38，逐图用标签挑选的最优阈值平均 0.51
    """
    ds = SyntheticSegmentation(64, 128, seed=0, split="val")
    otsu, oracle = [], []
    for i in range(len(ds)):
        image, labels = ds.load(i)
        gray = image.mean(axis=2).round().astype(np.uint8)
        gt = labels > 0
        otsu.append(_dice(gray > _otsu(gray), gt))
        oracle.append(_best_threshold_dice(gray, gt))
    assert float(np.mean(otsu)) < 0.5
    assert float(np.mean(oracle)) < 0.65
    assert max(oracle) < 0.8


def test_generation_is_fast():
    """About 1.5-2.5 ms per 128x128 sample on an idle core; the bound leaves room for a busy CI machine.
    单核空闲时每个样本约 1.5-2.5 毫秒
    """
    ds = SyntheticSegmentation(64, 128, seed=0)
    ds.load(0)
    start = time.process_time()
    for i in range(64):
        ds.load(i)
    per_sample = (time.process_time() - start) / 64
    assert per_sample < 0.015, f"{per_sample * 1000:.1f} ms per sample"


def test_gray_variant_and_bad_arguments():
    ds = SyntheticSegmentation(2, 32, in_channels=1)
    assert ds[0]["image"].shape == (1, 32, 32) and len(ds.mean) == 1
    with pytest.raises(ConfigError, match="binary, multiclass"):
        SyntheticSegmentation(2, 32, task="three")
    with pytest.raises(ConfigError, match="1 or 3"):
        SyntheticSegmentation(2, 32, in_channels=4)
    with pytest.raises(IndexError):
        ds[5]


def test_pickle_and_worker_processes():
    ds = SyntheticSegmentation(8, 32, seed=3, split="val")
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[2]["image"], ds[2]["image"])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1)
    batch = next(iter(loader))
    assert torch.equal(batch["image"][2], ds[2]["image"])


def test_build_dataset_registry():
    assert {"synthetic", "synthetic-multiclass", "drive", "isbi2012", "carvana", "folder"} <= set(DATASETS)
    ds = build_dataset("synthetic-multiclass", split="val", n_samples=3, image_size=32)
    assert ds.n_classes == 3 and len(ds) == 3
    with pytest.raises(ConfigError, match="n_sample"):
        build_dataset("synthetic", n_sample=3)


def test_build_loaders_synthetic_honours_config():
    cfg = TrainConfig(dataset="synthetic", image_size=32, train_samples=20, val_samples=6, batch_size=8,
                      crop_size=24, num_workers=0, seed=5)
    train, val, info = build_loaders(cfg)
    assert isinstance(info, DataInfo)
    assert (info.in_channels, info.n_classes, info.n_train, info.n_val) == (3, 2, 20, 6)
    assert info.mask_values == [0, 255] and info.dataset == "synthetic" and info.ignore_index == 255
    assert train.drop_last and len(train) == 2 and not val.drop_last and len(val) == 1
    batch = next(iter(train))
    assert batch["image"].shape == (8, 3, 24, 24) and batch["mask"].shape == (8, 24, 24)
    assert next(iter(val))["image"].shape == (6, 3, 32, 32)  # no crop in validation
    # the shuffling generator is exposed and reseedable: same seed -> same order
    train.generator.manual_seed(11)
    first = [n for b in train for n in b["name"]]
    train.generator.manual_seed(11)
    again = [n for b in train for n in b["name"]]
    assert first == again and sorted(first) != first
    assert info.to_dict()["mask_values"] == [0, 255]


def test_build_loaders_drop_last_only_when_bigger_than_a_batch():
    cfg = TrainConfig(dataset="synthetic", image_size=32, train_samples=4, val_samples=2, batch_size=4,
                      num_workers=0)
    train, _, _ = build_loaders(cfg)
    assert not train.drop_last and len(train) == 1


def test_split_indices_and_num_workers():
    tr, va = split_indices(10, 0.2, seed=0)
    assert len(va) == 2 and sorted(tr + va) == list(range(10))
    assert split_indices(10, 0.2, seed=0) == (tr, va)
    assert split_indices(10, 0.2, seed=1) != (tr, va)
    assert split_indices(5, 0.0, seed=0) == ([0, 1, 2, 3, 4], [])
    assert resolve_num_workers(3) == 3
    assert 0 <= resolve_num_workers("auto") <= 4
    with pytest.raises(ConfigError):
        resolve_num_workers(-1)
    with pytest.raises(ConfigError):
        resolve_num_workers("many")
