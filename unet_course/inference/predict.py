"""Predict one image at its own size: the training preprocessing, whole image or tiles, flip TTA, mask values.
按原尺寸预测一张图像：训练时的预处理、整图或切片推理、翻转 TTA、还原掩码取值

Prediction uses the training preprocessing (contrast ``enhance``, ``scale``, mean/std). When ``scale != 1`` the
class probabilities are resized back with ``F.interpolate(mode="bilinear")`` *before* the decision rule, so the
mask has the input's size. 预测使用训练时的预处理；当 scale != 1 时，先把概率双线性插值回原尺寸，再取类别

Flip TTA (test-time augmentation) averages the class probabilities of the identity, horizontal, vertical and
both flips after un-flipping them. 翻转 TTA：对原图、水平、垂直和双向翻转的预测概率反翻转后求平均

The decision rule (two classes: ``p[1] >= threshold``; more classes: arg-max) is :func:`unet_course.metrics.probs_to_labels`,
the same one validation uses. 决策规则与验证时相同，由 metrics.probs_to_labels 给出

Shapes: ``image`` uint8 ``(H, W, C)``; probabilities float32 ``(K, H, W)`` with ``K >= 2`` (a binary sigmoid
model gives ``[1 - p, p]``); labels int64 ``(H, W)``; the mask holds the original mask values (``mask_values``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..data.enhance import enhance_image
from ..data.io import match_channels, read_image
from ..data.masks import indices_to_values
from ..data.transforms import preprocess_image
from ..errors import CheckpointError, DataError
from ..metrics import logits_to_probs, probs_to_labels
from ..precision import AmpPolicy, as_policy, autocast, nhwc_for_inference
from ..rules import check_scale, check_tile
from .memory import DEFAULT_MEMORY_CAP_MB, auto_tile, plan_whole_image, say_once
from .tiling import model_device, sliding_window_inference

#: Flip sets of TTA: the dims of a ``(B, K, H, W)`` tensor to flip; ``()`` is the identity. TTA 的翻转维度
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


@dataclass
class Prediction:
    """The prediction for one image. 单张图像的预测结果

    Attributes:
        probs: float32 ``(K, H, W)`` class probabilities, ``K >= 2``; they sum to 1 over ``K``. 类别概率
        labels: int64 ``(H, W)`` class indices (:func:`unet_course.metrics.probs_to_labels`). 类别索引
        mask: ``(H, W)`` the labels written as the original mask values (uint8 when they fit).
            用原始掩码取值表示的预测（能放下时为 uint8）
        model_size: ``(h, w)`` the size the network saw (after ``scale``). 网络实际看到的尺寸
        threshold: the threshold used with two classes (None for the arg-max of more classes). 使用的阈值
        mode: ``"binary"`` or ``"multiclass"``, the decision rule that made ``labels``. 决策规则
    """

    probs: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    model_size: tuple[int, int] = (0, 0)
    threshold: float | None = None
    mode: str = "multiclass"
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def foreground(self) -> np.ndarray:
        """float32 ``(H, W)`` probability of class 1 (the foreground of a binary task). 前景（类别 1）的概率"""
        return self.probs[1]


def load_image(image: Any, name: str | None = None) -> np.ndarray:
    """Bring an image to uint8 ``(H, W, C)``: a path goes through :func:`unet_course.data.io.read_image`.
    把输入统一为 uint8 (H, W, C)；路径交给 data.io.read_image 读取

    Args:
        image: a path, a PIL image, or a numpy array ``(H, W)`` / ``(H, W, C)`` (uint8, bool, or integers in
            0..255). 路径、PIL 图像或 numpy 数组
        name: how to call the image in error messages. 错误消息中使用的名称

    Returns:
        uint8 ``(H, W, C)``, a writable copy for a path.

    Raises:
        DataError: unreadable file, a tensor, or an array that is not a uint8-range image.
    """
    if isinstance(image, (str, os.PathLike)):
        return np.array(read_image(image, name), dtype=np.uint8, order="C", copy=True)   # 可写副本
    label = name or "image"
    if torch.is_tensor(image):
        raise DataError(f"{label}: got a torch tensor; predict_image wants the raw uint8 image (H, W, C) as a numpy "
                        "array (use dataset.raw(i)[0]), because it applies the training preprocessing itself.")
    if hasattr(image, "mode") and hasattr(image, "convert"):
        image = image.convert("L") if image.mode in ("1", "P") else image   # PIL：调色板/1 位图转为灰度
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]                                     # (H, W) -> (H, W, 1)
    if array.ndim != 3 or array.shape[-1] > 4 or min(array.shape[:2]) < 1:
        raise DataError(f"{label}: expected an image (H, W) or (H, W, C) with C <= 4, got shape {array.shape}.")
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255                          # False/True -> 0/255
    if array.dtype != np.uint8:
        if not (np.issubdtype(array.dtype, np.integer) and array.size and 0 <= array.min() and array.max() <= 255):
            lo, hi = (array.min(), array.max()) if array.size else (0, 0)
            raise DataError(f"{label}: expected uint8 pixel values, got {array.dtype} with range [{lo}, {hi}]; "
                            "rescale it to 0..255 first.")
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


def model_in_channels(model: nn.Module) -> int | None:
    """The channels ``model`` expects: ``model.config["in_channels"]``, else its first convolution's.
    模型期望的输入通道数：优先读 model.config，否则取第一个卷积层
    """
    config = getattr(model, "config", None)
    if isinstance(config, dict) and config.get("in_channels"):
        return int(config["in_channels"])
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return None if conv is None else int(conv.in_channels)


def _labels_to_mask(labels: np.ndarray, mask_values: Sequence[int] | None) -> np.ndarray:
    """Class indices -> original mask values (uint8 when they fit, else uint16/int32). 类别索引 -> 原始掩码取值"""
    if mask_values is None:
        return labels.astype(np.uint8) if labels.size == 0 or labels.max() <= 255 else labels
    mask = indices_to_values(labels, list(mask_values))              # (H, W) uint8 或 int32
    if mask.dtype != np.uint8 and mask.size and mask.min() >= 0 and mask.max() <= 65535:
        return mask.astype(np.uint16)
    return mask


def _logits(model: nn.Module, x: torch.Tensor, device: torch.device, policy: AmpPolicy) -> torch.Tensor:
    """One whole-image forward: ``(N, C, h, w)`` -> float32 ``(N, K, h, w)`` logits on the CPU. 一次整图前向

    Input and weights go NHWC where that is the faster format (:func:`~unet_course.precision.nhwc_for_inference`:
    bf16 on CPU, CUDA).
    在 NHWC 更快的设备与精度上把输入和权重都转为 channels_last
    """
    x = x.to(device)
    if nhwc_for_inference(model, device, policy):
        x = x.contiguous(memory_format=torch.channels_last)          # (N, C, h, w)，NHWC 内存布局
    with autocast(policy):
        return model(x).float().cpu()                                 # (N, K, h, w)


def flip_batch_probs(model: nn.Module, x: torch.Tensor, flips: Sequence[tuple[int, ...]], mode: str,
                      device: torch.device, policy: AmpPolicy) -> torch.Tensor:
    """Flip TTA in one forward pass: the flipped copies are stacked into one batch. 把各翻转拼成一个批量，一次前向"""
    b = x.shape[0]
    batch = torch.cat([x.flip(dims) if dims else x for dims in flips])   # (F*B, C, h, w) 各翻转拼成一个批量
    probs = logits_to_probs(_logits(model, batch, device, policy), mode)  # (F*B, K, h, w)
    total = torch.zeros_like(probs[:b])
    for i, dims in enumerate(flips):
        p = probs[i * b:(i + 1) * b]                                  # (B, K, h, w) 第 i 个翻转
        total += p.flip(dims) if dims else p                          # 反翻转回原方向再累加
    return total / len(flips)                                         # 各翻转的平均概率


def _auto_tile(model: nn.Module, x: torch.Tensor, n_flips: int, tile_batch: int, policy: AmpPolicy,
               max_memory_mb: float | None, device: torch.device) -> tuple[bool, int | None]:
    """``(flip_batch, tile)`` for a whole-image request: tiles only when one pass would exceed the memory cap.
    整图请求的执行方式：只有超过内存上限时才改为切片

    The flips are stacked into one batch only on CUDA, where a larger batch fills the GPU. On the CPU a batch of
    four DRIVE-sized images runs slower than four passes (1.7x slower for a base-32 U-Net, 2.5x for base 64, on the
    2-core CPU of this project's README; ``unet-course bench --predict`` reports it as ``tta_batch_speedup``), so
    the flips go one at a time there.
    只在 CUDA 上把翻转拼成一个批量；CPU 上四张图的批量比四次前向更慢，因此逐个翻转
    """
    value_bytes = 2 if policy.enabled else 4                          # 16 位 autocast 时每个激活 2 字节
    height, width = int(x.shape[-2]), int(x.shape[-1])
    plan = plan_whole_image(model, int(x.shape[0]), height, width, n_flips, value_bytes, max_memory_mb)
    if not plan["tiles"]:
        return plan["flip_batch"] and device.type == "cuda", None
    assert max_memory_mb is not None
    tile = min(auto_tile(model, tile_batch, value_bytes, max_memory_mb), max(height, width))
    say_once("auto-tile", f"A whole {width}x{height} image needs about {plan['estimate_mb']:.0f} MiB for one forward "
                          f"pass, more than the {max_memory_mb:.0f} MiB cap; predicting in {tile}x{tile} tiles instead "
                          "(choose with tile=/--tile, or raise max_memory_mb=/--max-memory-mb). 图像过大，自动改为切片推理")
    return False, tile


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    x: torch.Tensor,
    *,
    mode: str = "multiclass",
    tile: int | Sequence[int] | None = None,
    overlap: float = 0.25,
    tile_batch: int = 4,
    blend: str = "gaussian",
    tta: bool = False,
    device: str | torch.device | None = None,
    amp: str | AmpPolicy | None = "auto",
    max_memory_mb: float | None = DEFAULT_MEMORY_CAP_MB,
) -> torch.Tensor:
    """Class probabilities for a preprocessed batch, whole image or tiled, optionally with flip TTA.
    对已预处理的批量计算类别概率（整图或切片，可选翻转 TTA）

    Whole image (``tile=None``): with TTA on CUDA the four flipped copies go through the network as one batch of
    ``4B`` when the estimate of :func:`~unet_course.inference.memory.estimate_forward_mb` fits ``max_memory_mb``;
    on the CPU (where that batch is slower), or when only one copy fits, one flip at a time; in tiles (said once,
    with a warning) when not even one fits.
    整图时：CUDA 上 TTA 的四个翻转在内存允许时拼成一个批量一次前向；CPU 上（批量更慢）或只放得下一个时逐个前向；
    一个都放不下时自动切片并提示一次

    Args:
        model: the network (the caller sets eval mode). 网络
        x: ``(B, C, h, w)`` preprocessed images. 已预处理的图像
        mode, tile, overlap, tile_batch, blend, device, amp: as in :func:`predict_image` (``tile`` 0 or None: the
            whole image).
        tta: average over the four flips (identity, horizontal, vertical, both). 四种翻转取平均
        max_memory_mb: cap on the estimated memory of a whole-image pass; None: no cap. 整图推理的内存上限

    Returns:
        float32 ``(B, K, h, w)`` probabilities on the CPU, ``K >= 2``.
    """
    device = torch.device(device) if device is not None else model_device(model)
    policy = as_policy(amp, device)                                   # "auto" 与训练时含义相同
    flips = TTA_FLIPS if tta else TTA_FLIPS[:1]
    tile = tile or None                                               # 0 与 None 都表示整图
    if tile is not None:
        check_tile(tile, getattr(model, "depth", None))               # 小于 2**depth 的切片只会增加计算
    if tile is None:
        flip_batch, tile = _auto_tile(model, x, len(flips), tile_batch, policy, max_memory_mb, device)
        if flip_batch:
            return flip_batch_probs(model, x, flips, mode, device, policy)
    total: torch.Tensor | None = None
    for dims in flips:
        xi = x.flip(dims) if dims else x                              # 翻转输入
        if tile is None:
            logits = _logits(model, xi, device, policy)               # (B, K, h, w) 整图一次前向
        else:
            logits = sliding_window_inference(model, xi, tile, overlap, tile_batch, blend, device, policy)
        p = logits_to_probs(logits, mode)                             # (B, K, h, w)
        p = p.flip(dims) if dims else p                               # 反翻转回原方向
        total = p if total is None else total + p
    assert total is not None
    return total / len(flips)                                         # 各翻转的平均概率


def _prepare(model: nn.Module, image: Any, label: str, enhance: str) -> np.ndarray:
    """Load, enhance and match the channels of one image: uint8 ``(H, W, C_model)``. 读取、增强并对齐通道"""
    img = load_image(image, name=label)                               # (H, W, C) uint8
    if enhance != "none":
        img = enhance_image(img, enhance, label)                      # (H, W, 1) CLAHE 等对比度增强
    want = model_in_channels(model)
    try:
        return match_channels(img, want, label)                       # 灰度 -> RGB 与训练时相同；其余不一致报错
    except DataError:                                                 # 预测时的补救办法与训练时不同
        raise DataError(
            f"Image {label!r} has {img.shape[2]} channel(s) but the model expects {want} (it was trained on "
            f"{'grayscale' if want == 1 else 'RGB'} images). Convert the image, or use a model trained on "
            f"{img.shape[2]}-channel images."
        ) from None


def network_input(model: nn.Module, image: Any, *, mean: Sequence[float], std: Sequence[float],
                  scale: float = 1.0, enhance: str = "none",
                  name: str = "image") -> tuple[torch.Tensor, tuple[int, int]]:
    """The tensor the network sees for one raw image, exactly as :func:`predict_image` builds it.
    一张原始图像对应的网络输入，与 predict_image 的构造完全相同

    Steps: load -> ``enhance`` (e.g. green channel + CLAHE) -> channels matched to the model -> resize by
    ``scale`` -> ``(x / 255 - mean) / std``.

    Returns:
        float32 ``(1, C, h, w)`` and the raw image's ``(H, W)``.

    Raises:
        DataError: unreadable image or channels that do not fit the model. ConfigError: a bad ``scale``.
    """
    img = _prepare(model, image, name, enhance)                       # (H, W, C) uint8
    x = torch.as_tensor(preprocess_image(img, mean, std, check_scale(scale)), dtype=torch.float32)
    return x, (int(img.shape[0]), int(img.shape[1]))                  # (1, C, h, w), (H, W)


def _forward(model: nn.Module, x: torch.Tensor, device: str | torch.device | None,
             options: dict[str, Any]) -> torch.Tensor:
    """:func:`predict_probs` in eval mode; the model's train/eval mode is restored. 在 eval 模式下推理"""
    if device is not None:
        model.to(torch.device(device))
    was_training = model.training
    model.eval()
    try:
        return predict_probs(model, x, device=device, **options)      # (1, K, h, w)
    finally:
        model.train(was_training)


def predict_image(
    model: nn.Module,
    image: Any,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    scale: float = 1.0,
    mode: str = "multiclass",
    threshold: float = 0.5,
    mask_values: Sequence[int] | None = None,
    tile: int | Sequence[int] | None = None,
    tta: bool = False,
    overlap: float = 0.25,
    tile_batch: int = 4,
    blend: str = "gaussian",
    max_memory_mb: float | None = DEFAULT_MEMORY_CAP_MB,
    device: str | torch.device | None = None,
    amp: str | AmpPolicy | None = "auto",
    resize_back: bool = True,
    name: str | None = None,
    enhance: str = "none",
) -> Prediction:
    """Predict one raw image with the training preprocessing, at the image's own size.
    用训练时的预处理预测一张原始图像，输出与输入同尺寸

    Steps: uint8 ``(H, W, C)`` -> ``enhance`` -> channels matched -> ``preprocess_image`` (``scale``, mean/std)
    ``(1, C, h, w)`` -> logits (whole image or sliding window) -> probabilities (TTA averages them) -> bilinear
    resize back to ``(H, W)`` -> decision rule -> mask values.
    步骤：增强 -> 对齐通道 -> 预处理 -> 整图或滑动窗口推理 -> 概率 -> 插值回原尺寸 -> 决策规则 -> 掩码取值

    Args:
        model: a segmentation network; put in eval mode (its mode is restored afterwards). 分割网络
        image: uint8 ``(H, W, C)`` / ``(H, W)`` numpy array, a PIL image, or a path. 原始图像
        mean, std: normalisation of the training data (``meta["normalization"]``). 归一化参数
        scale: training resize factor in ``(0, 4]`` (``meta["preprocess"]["scale"]``). 训练时的缩放比例
        mode: ``"binary"`` (1-channel sigmoid model) or ``"multiclass"`` (softmax). 模式
        threshold: foreground threshold (``p[1] >= threshold``) with two classes; unused for more. 两类时的阈值
        mask_values: ``meta["mask_values"]``; class ``i`` is written as ``mask_values[i]``. None -> indices.
        tile: ``None`` for one whole-image pass, else the sliding-window tile size. None 表示整图推理
        tta: flip test-time augmentation. 翻转测试时增强
        overlap, tile_batch, blend: sliding-window settings (:func:`sliding_window_inference`). 滑动窗口设置
        max_memory_mb: estimated MiB above which a whole image is tiled (:mod:`.memory`); None: never. 内存上限
        device: where the network runs; default: the model's device. 推理设备
        amp: a mode of :func:`unet_course.precision.amp_policy` or an ``AmpPolicy``. 混合精度
        resize_back: interpolate the probabilities back to ``(H, W)`` (default); ``False`` keeps ``(h, w)``,
            which shows why the step is needed when ``scale != 1``. 是否插值回原尺寸
        name: how to call the image in error messages. 错误消息中的图像名称
        enhance: the training's contrast enhancement (``meta["preprocess"]["enhance"]``). 对比度增强

    Returns:
        :class:`Prediction` with ``probs`` ``(K, H, W)``, ``labels`` ``(H, W)``, ``mask`` ``(H, W)``.

    Raises:
        DataError: unreadable image, or channels that do not fit the model (a gray image for an RGB model is
            repeated, as in training; see :func:`unet_course.data.io.match_channels`).
        ConfigError: a bad scale, threshold, tiling, amp or mode setting.

    Example::

        pred = predict_image(model, "01_test.tif", **settings_from_meta(meta), tile=256)
        pred.mask.shape        # (584, 565), values {0, 255}
    """
    label = name or (str(image) if isinstance(image, (str, os.PathLike)) else "image")
    x, (height, width) = network_input(model, image, mean=mean, std=std, scale=scale, enhance=enhance, name=label)
    options = dict(mode=mode, tile=tile, overlap=overlap, tile_batch=tile_batch, blend=blend, tta=tta, amp=amp,
                   max_memory_mb=max_memory_mb)
    probs = _forward(model, x, device, options)                       # (1, K, h, w)
    model_size = (int(x.shape[-2]), int(x.shape[-1]))
    if resize_back and model_size != (height, width):
        # probabilities first, decision after: bilinear is a convex mix, so they still sum to 1
        # 先插值概率再取类别：双线性插值是凸组合，概率之和仍为 1
        probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
    probs_np = probs[0].numpy().astype(np.float32, copy=False)        # (K, H, W)
    labels = probs_to_labels(probs_np, mode, threshold).numpy()       # (H, W) int64 与验证同一条规则
    return Prediction(probs=probs_np, labels=labels, mask=_labels_to_mask(labels, mask_values),
                      model_size=model_size, threshold=float(threshold) if probs_np.shape[-3] == 2 else None, mode=mode)


def _predict_defaults(meta: dict[str, Any]) -> dict[str, Any]:
    """How the checkpoint says to predict: ``{"tile", "tta"}`` from ``preprocess`` or ``train_config``.
    检查点记录的预测方式：切片大小与是否使用 TTA

    New checkpoints store ``predict_tile`` / ``predict_tta`` in ``train_config`` (the whole
    :class:`~unet_course.config.TrainConfig`); older ones lack them and get the TrainConfig defaults.
    新检查点在 train_config 中保存这两个字段；旧检查点没有时使用 TrainConfig 的默认值
    """
    pre = meta.get("preprocess") or {}
    train_cfg = meta.get("train_config") or {}
    fields = TrainConfig.__dataclass_fields__
    tile = pre.get("predict_tile", train_cfg.get("predict_tile", fields["predict_tile"].default))
    tta = pre.get("predict_tta", train_cfg.get("predict_tta", fields["predict_tta"].default))
    return {"tile": None if tile is None else int(tile), "tta": bool(tta)}


def settings_from_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`predict_image` stored in a checkpoint's ``meta``.
    从检查点 meta 中取出 predict_image 需要的参数

    Returns:
        ``{"mean", "std", "scale", "mode", "threshold", "mask_values", "enhance", "tile", "tta"}``; ``tile`` and
        ``tta`` are the checkpoint's prediction defaults (``TrainConfig.predict_tile`` / ``predict_tta``; a
        checkpoint without them: whole image, no TTA). 最后两项是检查点记录的预测方式

    Raises:
        CheckpointError: ``normalization`` or ``mask_values`` is missing.

    >>> settings = settings_from_meta({"normalization": {"mean": [0.5], "std": [0.2]}, "mask_values": [0, 255]})
    >>> settings["mode"], settings["tile"], settings["tta"]
    ('multiclass', None, False)
    """
    norm = meta.get("normalization") or {}
    if "mean" not in norm or "std" not in norm:
        raise CheckpointError("The checkpoint has no normalization {mean, std}; it cannot be used for prediction.")
    if not meta.get("mask_values"):
        raise CheckpointError("The checkpoint has no mask_values; it cannot map classes back to mask values.")
    pre = meta.get("preprocess") or {}
    threshold = pre.get("threshold")
    return {
        "mean": list(norm["mean"]),
        "std": list(norm["std"]),
        "scale": float(pre.get("scale") or 1.0),
        "mode": pre.get("mode") or "multiclass",
        "threshold": 0.5 if threshold is None else float(threshold),
        "mask_values": list(meta["mask_values"]),
        "enhance": pre.get("enhance") or "none",
        **_predict_defaults(meta),
    }


def predict_with_meta(model: nn.Module, meta: dict[str, Any], image: Any, **overrides: Any) -> Prediction:
    """:func:`predict_image` with the preprocessing read from a checkpoint's ``meta``.
    使用检查点 meta 中的预处理参数调用 predict_image

    ``overrides`` replace any keyword (``tile=256``, ``tta=True``, ``scale=0.5``, ``threshold=0.4``); a value of
    ``None`` for ``scale`` / ``threshold`` / ``mode`` keeps the checkpoint's. 传入的关键字参数覆盖 meta 中的设置
    """
    settings = settings_from_meta(meta)
    settings.update({k: v for k, v in overrides.items() if not (k in ("scale", "threshold", "mode") and v is None)})
    return predict_image(model, image, **settings)


__all__ = ["Prediction", "TTA_FLIPS", "load_image", "model_in_channels", "predict_image", "predict_probs",
           "predict_with_meta", "settings_from_meta"]
