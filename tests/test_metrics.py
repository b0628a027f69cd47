"""Tests for the confusion-matrix metrics and ROC AUC, against independent computations.
混淆矩阵指标与 ROC AUC 的测试（与独立实现对照）
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from unet_course.errors import ConfigError, DataError
from unet_course.metrics import ConfusionMatrix, logits_to_labels, logits_to_probs, probs_to_labels, roc_auc


def set_metrics(pred: np.ndarray, target: np.ndarray, k: int, ignore: int = 255) -> dict[str, list[float]]:
    """Per-class metrics from pixel sets, written independently of ConfusionMatrix. 用像素集合独立计算逐类指标"""
    keep = target != ignore
    pred, target = pred[keep], target[keep]
    out: dict[str, list[float]] = {"dice": [], "iou": [], "precision": [], "recall": []}
    for c in range(k):
        P = set(np.flatnonzero(pred == c))
        T = set(np.flatnonzero(target == c))
        if not P and not T:
            for key in out:
                out[key].append(1.0)
            continue
        out["dice"].append(2 * len(P & T) / (len(P) + len(T)))
        out["iou"].append(len(P & T) / len(P | T))
        out["precision"].append(len(P & T) / len(P) if P else 0.0)
        out["recall"].append(len(P & T) / len(T) if T else 0.0)
    return out


@pytest.mark.parametrize("k", [2, 4])
def test_confusion_matrix_against_set_operations(k):
    rng = np.random.default_rng(k)
    pred = rng.integers(0, k, size=(3, 7, 9))
    target = rng.integers(0, k, size=(3, 7, 9))
    target[rng.random(target.shape) < 0.2] = 255
    cm = ConfusionMatrix(k)
    for b in range(3):                                           # 分批累加
        cm.update(torch.from_numpy(pred[b:b + 1]), torch.from_numpy(target[b:b + 1]))
    m = cm.compute()
    ref = set_metrics(pred, target, k)
    np.testing.assert_allclose(m["dice_per_class"], ref["dice"])
    np.testing.assert_allclose(m["iou"], ref["iou"])
    np.testing.assert_allclose(m["precision"], ref["precision"])
    np.testing.assert_allclose(m["recall"], ref["recall"])
    np.testing.assert_allclose(m["f1"], ref["dice"])             # 像素计数上 F1 与 Dice 相同
    assert m["mean_dice"] == pytest.approx(np.mean(ref["dice"][1:]))
    assert m["mean_iou"] == pytest.approx(np.mean(ref["iou"][1:]))
    assert m["dice"] == pytest.approx(ref["dice"][1] if k == 2 else np.mean(ref["dice"][1:]))
    valid = target != 255
    acc = float((pred[valid] == target[valid]).mean())
    assert m["pixel_accuracy"] == pytest.approx(acc)
    assert m["pixel_error"] == pytest.approx(1 - acc)
    assert m["n_pixels"] == int(valid.sum())
    # 矩阵本身：行是真值，列是预测
    expected = np.zeros((k, k), dtype=np.int64)
    np.add.at(expected, (target[valid], pred[valid]), 1)
    assert cm.matrix.dtype == torch.int64
    assert m["confusion_matrix"] == expected.tolist()


def test_valid_mask_and_reset():
    pred = torch.tensor([[[1, 1, 0, 0]]])
    target = torch.tensor([[[1, 0, 0, 1]]])
    cm = ConfusionMatrix(2)
    cm.update(pred, target, valid=torch.tensor([[[True, True, True, False]]]))
    assert cm.matrix.tolist() == [[1, 1], [0, 1]]
    assert cm.compute()["dice"] == pytest.approx(2 / 3)
    cm.reset()
    assert cm.matrix.sum() == 0
    m = cm.compute()
    assert math.isnan(m["dice"]) and math.isnan(m["pixel_error"]) and m["n_pixels"] == 0


def test_empty_class_rule():
    # 类 2 在真值和预测中都不存在 -> 1.0；类 1 只出现在预测中 -> 0.0
    pred = torch.tensor([[[0, 1, 0, 0]]])
    target = torch.tensor([[[0, 0, 0, 0]]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    m = cm.compute()
    assert m["dice_per_class"][2] == 1.0 and m["iou"][2] == 1.0
    assert m["precision"][2] == 1.0 and m["recall"][2] == 1.0
    assert m["dice_per_class"][1] == 0.0 and m["precision"][1] == 0.0 and m["recall"][1] == 0.0
    assert m["mean_dice"] == pytest.approx(0.5)
    # 全部预测为背景、真值也无前景：完美
    cm2 = ConfusionMatrix(2)
    cm2.update(torch.zeros(1, 3, 3, dtype=torch.long), torch.zeros(1, 3, 3, dtype=torch.long))
    assert cm2.compute()["dice"] == 1.0


def test_matrix_can_be_summed_across_ranks():
    # 模拟 DDP all_reduce：两个进程的矩阵相加等于一次性累加
    rng = np.random.default_rng(0)
    pred = torch.from_numpy(rng.integers(0, 3, size=(4, 5, 5)))
    target = torch.from_numpy(rng.integers(0, 3, size=(4, 5, 5)))
    a, b, whole = ConfusionMatrix(3), ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(pred[:2], target[:2])
    b.update(pred[2:], target[2:])
    whole.update(pred, target)
    a.matrix += b.matrix
    assert a.compute() == whole.compute()


def test_update_errors():
    cm = ConfusionMatrix(2)
    with pytest.raises(DataError, match="same shape"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(DataError, match="integer"):
        cm.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(DataError, match="outside 0..1"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 3))
    with pytest.raises(ConfigError, match="n_classes >= 2"):
        ConfusionMatrix(1)


def test_logits_to_labels():
    logits = torch.tensor([[[[0.3, -0.2], [2.0, -3.0]]]])        # (1, 1, 2, 2)
    assert logits_to_labels(logits, "binary").tolist() == [[[1, 0], [1, 0]]]
    # 阈值 0.6：sigmoid(0.3) ≈ 0.574 < 0.6
    assert logits_to_labels(logits, "binary", threshold=0.6).tolist() == [[[0, 0], [1, 0]]]
    multi = torch.randn(2, 4, 3, 3)
    labels = logits_to_labels(multi, "multiclass")
    assert labels.dtype == torch.int64 and labels.shape == (2, 3, 3)
    assert torch.equal(labels, multi.argmax(1))
    with pytest.raises(ConfigError):
        logits_to_labels(multi, "binary")
    with pytest.raises(ConfigError):
        logits_to_labels(logits, "multiclass")
    with pytest.raises(ConfigError):
        logits_to_labels(logits, "binary", threshold=1.0)


@pytest.mark.parametrize("mode,channels", [("binary", 1), ("multiclass", 2), ("multiclass", 4)])
def test_logits_to_labels_is_probs_to_labels_of_logits_to_probs(mode: str, channels: int) -> None:
    """One decision rule: the composition gives exactly logits_to_labels, for every threshold.
    只有一条决策规则：两步组合与 logits_to_labels 完全一致
    """
    torch.manual_seed(0)
    logits = torch.randn(2, channels, 5, 6) * 3
    probs = logits_to_probs(logits, mode)
    assert probs.shape == (2, max(channels, 2), 5, 6)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 5, 6))
    for threshold in (0.1, 0.5, 0.9):
        composed = probs_to_labels(probs, mode, threshold)
        assert torch.equal(logits_to_labels(logits, mode, threshold), composed)
    if channels > 2:
        assert torch.equal(logits_to_labels(logits, mode, 0.9), logits.argmax(1))   # 多于两类：与阈值无关
    elif mode == "multiclass":                                                      # 两类 softmax：阈值作用于 p[1]
        assert torch.equal(logits_to_labels(logits, mode, 0.3), (probs[:, 1] >= 0.3).long())
        assert torch.equal(logits_to_labels(logits, mode, 0.5), logits.argmax(1))   # 0.5 时等于取最大值
    else:
        assert torch.equal(logits_to_labels(logits, mode, 0.3), (torch.sigmoid(logits[:, 0]) >= 0.3).long())


def test_binary_threshold_edge_is_inclusive() -> None:
    """A pixel exactly at the threshold is foreground (p >= t), through both paths.
    概率恰好等于阈值的像素记为前景
    """
    logits = torch.zeros(1, 1, 1, 2)                               # sigmoid(0) == 0.5 exactly
    assert logits_to_labels(logits, "binary", 0.5).tolist() == [[[1, 1]]]
    probs = np.array([[[0.75, 0.25]], [[0.25, 0.75]]], dtype=np.float32)    # (K=2, 1, 2) numpy
    assert probs_to_labels(probs, "binary", 0.75).tolist() == [[0, 1]]
    assert probs_to_labels(probs, "binary", 0.7500001).tolist() == [[0, 0]]
    assert probs_to_labels(probs, "multiclass").tolist() == [[0, 1]]
    with pytest.raises(ConfigError, match="2 channels"):
        probs_to_labels(np.ones((3, 1, 2)) / 3, "binary")
    with pytest.raises(ConfigError, match="threshold"):
        probs_to_labels(probs, "binary", 0.0)
    with pytest.raises(ConfigError, match="Unknown mode"):
        logits_to_probs(logits, "sigmoid")


def brute_force_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of (positive, negative) pairs ranked correctly, ties count 1/2. 逐对比较的 AUC"""
    pos, neg = scores[truth == 1], scores[truth == 0]
    total = 0.0
    for p, n in itertools.product(pos, neg):
        total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(pos) * len(neg))


def test_roc_auc_matches_pairwise_count():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(60), 1)                         # 保留一位小数，制造大量并列
    truth = (rng.random(60) < 0.4).astype(np.int64)
    assert roc_auc(scores, truth) == pytest.approx(brute_force_auc(scores, truth))
    # torch 输入、valid 掩码与 ignore_index
    valid = rng.random(60) < 0.7
    t = truth.copy()
    t[:5] = 255
    keep = valid & (t != 255)
    got = roc_auc(torch.from_numpy(scores).float().reshape(6, 10), torch.from_numpy(t).reshape(6, 10),
                  valid=torch.from_numpy(valid).reshape(6, 10))
    expected = brute_force_auc(scores.astype(np.float32).astype(np.float64)[keep], truth[keep])
    assert got == pytest.approx(expected)


def test_roc_auc_edge_cases():
    assert roc_auc(np.array([0.1, 0.9]), np.array([0, 1])) == 1.0
    assert roc_auc(np.array([0.9, 0.1]), np.array([0, 1])) == 0.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert math.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))
    with pytest.raises(DataError, match="binary target"):
        roc_auc(np.array([0.1, 0.2]), np.array([0, 2]))
    with pytest.raises(DataError):
        roc_auc(np.array([0.1, 0.2, 0.3]), np.array([0, 1]))
