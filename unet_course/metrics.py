"""Segmentation metrics from one confusion matrix: Dice, IoU, precision, recall, pixel error, and ROC AUC.
分割指标：由混淆矩阵计算 Dice、IoU、精确率、召回率、像素误差，另有 ROC AUC

Metrics are accumulated over a whole evaluation set in a ``K × K`` integer *confusion matrix* and computed once at
the end. Summing counts first and dividing last gives the dataset-level ("micro") score, which is what the DRIVE
and ISBI-2012 papers report, and avoids averaging per-image ratios of empty images. The matrix is a public tensor,
so a distributed run can ``all_reduce`` it across ranks before ``compute()``.
在整个评估集上累加 K × K 的整数混淆矩阵，最后一次性计算；先求和再相除得到数据集级别的指标；
矩阵是公开张量，分布式训练时可先在各进程间 all_reduce 再计算

Empty-class rule (documented and tested): a ratio whose denominator is 0 is 1.0 when the class is absent from both
truth and prediction (nothing to find, nothing falsely found) and 0.0 otherwise. So a class that never occurs and
is never predicted gets Dice = IoU = precision = recall = 1.0; predicting a class that is not in the truth gives
precision 0 and Dice 0. When nothing at all was counted, every metric is NaN.
空类规则：分母为 0 时，若该类在真值和预测中都不存在则记 1.0，否则记 0.0；尚未累计任何像素时全部为 NaN
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, DataError
from .rules import check_threshold

MODES = ("multiclass", "binary")


def _check_mode(mode: str) -> None:
    """Refuse an unknown mode. 拒绝未知的模式"""
    if mode not in MODES:
        raise ConfigError(f"Unknown mode {mode!r}; choose one of: {', '.join(MODES)}.")


def logits_to_probs(logits: torch.Tensor, mode: str = "multiclass") -> torch.Tensor:
    """Turn model logits into class probabilities with at least two channels.
    把 logits 转为至少两个通道的类别概率

    The class axis is ``-3``, so both a batch ``(B, K, H, W)`` and one image ``(K, H, W)`` work.
    类别维是倒数第三维，批量和单张图都可以

    Args:
        logits: raw scores (not probabilities). ``"binary"``: one channel ``(B, 1, H, W)``; ``"multiclass"``:
            ``K >= 2`` channels ``(B, K, H, W)``. 原始得分
        mode: ``"binary"`` (sigmoid) or ``"multiclass"`` (softmax over ``K``). 模式

    Returns:
        float32 ``(B, max(K, 2), H, W)`` probabilities that sum to 1 over the class axis; a binary sigmoid ``p``
        becomes the two channels ``[1 - p, p]``. 二分类的 sigmoid 概率 p 写成两个通道 [1 - p, p]

    Raises:
        ConfigError: unknown mode, or a channel count that does not fit the mode.

    >>> logits_to_probs(torch.zeros(1, 1, 1, 1), "binary").flatten().tolist()
    [0.5, 0.5]
    """
    _check_mode(mode)
    if logits.ndim not in (3, 4):
        raise DataError(f"logits must be (B, K, H, W) or (K, H, W), got {tuple(logits.shape)}.")
    logits = logits.float()
    k = logits.shape[-3]
    if mode == "binary":
        if k != 1:
            raise ConfigError(f"mode='binary' expects 1 logit channel, got {k}; use 'multiclass'.")
        p = torch.sigmoid(logits)                                      # (B, 1, H, W) 前景概率
        return torch.cat([1.0 - p, p], dim=-3)                         # (B, 2, H, W)
    if k < 2:
        raise ConfigError("mode='multiclass' expects >= 2 logit channels, got 1; use mode='binary'.")
    return torch.softmax(logits, dim=-3)                               # (B, K, H, W)


def probs_to_labels(probs: torch.Tensor | np.ndarray, mode: str = "multiclass",
                    threshold: float = 0.5) -> torch.Tensor:
    """The decision rule: class probabilities -> class indices.
    决策规则：类别概率 -> 类别索引

    Two classes (``"binary"``, or ``"multiclass"`` with ``K == 2``): foreground (1) where
    ``probs[1] >= threshold``, else background (0). At ``threshold=0.5`` this is the arg-max (up to exact ties), and
    a threshold tuned on validation data works for a 2-class softmax model as for a sigmoid one. More than two
    classes: the arg-max (``threshold`` is not used). Every part of the package that turns probabilities into
    labels calls this function, so training, evaluation, prediction and the pictures agree pixel for pixel.
    两类（binary，或 K == 2 的 multiclass）：probs[1] >= threshold 处为前景；阈值 0.5 时与取最大值相同，
    因此在验证集上调好的阈值对 softmax 两类模型同样适用；多于两类：取概率最大的类别（不使用阈值）；
    训练、评估、预测与可视化都调用本函数，因此结果逐像素一致

    Args:
        probs: ``(B, K, H, W)`` or ``(K, H, W)`` probabilities (a tensor or a numpy array), as given by
            :func:`logits_to_probs`; ``"binary"`` needs ``K == 2``. 类别概率
        mode: ``"binary"`` or ``"multiclass"``. 模式
        threshold: foreground threshold in ``(0, 1)``, used whenever there are two classes. 两类时的前景阈值

    Returns:
        int64 ``(B, H, W)`` or ``(H, W)`` class indices (a tensor on the input's device).

    Raises:
        ConfigError: unknown mode, a bad threshold, or a channel count that does not fit the mode.

    >>> probs_to_labels(torch.tensor([[[0.6, 0.5]], [[0.4, 0.5]]]), "binary", threshold=0.5).tolist()
    [[0, 1]]
    """
    _check_mode(mode)
    p = torch.as_tensor(probs)
    if p.ndim not in (3, 4):
        raise DataError(f"probs must be (B, K, H, W) or (K, H, W), got {tuple(p.shape)}.")
    k = p.shape[-3]
    if mode == "binary":
        if k != 2:
            raise ConfigError(f"mode='binary' expects the 2 channels [1 - p, p], got {k}; use 'multiclass'.")
    if k == 2:                                                          # 两类：按阈值判定前景
        return (p.select(-3, 1) >= check_threshold(threshold)).long()  # (B, H, W) 前景概率不低于阈值
    if k < 2:
        raise ConfigError("mode='multiclass' expects >= 2 probability channels, got 1; use mode='binary'.")
    return p.argmax(dim=-3)                                            # (B, H, W) 最大概率的类别


def logits_to_labels(logits: torch.Tensor, mode: str = "multiclass", threshold: float = 0.5) -> torch.Tensor:
    """Turn model logits into class indices: :func:`probs_to_labels` of :func:`logits_to_probs`.
    把 logits 转为类别索引：先求概率，再按决策规则取类别

    Args:
        logits: ``(B, K, H, W)`` raw scores; ``(B, 1, H, W)`` for ``"binary"``. 原始得分
        mode: ``"multiclass"`` (softmax) or ``"binary"`` (sigmoid). 模式
        threshold: foreground probability threshold in ``(0, 1)``, used whenever there are two classes. 两类时的阈值

    Returns:
        ``(B, H, W)`` int64 class indices.

    Raises:
        ConfigError: unknown mode, bad threshold, or a channel count that does not fit the mode.

    >>> logits_to_labels(torch.tensor([[[[2.0, -1.0, 0.0]]]]), mode="binary")
    tensor([[[1, 0, 1]]])
    >>> logits_to_labels(torch.tensor([[[[0.1]], [[0.7]], [[0.2]]]]), mode="multiclass")
    tensor([[[1]]])
    """
    return probs_to_labels(logits_to_probs(logits, mode), mode, threshold)


def _ratio(num: torch.Tensor, den: torch.Tensor, absent: torch.Tensor) -> list[float]:
    """num / den per class with the empty-class rule (0/0 -> 1.0 if absent everywhere, else 0.0)."""
    num, den = num.double(), den.double()
    out = torch.where(den > 0, num / den.clamp_min(1), absent.double())
    return [float(v) for v in out]


class ConfusionMatrix:
    """Accumulate a ``K × K`` int64 confusion matrix and turn it into segmentation metrics.
    累加 K × K 的 int64 混淆矩阵并计算分割指标

    ``matrix[t, p]`` counts pixels whose truth is class ``t`` and prediction class ``p`` (rows: truth, columns:
    prediction). Pixels whose target is ``ignore_index`` or whose ``valid`` mask is False are skipped.
    行为真值、列为预测；ignore_index 或 valid 为 False 的像素不计

    Binary tasks use ``n_classes=2`` (background 0, foreground 1) even when the model has a single sigmoid output.
    二分类任务使用 n_classes=2（背景 0、前景 1），即使模型只有一个 sigmoid 输出通道

    Args:
        n_classes: number of classes ``K >= 2``. 类别数
        ignore_index: target value that is never counted. 忽略的标签值
        device: where the matrix lives (default CPU; put it on the model's device to avoid copies).
            矩阵所在设备

    Raises:
        ConfigError: ``n_classes < 2``.

    >>> cm = ConfusionMatrix(2)
    >>> cm.update(torch.tensor([[[1, 1, 0, 0]]]), torch.tensor([[[1, 0, 0, 255]]]))
    >>> cm.matrix.tolist()
    [[1, 1], [0, 1]]
    >>> m = cm.compute()
    >>> round(m["dice"], 4), round(m["pixel_accuracy"], 4)
    (0.6667, 0.6667)
    """

    def __init__(self, n_classes: int, ignore_index: int = 255, device: torch.device | str | None = None) -> None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ConfigError(
                f"ConfusionMatrix needs n_classes >= 2, got {n_classes!r}. A binary task has 2 classes "
                f"(background and foreground) even with a 1-channel sigmoid model."
            )
        self.n_classes = n_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(n_classes, n_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        """Set every count back to 0. 清零"""
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Add a batch.
        累加一个批量

        Args:
            pred: ``(B, H, W)`` int64 predicted class indices (see :func:`logits_to_labels`). 预测类别
            target: ``(B, H, W)`` int64 true class indices or ``ignore_index``. 真实类别
            valid: optional ``(B, H, W)`` bool; only True pixels are counted (e.g. DRIVE's field of view).
                可选的有效像素掩码

        Raises:
            DataError: shapes differ, non-integer tensors, or labels outside ``0..K-1``.
        """
        if pred.shape != target.shape:
            raise DataError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape.")
        for name, t in (("pred", pred), ("target", target)):
            if t.is_floating_point() or t.dtype == torch.bool:
                raise DataError(f"{name} must hold integer class indices, got dtype {t.dtype}; "
                                f"use logits_to_labels() for predictions and .long() for targets.")
        device = self.matrix.device
        pred, target = pred.to(device).long().flatten(), target.to(device).long().flatten()
        keep = target != self.ignore_index
        if valid is not None:
            if valid.numel() != target.numel():
                raise DataError(f"valid mask {tuple(valid.shape)} must match target's shape.")
            keep &= valid.to(device).flatten().bool()
        pred, target = pred[keep], target[keep]
        k = self.n_classes
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= k):
            raise DataError(f"target holds labels outside 0..{k - 1} (and not ignore_index={self.ignore_index}); "
                            f"check n_classes and mask_values.")
        if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= k):
            raise DataError(f"pred holds labels outside 0..{k - 1}; was the model built with n_classes={k}?")
        self.matrix += torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)  # 行：真值，列：预测

    def compute(self) -> dict[str, Any]:
        """Metrics from the counts so far (plain Python floats and lists, JSON-safe).
        由当前累计计算指标（均为 Python 数值，可直接存为 JSON）

        Returns:
            A dict with
            ``dice``: the headline Dice, a float: the foreground Dice (class 1) when ``K == 2``, else ``mean_dice``;
            ``dice_per_class``, ``iou``, ``precision``, ``recall``, ``f1``: lists with one value per class;
            ``mean_dice``, ``mean_iou``: means over the foreground classes ``1..K-1``;
            ``pixel_accuracy`` and ``pixel_error`` (``1 - accuracy``, the ISBI-2012 pixel error);
            ``n_pixels`` counted and the ``confusion_matrix`` as a nested list.
            dice 为主指标（二分类时为前景类 Dice，否则为前景平均 Dice）；其余为逐类列表、前景平均、像素准确率与像素误差
        """
        cm = self.matrix.detach().to("cpu", torch.float64)
        k = self.n_classes
        total = float(cm.sum())
        if total == 0:
            nan_list = [math.nan] * k
            return {"dice": math.nan, "dice_per_class": nan_list, "iou": nan_list,
                    "precision": nan_list, "recall": nan_list, "f1": nan_list, "mean_dice": math.nan,
                    "mean_iou": math.nan, "pixel_accuracy": math.nan, "pixel_error": math.nan, "n_pixels": 0,
                    "confusion_matrix": self.matrix.tolist()}
        tp = cm.diag()
        truth, predicted = cm.sum(1), cm.sum(0)              # 每类真值像素数、预测像素数
        fp, fn = predicted - tp, truth - tp
        absent = (truth == 0) & (predicted == 0)             # 真值与预测中都没有该类
        dice = _ratio(2 * tp, 2 * tp + fp + fn, absent)
        iou = _ratio(tp, tp + fp + fn, absent)
        precision = _ratio(tp, tp + fp, absent)
        recall = _ratio(tp, tp + fn, absent)
        # F1 = 2PR/(P+R) 与 Dice 在像素计数上完全相同
        f1 = [2 * p * r / (p + r) if p + r > 0 else (1.0 if a else 0.0)
              for p, r, a in zip(precision, recall, absent.tolist())]
        mean_dice = float(np.mean(dice[1:]))
        mean_iou = float(np.mean(iou[1:]))
        accuracy = float(tp.sum()) / total
        return {
            "dice": dice[1] if k == 2 else mean_dice,
            "dice_per_class": dice,
            "iou": iou,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "mean_dice": mean_dice,
            "mean_iou": mean_iou,
            "pixel_accuracy": accuracy,
            "pixel_error": 1.0 - accuracy,
            "n_pixels": int(total),
            "confusion_matrix": self.matrix.tolist(),
        }

    def __repr__(self) -> str:
        return f"ConfusionMatrix(n_classes={self.n_classes}, ignore_index={self.ignore_index}, " \
               f"pixels={int(self.matrix.sum())})"


def roc_auc(probs: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
            valid: torch.Tensor | np.ndarray | None = None, ignore_index: int = 255) -> float:
    """Binary ROC AUC by ranks (the Mann–Whitney U statistic), with ties counted as one half.
    基于秩的二分类 ROC AUC（Mann–Whitney U 统计量），并列按 1/2 计

    AUC is the probability that a random foreground pixel gets a higher score than a random background pixel.
    Ranking all scores once gives it exactly in ``O(n log n)``: ``AUC = (R₊ - n₊(n₊+1)/2) / (n₊ n₋)`` where
    ``R₊`` is the sum of the (tie-averaged) ranks of the positives. DRIVE papers report it inside the field of view.
    AUC 是随机前景像素得分高于随机背景像素的概率；按秩一次排序即可精确计算；DRIVE 论文在视野内报告该值

    Args:
        probs: foreground scores of any shape (probabilities or logits: only the order matters). 前景得分
        target: same shape, ``{0, 1}`` or ``ignore_index``. 真值
        valid: optional bool mask of the same shape (e.g. the DRIVE FOV). 可选的有效像素掩码
        ignore_index: target value left out. 忽略的标签值

    Returns:
        The AUC as a float, or NaN when only one class is present among the scored pixels.

    Raises:
        DataError: shapes differ or target values other than 0, 1 and ``ignore_index``.

    >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    """
    def to_numpy(a: Any) -> np.ndarray:
        if isinstance(a, torch.Tensor):
            a = a.detach().float().cpu() if a.is_floating_point() else a.detach().cpu()
            return a.numpy()
        return np.asarray(a)

    scores, truth = to_numpy(probs).astype(np.float64).ravel(), to_numpy(target).ravel()
    if scores.shape != truth.shape:
        raise DataError(f"probs ({scores.size} values) and target ({truth.size} values) must have the same shape.")
    keep = truth != ignore_index
    if valid is not None:
        mask = to_numpy(valid).astype(bool).ravel()
        if mask.shape != truth.shape:
            raise DataError("valid mask must have the same shape as target.")
        keep &= mask
    scores, truth = scores[keep], truth[keep]
    if not np.isin(truth, (0, 1)).all():
        raise DataError(f"roc_auc needs a binary target in {{0, 1}}, found values {np.unique(truth)[:8].tolist()}.")
    positive = truth == 1
    n_pos = int(positive.sum())
    n_neg = int(positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return math.nan
    # 并列得分取平均秩：同值组的秩为 start + (count + 1) / 2
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    ranks = (starts + (counts + 1) / 2.0)[inverse.ravel()]
    rank_sum = float(ranks[positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def instance_scores(pred_labels: torch.Tensor | np.ndarray, target_labels: torch.Tensor | np.ndarray,
                    boundary_class: int = 1, valid: torch.Tensor | np.ndarray | None = None,
                    ignore_index: int = 255) -> dict[str, float]:
    """ISBI-2012's own metrics: adapted Rand error and variation of information between cell label images.
    ISBI-2012 挑战赛的指标：细胞标签图之间的调整 Rand 误差与信息变差

    The challenge scores *segmentations into cells*, not pixels: two cells merged by a one-pixel gap in a membrane
    cost little pixel error but a lot of Rand error. What is computed (scikit-image's ``skimage.metrics``):
    挑战赛评价的是把图像分成细胞的结果而不是像素：膜上一个像素的缺口会把两个细胞合并，像素误差很小但 Rand 误差很大

    1. truth: the connected components (4-connectivity) of the non-boundary pixels of ``target_labels`` are the
       cells, numbered 1..n; boundary (membrane) pixels, ``ignore_index`` pixels and pixels outside ``valid`` get
       label 0 and are left out of both scores (the challenge's foreground-restricted scoring);
       真值：非膜像素的 4 连通分量是细胞；膜、忽略值与 valid 之外的像素记为 0，不参与评分
    2. prediction: the 4-connected components of the predicted non-boundary pixels, then every predicted
       membrane pixel joins its nearest cell (``skimage.segmentation.expand_labels``), so a membrane is a thin
       border between cells, not one huge extra segment;
       预测：预测非膜像素的 4 连通分量，再把每个预测膜像素并入最近的细胞
    3. ``adapted_rand_error`` = 1 - F-score of the Rand precision and recall over pixel pairs
       (``skimage.metrics.adapted_rand_error``); ``vi_split`` = H(prediction | truth) (false splits) and
       ``vi_merge`` = H(truth | prediction) (false merges), in bits (``skimage.metrics.variation_of_information``);
       ``variation_of_information`` = their sum. Lower is better for all; 0 is a perfect segmentation.
       四个指标都是越低越好，0 表示完美分割

    Args:
        pred_labels: int ``(H, W)`` predicted class indices. 预测的类别索引
        target_labels: int ``(H, W)`` true class indices. 真实类别索引
        boundary_class: the class index of the boundary (ISBI-2012: 1 = membrane). 边界（膜）的类别
        valid: optional bool ``(H, W)`` pixels to score. 参与评分的像素
        ignore_index: target value never scored. 忽略的标签值

    Returns:
        ``{"adapted_rand_error", "rand_precision", "rand_recall", "vi_split", "vi_merge",
        "variation_of_information", "n_cells_true", "n_cells_pred"}``.

    >>> truth = np.array([[0, 0, 1, 0, 0]] * 4)            # two cells split by a membrane column
    >>> scores = instance_scores(np.zeros((4, 5), int), truth)   # the prediction merges them
    >>> round(scores["adapted_rand_error"], 4), scores["vi_merge"], scores["vi_split"]
    (0.3636, 1.0, 0.0)
    """
    # scikit-image pulls in SciPy (slow to import) and is needed only for these scores 仅在此处导入
    from skimage.measure import label
    from skimage.metrics import adapted_rand_error, variation_of_information
    from skimage.segmentation import expand_labels

    def to_numpy(a: Any) -> np.ndarray:
        return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)

    pred, target = to_numpy(pred_labels), to_numpy(target_labels)
    if pred.shape != target.shape or pred.ndim != 2:
        raise DataError(f"instance_scores needs two (H, W) label images of one size, got {pred.shape} and "
                        f"{target.shape}.")
    cells = (target != boundary_class) & (target != ignore_index)      # (H, W) 真值中的细胞像素
    if valid is not None:
        cells &= to_numpy(valid).astype(bool)
    truth = label(cells, connectivity=1)                                 # (H, W) 细胞 1..n，膜为 0
    pred_cells = label(pred != boundary_class, connectivity=1)           # (H, W) 预测的细胞
    pred_seg = expand_labels(pred_cells, distance=max(pred.shape))       # 膜像素并入最近的细胞
    error, precision, recall = adapted_rand_error(truth, pred_seg, ignore_labels=(0,))
    split, merge = variation_of_information(truth, pred_seg, ignore_labels=(0,))
    return {"adapted_rand_error": float(error), "rand_precision": float(precision), "rand_recall": float(recall),
            "vi_split": float(split), "vi_merge": float(merge), "variation_of_information": float(split + merge),
            "n_cells_true": int(truth.max()), "n_cells_pred": int(pred_cells.max())}
