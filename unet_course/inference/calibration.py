"""Choosing the decision threshold: score one set of predictions at many thresholds.
选择决策阈值：对同一组预测在多个阈值下评分

A two-class model turns ``p = probs[1]`` into a label with ``p >= threshold`` (:func:`unet_course.metrics.
probs_to_labels`). 0.5 is rarely the best threshold for a thin, rare foreground such as retinal vessels, so the
threshold is a setting to choose on held-out data and store with the model (``TrainConfig.threshold`` goes into the
checkpoint and ``predict`` uses it). :func:`score_thresholds` predicts every image once and scores all the candidate
thresholds from those probabilities, so a sweep costs one prediction pass.
两类模型用 p >= threshold 得到标签；对血管这类细而稀少的前景，0.5 很少是最优阈值，应在验证数据上选择并随模型保存；
score_thresholds 每张图只预测一次，再用同一组概率为所有候选阈值评分
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.masks import values_to_indices
from ..errors import ConfigError
from ..metrics import ConfusionMatrix, probs_to_labels
from .predict import predict_with_meta
from .scoring import masked_target

#: Default candidate thresholds: 0.30, 0.35, ..., 0.70. 默认候选阈值
DEFAULT_THRESHOLDS = tuple(round(0.30 + 0.05 * i, 2) for i in range(9))


def score_thresholds(model: nn.Module, meta: dict[str, Any], dataset: Any,
                     thresholds: Sequence[float] = DEFAULT_THRESHOLDS, *,
                     progress: Callable[[str], None] | None = None, **predict: Any) -> dict[str, Any]:
    """Foreground Dice (= F1) of a two-class model on a labelled split at each threshold, valid pixels only.
    两类模型在有标签数据上、各阈值下的前景 Dice（即 F1），只统计有效像素

    Args:
        model: the network, in eval mode. 网络
        meta: its checkpoint meta (preprocessing, mask values, default threshold). 检查点信息
        dataset: a labelled split with ``raw(i) -> (image, mask, valid)`` at native size. 有标签的数据划分
        thresholds: candidates in ``(0, 1)``. 候选阈值
        progress: called with one line per image. 进度回调
        **predict: overrides for :func:`~unet_course.inference.predict_with_meta` (``tta``, ``tile``, ``amp``).

    Returns:
        ``{"thresholds": [...], "f1": [pooled F1 per threshold], "best_threshold", "best_f1",
        "per_image": [{"name", "f1": [per threshold]}], "n_images"}``; pooled = all valid pixels of all images.
        汇总 F1 按所有图像的全部有效像素计算

    Raises:
        ConfigError: the model does not have exactly two classes, or a threshold outside (0, 1).
    """
    mask_values = list(meta["mask_values"])
    if len(mask_values) != 2:
        raise ConfigError(f"A threshold sweep needs a two-class model; this one has {len(mask_values)} classes.")
    ts = [float(t) for t in thresholds]
    if not ts or not all(0.0 < t < 1.0 for t in ts):
        raise ConfigError(f"thresholds must lie in (0, 1), got {thresholds!r}.")
    ignore = int(getattr(dataset, "ignore_index", 255))
    pooled = [ConfusionMatrix(2, ignore_index=ignore) for _ in ts]     # 每个阈值一个混淆矩阵
    per_image = []
    for i in range(len(dataset)):
        image, mask, valid = dataset.raw(i)                            # 原始尺寸的图像、掩码与有效区域
        name = dataset.names[i] if getattr(dataset, "names", None) else f"item {i}"
        probs = torch.from_numpy(predict_with_meta(model, meta, image, name=name, **predict).probs)  # (2, H, W)
        target = masked_target(values_to_indices(mask, mask_values, name), valid, ignore)             # (H, W)
        scores = []
        for t, cm in zip(ts, pooled):
            labels = probs_to_labels(probs, "multiclass", t)          # (H, W) 与预测时同一条决策规则
            cm.update(labels, target)
            one = ConfusionMatrix(2, ignore_index=ignore)
            one.update(labels, target)
            scores.append(float(one.compute()["dice"]))
        per_image.append({"name": name, "f1": scores})
        if progress is not None:
            progress(f"{name}: F1 {max(scores):.4f} at best threshold")
    f1 = [float(cm.compute()["dice"]) for cm in pooled]
    best = int(np.argmax(f1))
    return {"thresholds": ts, "f1": f1, "best_threshold": ts[best], "best_f1": f1[best],
            "per_image": per_image, "n_images": len(per_image)}
