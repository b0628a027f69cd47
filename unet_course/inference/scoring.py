"""Scoring predictions at native resolution: one image, a labelled split, and resize vs sliding window.
在原始分辨率上评分：单张图、整个有标签的数据划分，以及缩放与滑动窗口的对比

Every score here compares a prediction that has the *image's own size* with the mask at that size, and counts only
the valid pixels (e.g. inside DRIVE's field of view). Metrics come from :class:`unet_course.metrics.ConfusionMatrix`
summed over every pixel of every image (micro average), the way the DRIVE and ISBI-2012 papers report them.
这里的每个分数都在图像原尺寸上比较预测与掩码，只统计有效像素（如 DRIVE 的视野内），按全部像素汇总（微平均）
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.masks import values_to_indices
from ..errors import CheckpointError, ConfigError, DataError
from ..files import to_plain
from ..metrics import ConfusionMatrix, instance_scores, roc_auc
from .memory import DEFAULT_MEMORY_CAP_MB
from .predict import predict_image, settings_from_meta


def _as_long_tensor(a: Any) -> torch.Tensor:
    """Any integer array / tensor -> int64 tensor. 转为 int64 张量"""
    return torch.as_tensor(np.asarray(a)).to(torch.int64)


def masked_target(target_labels: Any, valid: Any = None, ignore_index: int = 255) -> torch.Tensor:
    """int64 ``(H, W)`` targets with pixels outside ``valid`` set to ``ignore_index``.
    把 valid 之外的像素设为 ignore_index

    Raises:
        DataError: ``valid`` has another shape than the target.

    >>> masked_target([[1, 0]], [[True, False]]).tolist()
    [[1, 255]]
    """
    target = _as_long_tensor(target_labels).clone()
    if valid is not None:
        keep = torch.from_numpy(np.array(valid, dtype=bool))
        if keep.shape != target.shape:
            raise DataError(f"valid mask shape {tuple(keep.shape)} differs from the target shape {tuple(target.shape)}.")
        target[~keep] = ignore_index
    return target


def score_prediction(
    pred_labels: Any,
    target_labels: Any,
    valid: Any = None,
    n_classes: int = 2,
    *,
    probs: Any = None,
    ignore_index: int = 255,
) -> dict[str, Any]:
    """Score one prediction against class-index targets, only where ``valid`` (e.g. inside the FOV).
    只在 valid 区域（如视野内）对一张预测评分

    Args:
        pred_labels: int ``(H, W)`` predicted class indices. 预测的类别索引
        target_labels: int ``(H, W)`` true class indices (``ignore_index`` pixels are skipped). 真实类别索引
        valid: bool ``(H, W)`` pixels to score; ``None`` scores all. 参与评分的像素
        n_classes: number of classes ``K``. 类别数
        probs: optional float ``(K, H, W)``; with ``K == 2`` adds ``"auc"`` (ROC AUC of ``probs[1]``).
            可选概率，两类时额外计算 AUC
        ignore_index: target value never scored. 忽略的目标值

    Returns:
        ``ConfusionMatrix.compute()`` (Dice/F1, IoU, accuracy, ...) plus ``"auc"`` when ``probs`` is given for a
        two-class task.

    Raises:
        DataError: the prediction and the target differ in size (predict with ``resize_back=True``).

    >>> score_prediction([[1, 0, 1]], [[1, 0, 0]])["dice"]
    0.6666666666666666
    """
    pred = _as_long_tensor(pred_labels)
    target = masked_target(target_labels, valid, ignore_index)
    if pred.shape != target.shape:
        raise DataError(
            f"prediction shape {tuple(pred.shape)} differs from the target shape {tuple(target.shape)}; "
            "predict with resize_back=True so the mask has the image's size."
        )
    cm = ConfusionMatrix(n_classes, ignore_index=ignore_index)
    cm.update(pred, target)
    result = dict(cm.compute())
    if probs is not None and n_classes == 2:
        scores = torch.as_tensor(np.asarray(probs))[1].float()      # (H, W) 前景概率
        result["auc"] = float(roc_auc(scores, target, ignore_index=ignore_index))
    return result


def _check_dataset_classes(meta: dict[str, Any], dataset: Any) -> None:
    """The dataset must use the checkpoint's mask values, in the same class order. 数据集与检查点的类别顺序必须一致"""
    ds_values = getattr(dataset, "mask_values", None)
    ck_values = meta.get("mask_values")
    if ds_values is not None and ck_values is not None and list(ds_values) != list(ck_values):
        raise CheckpointError(
            f"The checkpoint maps classes to mask values {list(ck_values)} but the dataset uses {list(ds_values)}; "
            "evaluate the model on the data set it was trained for."
        )


#: The ISBI-2012 segmentation scores averaged over images. 按图平均的 ISBI-2012 分割指标
INSTANCE_KEYS = ("adapted_rand_error", "rand_precision", "rand_recall", "vi_split", "vi_merge",
                 "variation_of_information")


def _headline(scores: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics worth printing on one line. 适合单行打印的标量指标"""
    keys = ("dice", "pixel_error", "auc", "adapted_rand_error", "variation_of_information")
    return {k: float(scores[k]) for k in keys if k in scores and isinstance(scores[k], (int, float))}


def _sample(dataset: Any, i: int, names: list[str]) -> tuple[str, np.ndarray, np.ndarray, Any]:
    """``(name, image, raw mask, valid)`` of a labelled sample. 取出一个有标签的样本"""
    name = names[i] if i < len(names) else f"#{i}"
    image, mask_raw, valid = dataset.raw(i)
    if mask_raw is None:
        raise DataError(
            f"Sample {name!r} has no label, so it cannot be scored; evaluate a labelled split "
            "(e.g. split='val' or 'train'), or use `unet-course predict` for unlabelled images."
        )
    return name, image, mask_raw, valid


def evaluate_dataset(
    model: nn.Module,
    meta: dict[str, Any],
    dataset: Any,
    *,
    tile: int | Sequence[int] | None = None,
    overlap: float = 0.25,
    tta: bool | None = None,
    threshold: float | None = None,
    device: str | torch.device | None = None,
    scale: float | None = None,
    tile_batch: int = 4,
    blend: str = "gaussian",
    amp: Any = "auto",
    indices: Sequence[int] | None = None,
    progress: Callable[[str], None] | None = None,
    max_memory_mb: float | None = DEFAULT_MEMORY_CAP_MB,
) -> dict[str, Any]:
    """Score a labelled split at native resolution, with optional tiling and flip TTA.
    在原始分辨率上对有标签的数据划分评分（可选滑动窗口与翻转 TTA）

    Each sample ``dataset.raw(i)`` (uint8 image, raw mask, valid/FOV mask) is predicted with :func:`predict_image`
    (the checkpoint's preprocessing, probabilities resized back) and compared with its own mask at the original
    size; pixels outside ``valid`` are not scored. 每个样本预测后在原始尺寸上与掩码比较，valid 之外不计分

    Args:
        model: the network. 网络
        meta: the ``meta`` of :func:`unet_course.checkpoint.load_model`. 检查点元信息
        dataset: a dataset with ``raw(i)`` and ``names`` (``build_dataset(...)``). 数据集
        tile, overlap, tile_batch, blend: sliding window; ``tile=None``: the checkpoint's ``predict_tile`` (whole
            image unless it says otherwise), ``tile=0``: one whole-image pass. 滑动窗口设置；None 用检查点的设置，0 为整图
        tta: flip test-time augmentation; None: the checkpoint's ``predict_tta``. 翻转 TTA；None 用检查点的设置
        threshold, scale: override the checkpoint's values (``None`` keeps them). 覆盖检查点中的阈值与缩放
        device, amp: where and how to run. 设备与混合精度
        indices: which samples (default: all). 参与评分的样本
        progress: called with one line per image (e.g. ``print``). 每张图调用一次的进度回调
        max_memory_mb: memory cap of a whole-image pass (:mod:`unet_course.inference.memory`). 整图推理内存上限

    A dataset with ``instance_metrics = True`` (ISBI-2012) also gets the challenge's segmentation scores per image
    (:func:`unet_course.metrics.instance_scores`) and their mean over the images in ``metrics``
    (``adapted_rand_error``, ``variation_of_information``, ``vi_split``, ``vi_merge``, ...).
    数据集声明 instance_metrics = True 时（ISBI-2012），额外计算挑战赛的分割指标（逐图计算，再取平均）

    Returns:
        ``{"metrics": pooled confusion-matrix metrics (+ "auc": mean per-image AUC for two classes),
        "per_image": [{"name", "dice", ...}], "n_images", "settings": {...}, "seconds"}`` (micro average).
        汇总指标按所有图像的全部像素统计（微平均），另附每张图的指标

    Raises:
        DataError: the split has no labels. CheckpointError: the dataset's mask values differ from the model's.
    """
    _check_dataset_classes(meta, dataset)
    settings = _settings(meta, scale=scale, threshold=threshold, tile=tile, tta=tta)
    n_classes = len(settings["mask_values"])
    ignore_index = int(getattr(dataset, "ignore_index", 255))
    boundary = int(getattr(dataset, "boundary_class", 1)) if getattr(dataset, "instance_metrics", False) else None
    total = ConfusionMatrix(n_classes, ignore_index=ignore_index)     # 全部图像共用一个混淆矩阵
    names = list(getattr(dataset, "names", []) or [])
    chosen = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    per_image: list[dict[str, Any]] = []
    start = time.perf_counter()
    for i in chosen:
        name, image, mask_raw, valid = _sample(dataset, i, names)
        pred = predict_image(model, image, overlap=overlap, tile_batch=tile_batch, blend=blend, device=device,
                             amp=amp, name=name, max_memory_mb=max_memory_mb, **settings)
        target = values_to_indices(mask_raw, settings["mask_values"], name)   # (H, W) 类别索引
        scores = score_prediction(pred.labels, target, valid, n_classes, probs=pred.probs,
                                  ignore_index=ignore_index)
        total.update(_as_long_tensor(pred.labels), masked_target(target, valid, ignore_index))
        if boundary is not None:                                      # 如 ISBI-2012 的细胞分割指标
            scores.update(instance_scores(pred.labels, target, boundary, valid, ignore_index))
        per_image.append({"name": name, **to_plain(scores)})
        if progress is not None:
            progress(f"{name}: " + ", ".join(f"{k}={v:.4f}" for k, v in _headline(scores).items()))
    return {"metrics": _pooled(total, per_image, n_classes), "per_image": per_image, "n_images": len(per_image),
            "settings": {"tile": settings["tile"], "overlap": overlap, "tta": settings["tta"], "blend": blend,
                         "scale": settings["scale"], "threshold": settings["threshold"]},
            "seconds": time.perf_counter() - start}


def _settings(meta: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The checkpoint's prediction settings with the non-None ``overrides``; ``tile=0`` means the whole image.
    检查点的预测设置，非 None 的参数覆盖之；tile=0 表示整图
    """
    settings = settings_from_meta(meta)                               # 检查点的预处理、决策规则与预测方式
    for key in ("scale", "threshold"):
        if overrides.get(key) is not None:
            settings[key] = float(overrides[key])
    settings.update({k: overrides[k] for k in ("tile", "tta") if overrides.get(k) is not None})
    settings["tile"] = settings["tile"] or None                       # 0 表示整图
    return settings


def _pooled(total: ConfusionMatrix, per_image: list[dict[str, Any]], n_classes: int) -> dict[str, Any]:
    """Pooled confusion-matrix metrics, the mean per-image AUC and the mean instance scores. 汇总指标"""
    metrics = to_plain(total.compute())
    if n_classes == 2:
        aucs = [s["auc"] for s in per_image if isinstance(s.get("auc"), float) and math.isfinite(s["auc"])]
        metrics["auc"] = float(np.mean(aucs)) if aucs else float("nan")
    for key in INSTANCE_KEYS if per_image and INSTANCE_KEYS[0] in per_image[0] else ():
        metrics[key] = float(np.mean([s[key] for s in per_image]))    # 各图的平均
    return metrics


def compare_resize_vs_sliding(
    model: nn.Module,
    meta: dict[str, Any],
    dataset: Any,
    *,
    train_size: int,
    indices: Sequence[int] | None = None,
    tile: int | None = None,
    overlap: float = 0.5,
    tta: bool = False,
    device: str | torch.device | None = None,
    tile_batch: int = 4,
) -> dict[str, Any]:
    """Two ways to predict an image larger than the training crops, scored at native resolution.
    两种预测大于训练尺寸图像的方法，在原始分辨率上比较

    - ``"resize"``: shrink the whole image so its longer side is ``train_size``, predict it in one pass and
      interpolate the probabilities back (what a model trained on resized images would do at test time).
      缩放：把整图缩小到长边为 train_size，一次前向后插值回原尺寸
    - ``"sliding"``: keep the native resolution the model was trained at and slide ``tile``-pixel tiles
      (default ``train_size``) with ``overlap``. 滑动窗口：保持原始分辨率，用 train_size 大小的切片滑动

    Args:
        model, meta: from :func:`unet_course.checkpoint.load_model` (or a freshly trained model and its meta).
        dataset: a labelled dataset with ``raw(i)``. 有标签的数据集
        train_size: side of the training crops in pixels. 训练裁剪的边长
        indices: held-out samples to score (default: all). 用于评分的样本
        tile, overlap, tta, device, tile_batch: sliding-window settings. 滑动窗口设置

    Returns:
        ``{"resize": evaluate-style result, "sliding": evaluate-style result, "train_size": int,
        "resize_scale": float}``; compare ``result["resize"]["metrics"]["dice"]`` with the sliding one.

    Raises:
        ConfigError: no sample to score.
    """
    chosen = list(range(len(dataset))) if indices is None else list(indices)
    if not chosen:
        raise ConfigError("compare_resize_vs_sliding needs at least one sample index.")
    height, width = dataset.raw(chosen[0])[0].shape[:2]
    base_scale = float((meta.get("preprocess") or {}).get("scale") or 1.0)
    resize_scale = min(1.0, train_size / max(height, width))         # 长边缩到训练尺寸
    resize = evaluate_dataset(model, meta, dataset, indices=chosen, scale=resize_scale, tile=0, tta=tta,
                              device=device)
    sliding = evaluate_dataset(model, meta, dataset, indices=chosen, scale=base_scale, tile=tile or train_size,
                               overlap=overlap, tta=tta, device=device, tile_batch=tile_batch)
    return {"resize": resize, "sliding": sliding, "train_size": int(train_size), "resize_scale": resize_scale}


__all__ = ["compare_resize_vs_sliding", "evaluate_dataset", "masked_target", "score_prediction"]
