"""Contrast enhancement (CLAHE) from the image to the checkpoint and back in prediction.
对比度增强（CLAHE）：从图像到检查点，再到预测
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_carvana_fixture

from unet_course.checkpoint import load_model
from unet_course.config import TrainConfig
from unet_course.data import build_dataset
from unet_course.data.enhance import ENHANCED_MEAN, enhance_image, enhanced_channels
from unet_course.errors import ConfigError, DataError
from unet_course.inference import predict_image, predict_with_meta, settings_from_meta
from unet_course.training import fit


def _low_contrast_rgb(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((96, 80, 3), 100, np.uint8)
    img[..., 1] += rng.integers(0, 12, (96, 80), dtype=np.uint8)   # 绿色通道只有很弱的纹理
    img[30:60, 20:50, 1] += 10
    return img


def test_none_returns_the_image_unchanged():
    img = _low_contrast_rgb()
    assert enhance_image(img, "none") is img
    assert enhanced_channels("none", 3) == 3 and enhanced_channels("green-clahe", 3) == 1


def test_green_clahe_stretches_the_green_channel():
    img = _low_contrast_rgb()
    out = enhance_image(img, "green-clahe")
    assert out.shape == (96, 80, 1) and out.dtype == np.uint8
    assert out.std() > 3 * img[..., 1].std()                       # contrast went up
    # only the green channel matters: changing red leaves the result unchanged 只使用绿色通道
    other = img.copy()
    other[..., 0] = 7
    assert np.array_equal(enhance_image(other, "green-clahe"), out)


def test_gray_clahe_accepts_gray_and_rgb():
    img = _low_contrast_rgb()
    assert enhance_image(img, "gray-clahe").shape == (96, 80, 1)
    assert enhance_image(img[..., 1], "gray-clahe").shape == (96, 80, 1)


def test_bad_enhance_inputs_name_the_image_and_the_fix():
    with pytest.raises(DataError, match=r"scan_07\.png.*Give the RGB image; a model for gray images is trained with enhance='gray-clahe'"):
        enhance_image(np.zeros((20, 20), np.uint8), "green-clahe", "scan_07.png")
    with pytest.raises(DataError, match="uint8"):
        enhance_image(np.zeros((20, 20, 3), np.float32), "gray-clahe")
    with pytest.raises(ConfigError, match="green-clahe"):
        enhance_image(np.zeros((20, 20, 3), np.uint8), "clahe")
    with pytest.raises(ConfigError, match="enhance"):
        TrainConfig(enhance="clahe")


def test_dataset_enhancement_changes_channels_and_is_cached(tmp_path: Path):
    root = write_carvana_fixture(tmp_path / "carvana")
    ds = build_dataset("carvana", root=root, split="train", crop_size=16)
    assert ds.in_channels == 3
    ds.set_enhance("green-clahe")
    assert ds.in_channels == 1 and ds.mean == ENHANCED_MEAN and ds.describe()["enhance"] == "green-clahe"
    item = ds[0]
    assert tuple(item["image"].shape) == (1, 16, 16)
    first, _ = ds.load(0)
    again, _ = ds.load(0)
    assert first is again                                           # computed once 只计算一次


def test_synthetic_data_refuse_enhancement():
    ds = build_dataset("synthetic", split="val", n_samples=2, image_size=32)
    with pytest.raises(ConfigError, match="synthetic"):
        ds.set_enhance("gray-clahe")


def _train_enhanced(tmp_path: Path) -> Path:
    """Train a tiny green-clahe model on a Carvana-layout fixture into ``tmp_path/run``; returns the data root.
    在 Carvana 结构的小数据上训练一个使用 green-clahe 的微型模型
    """
    root = write_carvana_fixture(tmp_path / "carvana")
    fit(TrainConfig(dataset="carvana", data_dir=str(root), enhance="green-clahe", crop_size=32, epochs=1,
                    batch_size=2, base_channels=4, depth=2, amp="off", progress="none", num_workers=0,
                    out_dir=str(tmp_path / "run")))
    return root


def test_enhancement_travels_through_the_checkpoint_into_prediction(tmp_path: Path):
    root = _train_enhanced(tmp_path)
    model, meta = load_model(tmp_path / "run" / "last.pt")
    assert meta["preprocess"]["enhance"] == "green-clahe"
    assert model.config["in_channels"] == 1
    settings = settings_from_meta(meta)
    assert settings["enhance"] == "green-clahe"
    image = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(root / "train" / "car_00.jpg"))
    pred = predict_with_meta(model, meta, image)
    assert pred.mask.shape == image.shape[:2]
    assert set(np.unique(pred.mask).tolist()) <= {0, 1}
    # without the enhancement the RGB image does not fit the 1-channel model, and the error says so
    # 不做增强时，RGB 图像与单通道模型不匹配，并给出说明
    plain = {k: v for k, v in settings.items() if k != "enhance"}
    with pytest.raises(DataError, match="channel"):
        predict_image(model, image, **plain)


def test_predict_cli_applies_the_enhancement_to_rgb_inputs(tmp_path: Path):
    # the checkpoint's model takes 1 channel (CLAHE), the user passes the RGB photo as it is
    # 模型输入为单通道（CLAHE），用户直接传入 RGB 原图
    from PIL import Image

    from unet_course import cli

    root = _train_enhanced(tmp_path)
    image_path = root / "train" / "car_01.jpg"
    code = cli.main(["predict", "-m", str(tmp_path / "run" / "last.pt"), "-i", str(image_path),
                     "-o", str(tmp_path / "pred"), "--tile", "32"])
    assert code == 0
    mask = np.asarray(Image.open(tmp_path / "pred" / "car_01.png"))
    assert mask.shape == np.asarray(Image.open(image_path)).shape[:2]
    assert set(np.unique(mask).tolist()) <= {0, 1}
