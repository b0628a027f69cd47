"""Tests for the segmentation losses, with values worked out by hand. 分割损失的测试（数值由手工推算）"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unet_course.errors import ConfigError, DataError
from unet_course.losses import SegmentationLoss, dice_coefficient, dice_loss


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------- hand-checked values 手算数值

def test_binary_dice_2x2_by_hand():
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]]]])         # (1, 1, 2, 2)
    target = torch.tensor([[[1, 0], [1, 0]]])
    p = [sig(2.0), sig(-1.0), sig(0.0), sig(3.0)]
    t = [1, 0, 1, 0]
    inter = sum(a * b for a, b in zip(p, t))
    expected = 1 - 2 * inter / (sum(p) + sum(t))
    got = dice_loss(logits, target, mode="binary", smooth=0.0)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # smooth = 1：分子分母各加 1
    expected_s = 1 - (2 * inter + 1) / (sum(p) + sum(t) + 1)
    assert dice_loss(logits, target, mode="binary", smooth=1.0).item() == pytest.approx(expected_s, abs=1e-6)


def test_binary_dice_with_background_by_hand():
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]]]])
    target = torch.tensor([[[1, 0], [1, 0]]])
    p = [sig(2.0), sig(-1.0), sig(0.0), sig(3.0)]
    t = [1, 0, 1, 0]
    fg = 2 * sum(a * b for a, b in zip(p, t)) / (sum(p) + sum(t))
    q, u = [1 - a for a in p], [1 - b for b in t]
    bg = 2 * sum(a * b for a, b in zip(q, u)) / (sum(q) + sum(u))
    got = dice_loss(logits, target, mode="binary", include_background=True, smooth=0.0)
    assert got.item() == pytest.approx(1 - (fg + bg) / 2, abs=1e-6)


def test_multiclass_ce_and_dice_2x2_by_hand():
    # 3 类，4 个像素；第 4 个像素被忽略
    logits = torch.tensor([[[1.0, 0.0], [0.0, 2.0]],
                           [[0.0, 1.0], [0.0, 0.0]],
                           [[0.0, 0.0], [1.0, 0.0]]]).unsqueeze(0)  # (1, 3, 2, 2)
    target = torch.tensor([[[0, 1], [2, 255]]])
    e = math.e
    # 前三个像素的 softmax 都是 (e, 1, 1)/(e+2) 的某个排列，且正确类得到 e
    p_right = e / (e + 2)
    ce = -math.log(p_right)
    loss_fn = SegmentationLoss("multiclass", ce_weight=1.0, dice_weight=0.0)
    assert loss_fn(logits, target).item() == pytest.approx(ce, abs=1e-6)
    # Dice（不含背景）：类 1 和类 2 各有一个真值像素，其概率为 p_right；其余两个有效像素上的概率为 1/(e+2)
    p_wrong = 1 / (e + 2)
    dice_c = 2 * p_right / (p_right + 2 * p_wrong + 1)
    got = dice_loss(logits, target, mode="multiclass", smooth=0.0)
    assert got.item() == pytest.approx(1 - dice_c, abs=1e-6)
    both = SegmentationLoss("multiclass", ce_weight=0.5, dice_weight=2.0, smooth=0.0)
    assert both(logits, target).item() == pytest.approx(0.5 * ce + 2.0 * (1 - dice_c), abs=1e-6)


def test_binary_bce_masks_ignored_pixels_by_hand():
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]]]])
    target = torch.tensor([[[1, 0], [255, 0]]])
    terms = [-math.log(sig(2.0)), -math.log(1 - sig(-1.0)), -math.log(1 - sig(3.0))]
    loss_fn = SegmentationLoss("binary", dice_weight=0.0)
    assert loss_fn(logits, target).item() == pytest.approx(sum(terms) / 3, abs=1e-6)
    # 类别权重 [背景 1, 前景 3]：加权平均 = Σ w·l / Σ w
    weighted = SegmentationLoss("binary", dice_weight=0.0, class_weights=[1.0, 3.0])
    expected = (3 * terms[0] + terms[1] + terms[2]) / (3 + 1 + 1)
    assert weighted(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_class_weights_match_pytorch_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 5)
    target = torch.randint(0, 3, (2, 5, 5))
    target[0, 0, :3] = 255
    w = torch.tensor([0.2, 1.0, 3.0])
    loss_fn = SegmentationLoss("multiclass", dice_weight=0.0, class_weights=w.tolist())
    expected = F.cross_entropy(logits, target, weight=w, ignore_index=255)
    torch.testing.assert_close(loss_fn(logits, target), expected)


def test_dice_coefficient_values():
    probs = torch.tensor([[[[0.9, 0.1], [0.8, 0.3]]]])
    onehot = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    assert dice_coefficient(probs, onehot, smooth=0.0).item() == pytest.approx(2 * 1.7 / (2.1 + 2), abs=1e-6)
    valid = torch.tensor([[[True, False], [True, True]]])
    assert dice_coefficient(probs, onehot, valid, smooth=0.0).item() == pytest.approx(2 * 1.7 / (2.0 + 2), abs=1e-6)


# ---------------------------------------------------------------- rules 规则

def test_empty_mask_rule():
    zeros = torch.zeros(1, 1, 2, 2)
    # 既无真值也无预测：Dice = 1（smooth = 0 时强制）
    assert dice_coefficient(zeros, zeros, smooth=0.0).item() == 1.0
    assert dice_coefficient(zeros, zeros, smooth=1.0).item() == 1.0
    # 有预测但无真值：Dice = 0（smooth = 0）
    assert dice_coefficient(torch.ones(1, 1, 2, 2), zeros, smooth=0.0).item() == 0.0
    # 全部像素被忽略：损失为 0 且可反向传播
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    target = torch.full((1, 2, 2), 255)
    loss = SegmentationLoss("multiclass")(logits, target)
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_ignored_pixels_change_neither_loss_nor_gradient(mode):
    torch.manual_seed(0)
    k = 1 if mode == "binary" else 4
    n_labels = 2 if mode == "binary" else 4
    base = torch.randn(2, k, 6, 6)
    target = torch.randint(0, n_labels, (2, 6, 6))
    ignore = torch.rand(2, 6, 6) < 0.3
    target[ignore] = 255
    loss_fn = SegmentationLoss(mode, class_weights=None)

    def run(logits_values):
        logits = logits_values.clone().requires_grad_(True)
        loss = loss_fn(logits, target)
        loss.backward()
        return loss.detach(), logits.grad

    loss_a, grad_a = run(base)
    changed = base.clone()
    changed[ignore.unsqueeze(1).expand_as(changed)] = torch.randn(int(ignore.sum()) * k) * 10  # 只改忽略像素
    loss_b, grad_b = run(changed)
    torch.testing.assert_close(loss_a, loss_b)
    torch.testing.assert_close(grad_a, grad_b)
    assert (grad_a[ignore.unsqueeze(1).expand_as(grad_a)] == 0).all()   # 忽略像素没有梯度


def test_loss_is_float32_inside_bf16_autocast():
    model = torch.nn.Conv2d(3, 2, 1)
    x = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 2, (2, 8, 8))
    loss_fn = SegmentationLoss("multiclass")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        assert logits.dtype == torch.bfloat16
        loss = loss_fn(logits, target)
        d = dice_loss(logits, target, "multiclass")
    assert loss.dtype == torch.float32 and d.dtype == torch.float32
    # 与手动转为 fp32 后计算的结果一致
    torch.testing.assert_close(loss, loss_fn(logits.float(), target))
    loss.backward()
    assert model.weight.grad is not None


# ---------------------------------------------------------------- checks 输入检查

def test_shape_and_dtype_checks():
    loss_fn = SegmentationLoss("multiclass")
    logits = torch.randn(2, 3, 4, 4)
    with pytest.raises(DataError, match="torch.long"):
        loss_fn(logits, torch.zeros(2, 4, 4))                    # float 目标
    with pytest.raises(DataError, match=r"outside 0..2"):
        loss_fn(logits, torch.full((2, 4, 4), 3))                # 超出类别数
    with pytest.raises(DataError, match=r"\(B, H, W\)"):
        loss_fn(logits, torch.zeros(2, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ConfigError, match="n_classes=1"):
        SegmentationLoss("binary")(logits, torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ConfigError, match="mode='binary'"):
        loss_fn(torch.randn(2, 1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(DataError, match="outside 0..1"):
        SegmentationLoss("binary")(torch.randn(2, 1, 4, 4), torch.full((2, 4, 4), 2))
    with pytest.raises(ConfigError, match="one weight per class"):
        SegmentationLoss("multiclass", class_weights=[1.0, 2.0])(logits, torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ConfigError):
        SegmentationLoss("softmax")
    with pytest.raises(ConfigError):
        SegmentationLoss(ce_weight=0.0, dice_weight=0.0)
    with pytest.raises(ConfigError):
        SegmentationLoss("binary", class_weights=[1.0, 2.0, 3.0])
    # 二者都是 ValueError 的子类，调用方可统一捕获
    assert issubclass(DataError, ValueError) and issubclass(ConfigError, ValueError)


def test_components_and_training_signal():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    target = torch.randint(0, 2, (2, 8, 8))
    loss_fn = SegmentationLoss("multiclass")
    parts = loss_fn.components(logits, target)
    torch.testing.assert_close(parts["loss"], parts["ce"] + parts["dice"])
    # 沿负梯度走一步，损失下降
    parts["loss"].backward()
    with torch.no_grad():
        better = logits - 1.0 * logits.grad
    assert loss_fn(better, target) < parts["loss"]
