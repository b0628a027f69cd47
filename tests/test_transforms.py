"""Joint transforms: labels never change value, image and mask move together. 联合变换的正确性"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_course.data import (
    SegmentationTransform,
    SyntheticSegmentation,
    compute_mean_std,
    preprocess_image,
    scaled_size,
)
from unet_course.errors import ConfigError, DataError


def _mask_0_1_2_255(h: int = 37, w: int = 45) -> np.ndarray:
    rng = np.random.default_rng(0)
    m = rng.choice(np.array([0, 1, 2, 255]), size=(h, w)).astype(np.int64)
    m[5:20, 5:30] = 2  # a solid region too, so nearest resizing has interiors to keep
    return m


def test_augmentation_never_creates_new_label_values():
    mask = _mask_0_1_2_255()
    image = np.random.default_rng(1).integers(0, 256, size=(*mask.shape, 3), dtype=np.uint8)
    allowed = {0, 1, 2, 255}
    for scale in (1.0, 0.7, 1.6):
        t = SegmentationTransform(train=True, crop_size=48, scale=scale, mean=(0.5,) * 3, std=(0.2,) * 3)
        for _ in range(40):
            x, y = t(image, mask)
            assert y.dtype == torch.int64 and x.dtype == torch.float32
            assert x.shape == (3, 48, 48) and y.shape == (48, 48)
            assert set(y.unique().tolist()) <= allowed


def test_image_and_mask_move_together():
    # the image encodes its own label (value = 60 * label), so any mismatch in geometry shows up
    rng = np.random.default_rng(2)
    mask = rng.integers(0, 4, size=(24, 24)).astype(np.int64)
    image = (mask * 60).astype(np.uint8)[:, :, None]
    t = SegmentationTransform(train=True, crop_size=16, mean=(0.0,), std=(1.0,), jitter=0.0)
    t._colour = None  # geometry only for this check
    for _ in range(30):
        x, y = t(image, mask)
        assert torch.equal(torch.round(x[0] * 255 / 60).long(), y)


def test_crop_larger_than_image_pads_mask_with_ignore_index():
    mask = np.ones((10, 12), np.int64)
    image = np.full((10, 12, 1), 200, np.uint8)
    t = SegmentationTransform(train=True, crop_size=32, mean=(0.5,), std=(0.5,), augment=False, ignore_index=255)
    x, y = t(image, mask)
    assert y.shape == (32, 32)
    assert (y == 255).sum() == 32 * 32 - 10 * 12 and (y == 1).sum() == 10 * 12
    # padded image pixels are 0 before normalisation -> (0 - 0.5) / 0.5 = -1
    assert torch.allclose(x[0][y == 255], torch.tensor(-1.0))


def test_scale_uses_nearest_for_masks_and_exact_size():
    mask = _mask_0_1_2_255(50, 40)
    image = np.zeros((50, 40, 3), np.uint8)
    t = SegmentationTransform(train=False, scale=0.5, mean=(0.5,) * 3, std=(0.25,) * 3)
    x, y = t(image, mask)
    assert tuple(x.shape[-2:]) == tuple(y.shape) == scaled_size(50, 40, 0.5) == (25, 20)
    assert set(y.unique().tolist()) <= {0, 1, 2, 255}


def test_eval_transform_is_deterministic_and_only_normalises():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = rng.integers(0, 2, (20, 30)).astype(np.int64)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    t = SegmentationTransform(train=False, crop_size=8, mean=mean, std=std)  # crop is train-only
    x1, y1 = t(image, mask)
    x2, _ = t(image, mask)
    assert torch.equal(x1, x2) and torch.equal(y1, torch.from_numpy(mask))
    expected = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None, None])
    expected = expected / torch.tensor(std)[:, None, None]
    assert torch.allclose(x1, expected, atol=1e-6)


def test_rotation_keeps_shape_of_non_square_images():
    image = np.zeros((20, 30, 1), np.uint8)
    mask = np.zeros((20, 30), np.int64)
    t = SegmentationTransform(train=True, mean=(0.5,), std=(0.5,))
    for _ in range(20):
        x, y = t(image, mask)
        assert x.shape == (1, 20, 30) and y.shape == (20, 30)


def test_intensity_jitter_changes_image_not_mask():
    rng = np.random.default_rng(4)
    image = rng.integers(40, 200, (16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16), np.int64)
    t = SegmentationTransform(train=True, mean=(0.5,) * 3, std=(0.5,) * 3, jitter=0.4)
    t._geometry = None
    outs = [t(image, mask) for _ in range(10)]
    assert any(not torch.equal(outs[0][0], o[0]) for o in outs[1:])
    assert all((o[1] == 0).all() for o in outs)


def test_transform_rejects_bad_arguments():
    with pytest.raises(ConfigError):
        SegmentationTransform(scale=0.0)
    with pytest.raises(ConfigError):
        SegmentationTransform(mean=(0.5, 0.5), std=(0.5,))
    with pytest.raises(DataError, match="channel"):
        SegmentationTransform(mean=(0.5,), std=(0.5,))(np.zeros((4, 4, 3), np.uint8), None)


def test_compute_mean_std_on_arrays_and_dataset():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 255, np.uint8)
    mean, std = compute_mean_std([a, b])
    assert np.allclose(mean, 0.5) and np.allclose(std, 0.5)
    ds = SyntheticSegmentation(8, 32, seed=0)
    m2, s2 = compute_mean_std(ds)
    pixels = np.stack([ds.raw(i)[0] for i in range(8)]).reshape(-1, 3) / 255.0
    assert np.allclose(m2, pixels.mean(0)) and np.allclose(s2, pixels.std(0))


def test_preprocess_image_matches_eval_pipeline():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (30, 22, 3), dtype=np.uint8)
    mean, std = (0.3, 0.3, 0.3), (0.2, 0.2, 0.2)
    x = preprocess_image(image, mean, std, scale=0.5)
    assert x.shape == (1, 3, 15, 11) and x.dtype == torch.float32
    ref, _ = SegmentationTransform(train=False, scale=0.5, mean=mean, std=std)(image, None)
    assert torch.equal(x[0], ref)
    gray = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    assert preprocess_image(gray, mean, std, in_channels=3).shape == (1, 3, 8, 8)
    with pytest.raises(DataError, match="uint8"):
        preprocess_image(image.astype(np.float32), mean, std)


def test_random_rotation_moves_image_and_mask_together_with_no_empty_corner():
    """Any-angle rotation: the crop is cut from a larger window, so no pixel of it is padding; the image and the
    mask rotate together (the image encodes the label), and the mask keeps its values. 任意角度旋转：图块无空角，
    图像与掩码同步旋转，掩码取值不变"""
    rng = np.random.default_rng(0)
    label = (rng.random((120, 130)) > 0.5).astype(np.int64)
    label[40:80, 30:100] = 1                                        # 大块区域：内部像素旋转后仍与图像一致
    image = (label * 200 + 20).astype(np.uint8)[:, :, None]         # 图像就是标签的编码
    t = SegmentationTransform(train=True, crop_size=48, mean=(0.0,), std=(1.0,), rotate=180, jitter=0)
    assert t.rotate == 180.0
    torch.manual_seed(0)
    for _ in range(20):
        x, y = t(image, label)
        assert tuple(x.shape) == (1, 48, 48) and tuple(y.shape) == (48, 48)
        assert set(y.unique().tolist()) <= {0, 1}                   # 没有填充像素（255），没有新取值
        agree = ((x[0] > 110 / 255) == (y == 1)).float().mean()     # 双线性与最近邻只在边缘处不同
        assert agree > 0.85, float(agree)
    assert not SegmentationTransform(train=False, rotate=90).rotate          # 评估时不旋转
    assert not SegmentationTransform(train=True, augment=False, rotate=90).rotate
    with pytest.raises(ConfigError, match="rotate"):
        SegmentationTransform(train=True, rotate=200)


def test_elastic_deformation_bends_straight_lines_and_moves_image_and_mask_together():
    """Elastic deformation: straight stripes come out bent, the image and the mask bend together (the image encodes
    the label), the mask keeps its values and the crop is cut with a margin, so it is (nearly) never padding.
    弹性形变：直线被弯曲，图像与掩码同步，掩码取值不变，预留边距使图块几乎不含填充"""
    label = np.zeros((120, 130), np.int64)
    label[:, ::6] = label[:, 1::6] = 1                              # 2 像素宽的竖条纹
    image = (label * 200 + 20).astype(np.uint8)[:, :, None]         # 图像就是标签的编码

    def straight(x: torch.Tensor) -> bool:                          # 每行相同或每列相同：线是直的
        return bool((x == x[:1]).all() or (x == x[:, :1]).all())

    plain = SegmentationTransform(train=True, crop_size=48, mean=(0.0,), std=(1.0,), jitter=0)
    bent = SegmentationTransform(train=True, crop_size=48, mean=(0.0,), std=(1.0,), jitter=0, elastic=4)
    assert bent.elastic == 4.0 and "elastic=4.0" in repr(bent) and "elastic" not in repr(plain)
    torch.manual_seed(0)
    for _ in range(20):
        assert straight(plain(image, label)[1])
        x, y = bent(image, label)
        assert tuple(x.shape) == (1, 48, 48) and tuple(y.shape) == (48, 48)
        assert not straight(y) and not straight(x[0])
        assert set(y.unique().tolist()) <= {0, 1, 255}              # 没有新取值
        assert (y == 255).float().mean() < 0.01                     # 边距内：几乎没有填充
        agree = ((x[0] > 110 / 255) == (y == 1))[y != 255].float().mean()   # 双线性与最近邻只在边缘处不同
        assert agree > 0.85, float(agree)
    assert not SegmentationTransform(train=False, elastic=4).elastic         # 评估时不形变
    assert not SegmentationTransform(train=True, augment=False, elastic=4).elastic
    with pytest.raises(ConfigError, match="elastic"):
        SegmentationTransform(train=True, elastic=-1)


@pytest.mark.parametrize("name, value", [("rotate", 30.0), ("elastic", 3.0)])
def test_a_warp_reaches_only_the_training_split_and_is_checked(name, value):
    from unet_course.config import TrainConfig
    from unet_course.data import build_loaders

    with pytest.raises(ConfigError, match=name):
        TrainConfig(**{name: -5})
    cfg = TrainConfig(**{name: value}, train_samples=4, val_samples=2, batch_size=2, num_workers=0)
    train, val, _ = build_loaders(cfg)
    assert getattr(train.dataset.transform, name) == value
    assert getattr(val.dataset.transform, name) == 0.0
    assert next(iter(train))["image"].shape == (2, 3, 64, 64)       # 合成数据：整图训练，尺寸不变
    custom = SyntheticSegmentation(4, 32, transform=lambda im, t: (im, t))
    with pytest.raises(ConfigError, match="own transform"):
        custom.set_warp(**{name: 10})
