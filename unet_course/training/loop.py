"""One *轮*（epoch）of training and one pass of evaluation: the loop that lesson 04 shows line by line.
一轮训练与一次评估：第 04 课逐行讲解的训练循环

A training step, in order (after nanoGPT's ``train.py``): forward under autocast, the loss in float32,
``zero_grad``, ``scaler.scale(loss).backward()``, ``scaler.unscale_``, gradient clipping, ``scaler.step`` and
``scaler.update``. The three scaler calls run every step with no branch on whether *损失缩放*（loss scaling）is on:
a disabled :class:`torch.amp.GradScaler` passes everything through (``scale`` returns the loss itself, ``step``
calls ``optimizer.step()``), so the same lines serve fp32, bf16 and fp16.
训练一步的顺序：autocast 下前向、fp32 计算损失、清零梯度、缩放后反向、还原梯度、裁剪、更新参数、更新缩放因子；
三个 scaler 调用每步都执行、不做分支：未启用的 GradScaler 原样透传

A NaN/Inf loss, or a NaN/Inf gradient norm when no scaler is active, raises
:class:`~unet_course.errors.NonFiniteLossError` before the optimiser step, so the weights (and every checkpoint
written afterwards) stay finite. With an active fp16 scaler an Inf gradient is normal: the scaler skips that step
and lowers its scale.
损失为 NaN/Inf（或未启用缩放时梯度范数为 NaN/Inf）会在参数更新之前报错，权重始终有限；
启用 fp16 缩放时出现 Inf 梯度是正常的：缩放器会跳过该步并减小缩放因子
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import distributed
from ..errors import NonFiniteLossError
from ..metrics import ConfusionMatrix, logits_to_labels
from ..precision import AmpPolicy, amp_policy, autocast, make_scaler
from ..progress import progress_bar
from ..tracking import Tracker

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def batch_to(batch: dict[str, Any], device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch to ``device``: images ``(B, C, H, W)`` float, masks ``(B, H, W)`` int64.
    把一个批量移到设备上
    """
    images = batch["image"].to(device, non_blocking=True)                  # (B, C, H, W)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)      # NHWC 内存布局
    targets = batch["mask"].to(device, non_blocking=True).long()           # (B, H, W)
    return images, targets


def _progress(total: int | None, epoch: int, epochs: int | None, show: bool) -> Any:
    """The per-step progress bar (a silent no-op bar when ``show`` is False). 每步的进度条（不显示时为空操作）

    :func:`unet_course.progress.progress_bar` leaves no dead widget view in a saved notebook. 不会在保存的 notebook
    中留下失效的控件
    """
    desc = f"Epoch {epoch}/{epochs}" if epochs else f"Epoch {epoch}"
    return progress_bar(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                        mode="auto" if show else "off")


def _non_finite(what: str, value: float, epoch: int, step: int, global_step: int) -> NonFiniteLossError:
    return NonFiniteLossError(
        f"Non-finite {what} ({value}) at epoch {epoch}, step {step} (global step {global_step}); training stopped "
        "and the last good checkpoint is kept. Try: a lower learning rate (e.g. --lr divided by 10), "
        "--amp off or --amp bf16 instead of fp16, gradient clipping (--grad-clip 1.0), and check the inputs for "
        "NaN/Inf values. Then continue from the last good checkpoint with the new values, e.g. "
        "`unet-course train --resume last --lr 0.0003` (flags given with --resume override the saved settings)."
    )


def train_one_epoch(model: nn.Module, loader: Iterable[dict[str, Any]], optimizer: torch.optim.Optimizer,
                    loss_fn: LossFn, device: torch.device, policy: AmpPolicy | None = None,
                    scaler: torch.amp.GradScaler | None = None, *, epoch: int = 1, epochs: int | None = None,
                    grad_clip: float | None = None, max_steps: int | None = None, channels_last: bool = False,
                    global_step: int = 0, progress: str = "none", tracker: Tracker | None = None,
                    log_every: int = 10) -> dict[str, Any]:
    """Train ``model`` for one pass over ``loader``.
    在 loader 上训练一轮

    Args:
        model: the network (plain or DDP-wrapped). 网络（可为 DDP 包装）
        loader: yields dicts with ``"image"`` ``(B, C, H, W)`` float and ``"mask"`` ``(B, H, W)`` int64.
        optimizer: the optimiser. 优化器
        loss_fn: ``loss_fn(logits, target) -> scalar``. 损失函数
        device: where to compute. 计算设备
        policy: an :class:`~unet_course.precision.AmpPolicy` (None: full precision). 混合精度策略
        scaler: a :class:`torch.amp.GradScaler` (None: a disabled one from :func:`make_scaler`). 梯度缩放器
        epoch, epochs: for messages and the progress bar (1-based). 当前轮次与总轮数
        grad_clip: max gradient norm (None: no clipping; the norm is still checked for NaN/Inf). 最大梯度范数
        max_steps: stop after this many steps (smoke tests). 最多执行的步数
        channels_last: convert inputs to NHWC. 输入转为 NHWC
        global_step: optimiser steps taken before this epoch. 本轮之前的总步数
        progress: ``"bar"`` (tqdm), ``"line"``/``"none"`` (no per-step output). 进度显示方式
        tracker: logs ``train/loss`` and ``train/lr`` every ``log_every`` steps (and at step 1). 实验记录器

    Returns:
        ``{"loss": mean loss over all ranks, "steps": steps, "global_step": new global step, "samples": n}``.

    Raises:
        NonFiniteLossError: the loss (or, without an active scaler, the gradient norm) is NaN/Inf; raised before
            the optimiser step, so the weights stay finite.
    """
    policy = policy if policy is not None else amp_policy(device, "off")  # None：全精度
    scaler = scaler if scaler is not None else make_scaler(policy)        # 未启用的缩放器原样透传
    max_norm = float(grad_clip) if grad_clip else math.inf                # 不裁剪时仍计算范数以检查 NaN/Inf
    total = len(loader) if hasattr(loader, "__len__") else None
    if max_steps is not None and total is not None:
        total = min(total, max_steps)
    model.train()                                                         # BN 使用批量统计量，dropout 打开
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)        # 按样本加权的损失和
    n_samples, steps = 0, 0
    with _progress(total, epoch, epochs, show=progress == "bar") as bar:
        for step, batch in enumerate(loader, start=1):
            if max_steps is not None and step > max_steps:
                break
            images, targets = batch_to(batch, device, channels_last)      # (B, C, H, W), (B, H, W)
            with autocast(policy):                                        # 卷积以 16 位计算（若启用）
                logits = model(images)                                    # (B, K, H, W) 或二分类 (B, 1, H, W)
            loss = loss_fn(logits.float(), targets)                       # 损失始终以 fp32 计算
            value = float(loss.detach())                                  # Python 浮点数，用于检查与记录
            if distributed.any_rank(not math.isfinite(value), device):    # 任一进程出现 NaN/Inf 则全部停止
                raise _non_finite("loss", value, epoch, step, global_step + 1)
            optimizer.zero_grad(set_to_none=True)                         # 清除上一步的梯度
            scaler.scale(loss).backward()                                 # 放大损失再反向，防止 fp16 梯度下溢
            scaler.unscale_(optimizer)                                    # 除回缩放因子，得到真实梯度
            norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)  # 总梯度范数；超过上限时按比例缩小
            if not scaler.is_enabled() and not bool(torch.isfinite(norm)):  # 有缩放器时 Inf 梯度由其跳过
                raise _non_finite("gradient norm", float(norm), epoch, step, global_step + 1)
            scaler.step(optimizer)                                        # 梯度有限时才执行 optimizer.step()
            scaler.update()                                               # 调整下一步的缩放因子
            global_step += 1
            steps += 1
            loss_sum += value * images.shape[0]                           # 本批损失 × 批量大小
            n_samples += images.shape[0]
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}")
            if tracker is not None and (global_step % log_every == 0 or step == 1):
                tracker.log({"train/loss": value, "train/lr": optimizer.param_groups[0]["lr"], "epoch": epoch},
                            step=global_step)
    counts = torch.tensor([float(n_samples)], dtype=torch.float64, device=device)
    distributed.all_reduce_sum(loss_sum)                                  # 多进程时汇总所有进程的损失
    distributed.all_reduce_sum(counts)
    mean_loss = float(loss_sum / counts.clamp_min(1)) if counts.item() > 0 else float("nan")
    return {"loss": mean_loss, "steps": steps, "global_step": global_step, "samples": int(counts.item())}


def evaluate(model: nn.Module, loader: Iterable[dict[str, Any]], loss_fn: LossFn | None, device: torch.device,
             policy: AmpPolicy | None = None, n_classes: int = 2, mode: str = "multiclass", threshold: float = 0.5,
             ignore_index: int = 255, *, channels_last: bool = False, max_steps: int | None = None) -> dict[str, Any]:
    """Score ``model`` on ``loader``: loss and confusion-matrix metrics.
    在 loader 上评估模型：损失与基于混淆矩阵的指标

    Runs under ``torch.inference_mode()`` with the model in eval mode (BatchNorm uses its running statistics),
    then puts the model back in the train/eval mode it was in. In a distributed job the confusion matrix and loss
    sums are added over ranks, so every rank returns the metrics of the whole validation set.
    在 inference_mode 与 eval 模式下运行，结束后恢复原来的 train/eval 模式；分布式时汇总所有进程

    Args:
        model: the network (plain or DDP-wrapped). 网络
        loader: yields ``{"image": (B, C, H, W), "mask": (B, H, W)}``. 数据
        loss_fn: ``loss_fn(logits, target)``, or None to skip the loss. 损失函数（可为 None）
        device: where to compute. 计算设备
        policy: AMP policy or None (full precision). 混合精度策略
        n_classes: number of classes ``K`` (2 in binary mode). 类别数
        mode: ``"multiclass"`` (argmax) or ``"binary"`` (sigmoid >= ``threshold``). 模式
        threshold: binary decision threshold. 二分类阈值
        ignore_index: label never scored. 忽略的标签
        channels_last: NHWC inputs. 使用 NHWC
        max_steps: stop after this many batches. 最多评估的批次数

    Returns:
        :meth:`ConfusionMatrix.compute` metrics (``dice``, ``mean_dice``, ``pixel_accuracy``, per-class lists, ...)
        plus ``loss`` (NaN when ``loss_fn`` is None) and ``n_images``.
    """
    policy = policy if policy is not None else amp_policy(device, "off")
    net = model.module if isinstance(model, DistributedDataParallel) else model  # 评估时不经过 DDP 的同步
    was_training = model.training
    model.eval()                                                          # BN 使用运行统计量
    cm = ConfusionMatrix(n_classes, ignore_index=ignore_index, device=device)  # (K, K) 混淆矩阵
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_images = 0
    try:
        with torch.inference_mode():                                      # 不记录计算图，也不允许原地修改
            for step, batch in enumerate(loader, start=1):
                if max_steps is not None and step > max_steps:
                    break
                images, targets = batch_to(batch, device, channels_last)  # (B, C, H, W), (B, H, W)
                with autocast(policy):
                    logits = net(images).float()                          # (B, K, H, W)，转回 fp32
                if loss_fn is not None:
                    loss_sum += float(loss_fn(logits, targets)) * images.shape[0]
                preds = logits_to_labels(logits, mode=mode, threshold=threshold)  # (B, H, W) 类别索引
                cm.update(preds, targets)                                 # 累加到混淆矩阵
                n_images += images.shape[0]
    finally:
        model.train(was_training)                                         # 恢复原来的模式
    if distributed.is_distributed():
        distributed.all_reduce_sum(cm.matrix)                             # 各进程的混淆矩阵求和
        counts = torch.tensor([float(n_images)], dtype=torch.float64, device=device)
        distributed.all_reduce_sum(loss_sum)
        distributed.all_reduce_sum(counts)
        n_images = int(counts.item())
    metrics = dict(cm.compute())
    metrics["loss"] = float(loss_sum) / n_images if (loss_fn is not None and n_images) else float("nan")
    metrics["n_images"] = n_images
    return metrics
