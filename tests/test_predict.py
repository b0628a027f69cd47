"""Tests for unet_course.inference: sizes, sliding window, flip TTA, mask values, the decision rule, scoring, FOV.
预测模块测试：输出尺寸、滑动窗口、翻转 TTA、掩码取值、决策规则、评分与视野掩码

The `unet-course predict` command line is tested in tests/test_cli_predict.py. 命令行测试见 test_cli_predict.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import MEAN, STD, toy_sample
from PIL import Image
from torch import nn

import unet_course.precision as precision
from unet_course.data.io import read_image
from unet_course.errors import CheckpointError, ConfigError, DataError
from unet_course.inference import (
    apply_fov,
    blend_weights,
    evaluate_dataset,
    find_fov_mask,
    load_image,
    network_input,
    predict_image,
    predict_probs,
    score_prediction,
    sliding_window_inference,
    tile_starts,
)
from unet_course.inference.predict import TTA_FLIPS, flip_batch_probs
from unet_course.metrics import probs_to_labels
from unet_course.model import UNet
from unet_course.precision import as_policy


# ----------------------------------------------------------------------------------------------------------------
# Helpers 辅助函数
# ----------------------------------------------------------------------------------------------------------------
def to_input(img: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, C)`` -> normalised ``(1, C, H, W)``. 归一化为网络输入"""
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    return (x - MEAN[0]) / STD[0]


@pytest.fixture(scope="module")
def calibrated_unet() -> UNet:
    """A small random U-Net whose batch-norm statistics were measured on toy images.
    批归一化统计量在玩具图像上校准过的小型随机 U-Net

    Fresh BN layers hold mean 0 / var 1, which makes an untrained network almost constant in eval mode; running
    a few batches in train mode (cumulative average) gives realistic statistics, so its outputs vary with the
    image content the way a trained network's do, at a fraction of the cost of training.
    新建的 BN 层输出几乎恒定；用几个批量在训练模式下统计后，输出会随图像内容变化
    """
    torch.manual_seed(0)
    model = UNet(3, 2, base_channels=8, depth=3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None            # 累计平均
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(torch.cat([to_input(toy_sample(64, 64, seed=s)[0]) for s in range(8)]))
    return model.eval()


class TileRecorder(nn.Module):
    """A per-pixel (1x1 conv) model that records the shapes it was called with. 记录输入形状的逐像素模型"""

    def __init__(self, in_channels: int = 3, out_channels: int = 2) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.conv(x)


def oracle_model(in_channels: int = 1, out_channels: int = 2) -> nn.Module:
    """1x1 conv whose last logit is ``10 * x[0]``: foreground where the normalised pixel is above 0.
    逐像素"神谕"模型：归一化像素大于 0 处为前景（两通道 softmax 或单通道 sigmoid）
    """
    conv = nn.Conv2d(in_channels, out_channels, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[out_channels - 1, 0] = 10.0
    return conv


# ----------------------------------------------------------------------------------------------------------------
# Tiling geometry 切片几何
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,tile,overlap", [(100, 32, 0.25), (133, 32, 0.5), (64, 64, 0.25), (65, 64, 0.0),
                                               (20, 32, 0.25), (584, 256, 0.25)])
def test_tile_starts_cover_the_axis_with_at_least_the_overlap(size: int, tile: int, overlap: float) -> None:
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0
    if size <= tile:
        assert starts == [0]
        return
    assert starts[-1] + tile == size                                # 最后一块与边界对齐
    steps = np.diff(starts)
    assert (steps > 0).all()
    assert steps.max() <= int(tile * (1 - overlap))                 # 实际重叠不小于要求


def test_blend_weights_are_positive_and_peak_in_the_centre() -> None:
    for mode in ("gaussian", "linear", "constant"):
        w = blend_weights(32, 0.25, mode)
        assert w.shape == (32, 32) and bool((w > 0).all()) and float(w.max()) == pytest.approx(1.0)
    g = blend_weights((32, 48), 0.25, "gaussian")
    assert g.shape == (32, 48)
    assert g[16, 24] > g[0, 24] > g[0, 0]
    lin = blend_weights(32, 0.25, "linear")
    assert float(lin[16, 16]) == 1.0 and float(lin[0, 16]) < 0.2    # 边缘线性衰减
    with pytest.raises(ConfigError, match="blend"):
        blend_weights(32, 0.25, "cubic")


# ----------------------------------------------------------------------------------------------------------------
# Sliding window 滑动窗口
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("blend", ["gaussian", "linear", "constant"])
@pytest.mark.parametrize("height,width", [(100, 77), (20, 27), (135, 140)])
def test_sliding_window_is_exact_for_a_per_pixel_model(blend: str, height: int, width: int) -> None:
    """A 1x1 conv has no spatial context, so any correct tiling/blending must reproduce it (weights sum to 1).
    1x1 卷积没有空间上下文，正确的切片与加权融合必须与整图结果一致
    """
    model = TileRecorder()
    x = torch.randn(1, 3, height, width)
    out = sliding_window_inference(model, x, tile=32, overlap=0.25, tile_batch=3, blend=blend)
    with torch.no_grad():
        ref = model.conv(x)
    assert out.shape == (1, 2, height, width) and out.device.type == "cpu" and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # 网络只见过切片（从不见整图），每次最多 tile_batch 块
    assert all(s[0] <= 3 and s[2:] == (32, 32) for s in model.shapes)


def test_sliding_window_handles_an_image_four_tiles_wide(calibrated_unet: UNet) -> None:
    img, _ = toy_sample(4 * 32 + 7, 4 * 32 + 2, seed=3)            # 135 x 130，每个方向超过 4 块
    x = to_input(img)
    out = sliding_window_inference(calibrated_unet, x, tile=32, overlap=0.25, tile_batch=8)
    assert out.shape == (1, 2, 135, 130)
    assert bool(torch.isfinite(out).all())
    assert len(tile_starts(135, 32, 0.25)) >= 5 and len(tile_starts(130, 32, 0.25)) >= 5


def test_sliding_window_batch_of_images_matches_one_by_one() -> None:
    model = TileRecorder()
    x = torch.randn(2, 3, 50, 70)
    both = sliding_window_inference(model, x, tile=32, overlap=0.5, tile_batch=4)
    one = sliding_window_inference(model, x[1:], tile=32, overlap=0.5, tile_batch=4)
    torch.testing.assert_close(both[1:], one, atol=1e-6, rtol=1e-6)


def test_sliding_window_matches_whole_image_within_tolerance(calibrated_unet: UNet) -> None:
    """Tiled and whole-image probabilities agree closely, but not exactly, and blending matters.
    切片与整图的概率非常接近但并不完全相同，而且融合方式有影响

    Why not exact: this depth-3 U-Net's receptive field is about 90 px, wider than a 64 px tile, so every tile
    pixel sees mirror padding where the whole image had real neighbours. Gaussian weights give the tile centres
    (which saw the most real context) the say, so the error stays small. Measured on this model (128x128, tile
    64, overlap 0.5): mean |dp| = 0.0036 / max 0.051 for Gaussian, 0.0096 / 0.153 for a constant average, and
    0.0005 with a 96 px tile. The bounds leave about 4x headroom. Labels agree on 98.8 % of the pixels; the
    bound is 95 % because this untrained model puts many pixels near p = 0.5, where tiny changes flip a label.
    不完全相等的原因：感受野约 90 像素，大于 64 像素的切片，切片内的像素看到的是镜像填充而非真实邻域；
    高斯权重让上下文最完整的切片中心起主导作用，因此误差很小。界限在实测值上留出约 4 倍余量
    """
    img, _ = toy_sample(128, 128, seed=99)
    x = to_input(img)
    with torch.no_grad():
        ref = calibrated_unet(x).softmax(1)
    diff, tiled = {}, {}
    for blend in ("gaussian", "constant"):
        tiled[blend] = sliding_window_inference(calibrated_unet, x, tile=64, overlap=0.5, blend=blend).softmax(1)
        diff[blend] = (tiled[blend] - ref).abs()
    bigger = sliding_window_inference(calibrated_unet, x, tile=96, overlap=0.5).softmax(1)
    gauss = diff["gaussian"]
    assert float(gauss.mean()) < 0.015 and float(gauss.max()) < 0.2
    assert float(gauss.mean()) < float(diff["constant"].mean())            # 平滑融合优于简单平均
    assert float((bigger - ref).abs().mean()) < float(gauss.mean())         # 切片越大，上下文越完整
    agree = (ref[0, 1] > 0.5) == (tiled["gaussian"][0, 1] > 0.5)
    assert float(agree.float().mean()) > 0.95


def test_sliding_window_rejects_bad_settings() -> None:
    model = TileRecorder()
    x = torch.randn(1, 3, 40, 40)
    with pytest.raises(ConfigError, match="overlap"):
        sliding_window_inference(model, x, tile=32, overlap=1.0)
    with pytest.raises(ConfigError, match="tile"):
        sliding_window_inference(model, x, tile=0)
    with pytest.raises(ConfigError, match="tile_batch"):
        sliding_window_inference(model, x, tile=32, tile_batch=0)


# ----------------------------------------------------------------------------------------------------------------
# predict_image 单张预测
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, 0.5])
@pytest.mark.parametrize("tile", [None, 16])
@pytest.mark.parametrize("n_out", [1, 2, 3])
def test_predict_image_keeps_odd_input_sizes(scale: float, tile: int | None, n_out: int) -> None:
    torch.manual_seed(0)
    model = UNet(3, n_out, base_channels=4, depth=2)
    img, _ = toy_sample(37, 53, seed=1)
    values = [0, 255] if n_out <= 2 else [0, 128, 255]
    pred = predict_image(model, img, mean=MEAN, std=STD, scale=scale, tile=tile, mask_values=values,
                         mode="binary" if n_out == 1 else "multiclass")
    k = max(2, n_out)
    assert pred.probs.shape == (k, 37, 53) and pred.probs.dtype == np.float32
    assert pred.labels.shape == (37, 53) and pred.labels.dtype == np.int64
    assert pred.mask.shape == (37, 53) and pred.mask.dtype == np.uint8
    assert np.allclose(pred.probs.sum(0), 1.0, atol=1e-5)
    assert set(np.unique(pred.mask)) <= set(values)
    assert pred.model_size == ((37, 53) if scale == 1.0 else (18, 26))


def test_resize_back_false_keeps_the_network_size() -> None:
    """Without the bilinear resize a scale=0.5 prediction no longer fits the image (the seed notes' question).
    不做双线性插值时，scale=0.5 的预测与原图尺寸不一致
    """
    model = UNet(3, 2, base_channels=4, depth=2)
    img, _ = toy_sample(37, 53)
    small = predict_image(model, img, mean=MEAN, std=STD, scale=0.5, resize_back=False)
    assert small.probs.shape == (2, 18, 26) and small.mask.shape == (18, 26)
    full = predict_image(model, img, mean=MEAN, std=STD, scale=0.5)
    assert full.mask.shape == (37, 53)


def test_mask_values_map_classes_back_in_class_order() -> None:
    """ISBI stores membrane (class 1) as 0: labels must come out through mask_values, not as raw indices.
    ISBI 中膜（类别 1）存为 0：必须通过 mask_values 映射回去
    """
    img = np.zeros((8, 10, 1), dtype=np.uint8)
    img[:, 5:] = 255
    mean, std = (0.5,), (0.5,)
    for values in ([0, 255], [255, 0]):
        pred = predict_image(oracle_model(), img, mean=mean, std=std, mask_values=values)
        assert pred.labels[:, 5:].min() == 1 and pred.labels[:, :5].max() == 0
        assert (pred.mask[:, 5:] == values[1]).all() and (pred.mask[:, :5] == values[0]).all()


def test_threshold_moves_the_binary_decision() -> None:
    model = TileRecorder(3, 1)
    img, _ = toy_sample(20, 20)
    low = predict_image(model, img, mean=MEAN, std=STD, threshold=0.05, mode="binary")
    high = predict_image(model, img, mean=MEAN, std=STD, threshold=0.95, mode="binary")
    assert low.labels.sum() >= high.labels.sum()
    p = low.probs[1]
    assert (low.labels == (p >= 0.05)).all() and (high.labels == (p >= 0.95)).all()   # p >= t 为前景


def test_flip_tta_output_is_flip_invariant(calibrated_unet: UNet) -> None:
    """With all four flips averaged, predicting a flipped image gives the flipped prediction.
    四种翻转取平均后，预测翻转后的图像等于翻转原预测

    The size is a multiple of 2**depth so the network's internal mirror padding is zero; otherwise the padding
    itself would not be flip-symmetric and the check would only hold approximately.
    尺寸取 2**depth 的倍数，使网络内部无需填充；否则填充本身不对称，等式只能近似成立
    """
    img, _ = toy_sample(48, 64, seed=5)
    kw = dict(mean=MEAN, std=STD, tta=True)
    base = predict_image(calibrated_unet, img, **kw).probs
    hflip = predict_image(calibrated_unet, np.ascontiguousarray(img[:, ::-1]), **kw).probs
    vflip = predict_image(calibrated_unet, np.ascontiguousarray(img[::-1]), **kw).probs
    np.testing.assert_allclose(hflip, base[:, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(vflip, base[:, ::-1, :], atol=1e-5)
    # 不使用 TTA 时，随机网络并不具备这种对称性
    plain = predict_image(calibrated_unet, img, mean=MEAN, std=STD).probs
    plain_h = predict_image(calibrated_unet, np.ascontiguousarray(img[:, ::-1]), mean=MEAN, std=STD).probs
    assert np.abs(plain_h - plain[:, :, ::-1]).max() > 1e-4


def test_tta_with_tiling_returns_valid_probabilities() -> None:
    torch.manual_seed(0)
    model = UNet(3, 2, base_channels=4, depth=2).eval()
    x = to_input(toy_sample(70, 90, seed=2)[0])
    probs = predict_probs(model, x, tile=32, overlap=0.25, tta=True)
    assert probs.shape == (1, 2, 70, 90)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 70, 90), atol=1e-5, rtol=0)


def test_predict_image_rejects_rgb_into_a_gray_model() -> None:
    model = UNet(1, 2, base_channels=4, depth=2)
    img, _ = toy_sample(16, 16, channels=3)
    with pytest.raises(DataError, match=r"rgb.png.*3 channel\(s\).*expects 1"):  # 预测时的提示
        predict_image(model, img, mean=(0.5,), std=(0.5,), name="rgb.png")


def test_predict_image_restores_train_mode() -> None:
    model = UNet(3, 2, base_channels=4, depth=2).train()
    predict_image(model, toy_sample(16, 16)[0], mean=MEAN, std=STD)
    assert model.training


# ----------------------------------------------------------------------------------------------------------------
# Scoring 评分
# ----------------------------------------------------------------------------------------------------------------
def test_score_prediction_only_counts_valid_pixels() -> None:
    target = np.array([[1, 1, 0, 0]])
    pred = np.array([[1, 0, 1, 0]])
    everywhere = score_prediction(pred, target, n_classes=2)
    assert everywhere["dice"] == pytest.approx(0.5)                 # TP 1, FP 1, FN 1
    inside = score_prediction(pred, target, valid=np.array([[1, 0, 0, 1]], bool), n_classes=2)
    assert inside["dice"] == pytest.approx(1.0) and inside["n_pixels"] == 2
    probs = np.stack([1 - np.array([[0.9, 0.6, 0.4, 0.1]]), np.array([[0.9, 0.6, 0.4, 0.1]])])
    assert score_prediction(pred, target, n_classes=2, probs=probs)["auc"] == pytest.approx(1.0)


class ToyDataset:
    """Three labelled images with a FOV; outside it the label is deliberately wrong. 视野外标签故意错误的小数据集"""

    mask_values = [0, 255]
    ignore_index = 255

    def __init__(self) -> None:
        self.names = [f"toy_{i}" for i in range(3)]

    def __len__(self) -> int:
        return 3

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(i)
        fg = rng.random((33, 41)) > 0.6
        image = np.where(fg, 230, 20).astype(np.uint8)[..., None]     # (H, W, 1)
        valid = np.zeros((33, 41), dtype=bool)
        valid[4:29, 5:36] = True
        mask = np.where(fg, 255, 0).astype(np.uint8)
        mask[~valid] = 255 - mask[~valid]                              # 视野外的标签是错的
        return image, mask, valid


def test_evaluate_dataset_scores_inside_the_fov_at_native_size() -> None:
    meta = {"mask_values": [0, 255], "normalization": {"mean": [0.5], "std": [0.5]},
            "preprocess": {"scale": 1.0, "in_channels": 1, "mode": "multiclass", "threshold": 0.5}}
    model = oracle_model()
    for tile, tta in ((None, False), (16, True)):
        result = evaluate_dataset(model, meta, ToyDataset(), tile=tile, overlap=0.25, tta=tta)
        assert result["n_images"] == 3
        assert result["metrics"]["dice"] == pytest.approx(1.0)        # 视野内完全正确
        assert result["metrics"]["auc"] == pytest.approx(1.0)
        assert [r["name"] for r in result["per_image"]] == ["toy_0", "toy_1", "toy_2"]
        assert result["metrics"]["n_pixels"] == 3 * 25 * 31
    # a two-class softmax model follows the threshold too: one above every probability leaves no foreground
    # 两类 softmax 模型同样使用阈值：高于所有概率的阈值使前景消失
    none = evaluate_dataset(model, meta, ToyDataset(), threshold=0.999999999, indices=[0])
    assert none["metrics"]["dice"] == pytest.approx(0.0) and none["n_images"] == 1
    # a binary sigmoid model: a threshold above every probability leaves almost no foreground 二分类：阈值过高时前景消失
    binary = {**meta, "preprocess": {**meta["preprocess"], "mode": "binary"}}
    sigmoid = oracle_model(out_channels=1)
    assert evaluate_dataset(sigmoid, binary, ToyDataset(), indices=[0])["metrics"]["dice"] == pytest.approx(1.0)
    worse = evaluate_dataset(sigmoid, binary, ToyDataset(), threshold=0.999999999, indices=[0])
    assert worse["metrics"]["dice"] < 0.5 and worse["n_images"] == 1


def test_evaluate_dataset_refuses_other_mask_values() -> None:
    meta = {"mask_values": [255, 0], "normalization": {"mean": [0.5], "std": [0.5]}, "preprocess": {}}
    with pytest.raises(CheckpointError, match=r"\[255, 0\]"):
        evaluate_dataset(oracle_model(), meta, ToyDataset())


# ----------------------------------------------------------------------------------------------------------------
# Mixed precision and channels 混合精度与通道
# ----------------------------------------------------------------------------------------------------------------
def test_sliding_window_accepts_amp_strings_and_policies() -> None:
    amp_policy = precision.amp_policy
    model = TileRecorder()
    x = torch.randn(1, 3, 40, 50)
    with torch.no_grad():
        ref = model.conv(x)
    bf16 = sliding_window_inference(model, x, tile=32, amp=amp_policy("cpu", "bf16"))
    assert bf16.dtype == torch.float32                                 # 画布始终是 float32
    torch.testing.assert_close(bf16, ref, atol=0.05, rtol=0.05)        # bf16 只有约 3 位有效数字
    off = sliding_window_inference(model, x, tile=32, amp="off")
    torch.testing.assert_close(off, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="amp"):
        sliding_window_inference(model, x, tile=32, amp="fp8")


@pytest.mark.parametrize("tile", [None, 16])
def test_one_channel_input_runs_nhwc_because_the_weights_go_nhwc(tile: int | None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-channel input is contiguous in both layouts, so the weights must carry NHWC; values do not change.
    单通道输入在两种布局下都连续，因此由权重决定 NHWC；数值不变
    """
    torch.manual_seed(0)
    model = UNet(1, 2, base_channels=4, depth=2).eval()
    x = torch.randn(1, 1, 24, 20)
    reference = UNet(1, 2, base_channels=4, depth=2).eval()
    reference.load_state_dict(model.state_dict())
    seen: list[bool] = []
    model.outc.register_forward_pre_hook(
        lambda _m, inp: seen.append(inp[0].is_contiguous(memory_format=torch.channels_last)))
    bf16 = as_policy("bf16", "cpu")
    out = predict_probs(model, x, tile=tile, amp=bf16)
    assert model.inc.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert seen and all(seen)                                          # 最后一层的输入是 NHWC
    with torch.no_grad(), precision.autocast(bf16):
        ref = torch.softmax(reference(x).float(), 1)                   # NCHW 权重的同一网络
    torch.testing.assert_close(out, ref, atol=0.02, rtol=0.02)
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)  # 没有原生 bf16 的 CPU
    fp32 = UNet(1, 2, base_channels=4, depth=2).eval()
    predict_probs(fp32, x, tile=tile, amp="off")
    assert not fp32.inc.conv2.weight.is_contiguous(memory_format=torch.channels_last)   # fp32 时不改布局


def test_gray_image_into_an_rgb_model_is_repeated_like_in_training() -> None:
    torch.manual_seed(0)
    model = UNet(3, 2, base_channels=4, depth=2)
    gray, _ = toy_sample(20, 24, channels=1)
    a = predict_image(model, gray, mean=MEAN, std=STD)
    b = predict_image(model, np.repeat(gray, 3, axis=-1), mean=MEAN, std=STD)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)




def test_auto_amp_means_what_precision_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """``amp="auto"`` follows precision.amp_policy: bf16 on a CPU with native bf16, fp32 on one without.
    amp="auto" 的含义与 precision.amp_policy 相同：CPU 有原生 bf16 时用 bf16，否则用 fp32
    """
    model = TileRecorder()
    x = torch.randn(1, 3, 24, 24) * 4
    with torch.no_grad():
        ref = model.conv(x)
    for fast, exact in ((False, True), (True, False)):
        monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda fast=fast: fast)
        out = predict_probs(model, x, amp="auto")
        full = torch.softmax(ref, 1)
        assert bool(torch.equal(out, full)) is exact                    # bf16 会改变低位
        torch.testing.assert_close(out, full, atol=0.05, rtol=0.05)


def test_labels_follow_the_metrics_decision_rule() -> None:
    """predict_image's labels are metrics.probs_to_labels of its probabilities, in both modes.
    predict_image 的类别与 metrics.probs_to_labels 完全一致
    """
    img, _ = toy_sample(20, 24)
    two = predict_image(TileRecorder(3, 2), img, mean=MEAN, std=STD, threshold=0.9)
    assert two.threshold == 0.9 and two.mode == "multiclass"
    assert (two.labels == probs_to_labels(two.probs, "multiclass", 0.9).numpy()).all()
    assert (two.labels == (two.probs[1] >= 0.9)).all()                   # 两类：阈值作用于 p[1]
    multi = predict_image(TileRecorder(3, 3), img, mean=MEAN, std=STD, threshold=0.9)
    assert multi.threshold is None and multi.mode == "multiclass"
    assert (multi.labels == multi.probs.argmax(0)).all()                 # 多于两类：阈值不起作用
    binary = predict_image(TileRecorder(3, 1), img, mean=MEAN, std=STD, mode="binary", threshold=0.3)
    assert binary.threshold == 0.3 and binary.mode == "binary"
    assert (binary.labels == probs_to_labels(binary.probs, "binary", 0.3).numpy()).all()
    with pytest.raises(ConfigError, match="mode='multiclass' expects >= 2"):
        predict_image(TileRecorder(3, 1), img, mean=MEAN, std=STD)       # 单通道模型必须用 binary
    with pytest.raises(ConfigError, match="scale"):
        predict_image(TileRecorder(3, 2), img, mean=MEAN, std=STD, scale=5.0)


def test_load_image_reads_paths_through_data_io(tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (6, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.shape == (6, 7, 3) and loaded.flags.writeable         # alpha 去掉，可写副本
    np.testing.assert_array_equal(loaded, read_image(tmp_path / "a.png"))
    assert load_image(np.zeros((4, 5), bool)).shape == (4, 5, 1)
    with pytest.raises(DataError, match="torch tensor"):
        load_image(torch.zeros(3, 4, 5))
    with pytest.raises(DataError, match="uint8"):
        load_image(np.full((4, 5), 300, np.int32), name="big")


def test_fov_mask_is_found_and_blanks_outside(tmp_path: Path) -> None:
    fov = np.zeros((4, 6), np.uint8)
    fov[1:3, 1:5] = 255
    Image.fromarray(fov).save(tmp_path / "01_test_mask.gif")
    found = find_fov_mask(tmp_path, Path("images/01_test.tif"))
    assert found.name == "01_test_mask.gif"
    out = apply_fov(np.full((4, 6), 255, np.uint8), found, background=0)
    assert out.sum() == 8 * 255 and out[0, 0] == 0                       # 只有视野内保留前景
    with pytest.raises(DataError, match="02_test.png.*02_test_mask"):
        find_fov_mask(tmp_path, Path("02_test.png"))
    with pytest.raises(DataError, match="not a folder"):
        find_fov_mask(tmp_path / "missing", Path("01_test.tif"))
    with pytest.raises(DataError, match="6x4"):
        apply_fov(np.zeros((5, 5), np.uint8), found, background=0)


def test_flip_tta_on_the_cpu_runs_one_flip_per_pass_and_matches_the_batched_path():
    """On the CPU a batch of four flips is slower than four passes, so predict_probs runs them one at a time.
    CPU 上逐个翻转前向；结果与拼成批量的路径一致"""
    torch.manual_seed(0)
    model = UNet(3, 2, base_channels=4, depth=2).eval()
    batches = []
    model.register_forward_hook(lambda _m, args, _out: batches.append(int(args[0].shape[0])))
    x = torch.randn(1, 3, 24, 20)                                             # (1, C, H, W)
    probs = predict_probs(model, x, tta=True, amp="off")
    assert batches == [1, 1, 1, 1]                                            # four passes of one image 四次单图前向
    batched = flip_batch_probs(model, x, TTA_FLIPS, "multiclass", torch.device("cpu"), as_policy("off", "cpu"))
    assert torch.allclose(probs, batched, atol=1e-5)


def test_network_input_is_what_predict_image_feeds_the_network():
    """network_input is the one home of raw image -> network tensor; predict_image's probabilities follow from it.
    network_input 是原始图像到网络输入的唯一实现"""
    torch.manual_seed(0)
    model = UNet(3, 2, base_channels=4, depth=2).eval()
    img, _ = toy_sample(30, 26)
    x, size = network_input(model, img, mean=MEAN, std=STD, scale=0.5)
    assert size == (30, 26) and tuple(x.shape) == (1, 3, 15, 13) and x.dtype == torch.float32
    direct = predict_probs(model, x, amp="off")                                          # (1, 2, 15, 13)
    pred = predict_image(model, img, mean=MEAN, std=STD, scale=0.5, amp="off", resize_back=False)
    assert np.allclose(pred.probs, direct[0].numpy(), atol=1e-6)
    with pytest.raises(DataError, match="expects 1"):
        network_input(UNet(1, 2, base_channels=4, depth=2), img, mean=(0.5,), std=(0.2,))   # RGB into a gray model
