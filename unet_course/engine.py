"""The training engine: one epoch of training, one pass of evaluation, and ``fit`` that repeats them.
训练引擎：一轮训练、一次评估，以及反复执行二者的 fit

``fit(cfg)`` is everything ``unet-course train`` does, in the order a reader would write it by hand:
fit(cfg) 就是 unet-course train 所做的全部工作，顺序与手写训练循环一致：

1. seed, pick the device, join a process group if ``torchrun`` started us; 设种子、选设备、（torchrun 时）加入进程组
2. build the loaders (:func:`unet_course.data.build_loaders`), the :class:`~unet_course.model.UNet`, the loss, the
   optimiser (:func:`build_optimizer`), the *学习率调度器*（learning rate scheduler, :func:`build_scheduler`) and
   the *混合精度*（mixed precision）policy (:mod:`unet_course.precision`); 构建数据、模型、损失、优化器、调度器与精度策略
3. optionally resume from a *检查点*（checkpoint）: weights, optimiser, scheduler, loss scaler, RNG, epoch, history;
   可选：从检查点恢复全部训练状态
4. per *轮*（epoch）: :func:`train_one_epoch`, :func:`evaluate` on the validation split, a scheduler step on the
   validation Dice, then ``last.pt`` / ``best.pt`` / ``history.json``; 每轮：训练、验证、调度、保存
5. ``metrics.json`` with config, data, hardware, wall time and the final and best metrics.
   最后写出 metrics.json

Two habits make runs trustworthy. A NaN/Inf loss stops training at once with :class:`NonFiniteLossError`; a
checkpoint is never written with broken weights, so the last good ``last.pt`` survives. Each epoch also reseeds
every random generator from ``(seed, epoch)``, which makes ``--resume`` bit-exact on CPU.
两个习惯让训练可信：出现 NaN/Inf 损失立即停止（绝不保存坏权重，上一个 last.pt 保留）；
每轮按 (seed, epoch) 重新设定随机种子，使 CPU 上的续训结果逐位一致
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from . import distributed
from .checkpoint import (
    FORMAT_VERSION,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)
from .config import OPTIMIZERS, SCHEDULERS, TrainConfig
from .env import (
    cpu_info,
    default_out_dir,
    in_notebook,
    is_interactive,
    pick_device,
    seed_everything,
)
from .errors import CheckpointError, ConfigError, NonFiniteLossError
from .files import ensure_writable_dir
from .tracking import Tracker

logger = logging.getLogger("unet_course")

#: The score that picks ``best.pt`` and drives ``ReduceLROnPlateau``. 选择 best.pt 与驱动调度器的指标
MONITOR = "dice"


# ----------------------------------------------------------------------------------------------------------------
# Logging 日志
# ----------------------------------------------------------------------------------------------------------------
class _ConsoleHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout``/``sys.stderr`` is *now* (Jupyter and pytest swap them).
    始终写入当前的 sys.stdout/sys.stderr（Jupyter 与 pytest 会替换它们）
    """

    def __init__(self, use_stdout: bool) -> None:
        self._use_stdout = use_stdout
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout if self._use_stdout else sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ 会赋值，这里忽略
        pass


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    """Make ``unet_course`` log lines visible in a terminal, the CLI and notebooks (idempotent).
    让 unet_course 的日志在终端、命令行与 notebook 中可见（可重复调用）

    Adds one console handler to the ``"unet_course"`` logger unless it or the root logger already has one
    (e.g. the user called ``logging.basicConfig``). In Jupyter the lines go to stdout (plain output cells); in a
    terminal they go to stderr, so ``unet-course evaluate > metrics.json`` stays clean.
    若 unet_course 或根日志器尚无处理器，则添加一个；Jupyter 中写 stdout，终端中写 stderr

    Returns:
        The ``"unet_course"`` logger.
    """
    log = logging.getLogger("unet_course")
    if log.level == logging.NOTSET:          # 尊重用户自己设置的级别
        log.setLevel(level)
    has_own = any(isinstance(h, _ConsoleHandler) for h in log.handlers)
    if not has_own and not log.handlers and not logging.getLogger().handlers:
        handler = _ConsoleHandler(use_stdout=in_notebook())
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False       # 避免用户之后调用 basicConfig 时重复输出
    return log


# ----------------------------------------------------------------------------------------------------------------
# History 训练历史
# ----------------------------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """JSON-safe copy: tensors/arrays to lists, NaN/Inf to None. 转为可写入 JSON 的基本类型"""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _plain(value.tolist())
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class History:
    """What happened in each epoch, plus where the results are.
    每一轮发生了什么，以及结果保存在哪里

    Attributes:
        epoch: 1-based epoch numbers. 轮次（从 1 开始）
        train_loss, val_loss, val_dice: one float per epoch (``None`` when there is no validation split).
        val_metrics: one dict per epoch from :meth:`~unet_course.metrics.ConfusionMatrix.compute` (plus ``loss``).
        lr: learning rate used in each epoch. 每轮使用的学习率
        epoch_time: seconds per epoch (training + validation). 每轮耗时（秒）
        best_metric, best_epoch: best validation Dice so far and its epoch. 目前最好的验证 Dice 及其轮次
        global_step: optimiser steps taken. 已执行的优化步数
        out_dir, last_checkpoint, best_checkpoint: output folder and checkpoint paths (str). 输出目录与检查点路径
        wall_time: seconds spent in ``fit`` (summed over resumed runs). fit 总耗时
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_dice: list[float | None] = field(default_factory=list)
    val_metrics: list[dict[str, Any]] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int | None = None
    global_step: int = 0
    out_dir: str | None = None
    last_checkpoint: str | None = None
    best_checkpoint: str | None = None
    wall_time: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-safe dict (also stored inside checkpoints). 转为基本类型字典（也存入检查点）"""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> History:
        """Rebuild from :meth:`to_dict` output (unknown keys ignored). 从 to_dict 的结果重建"""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in names})

    @property
    def last(self) -> dict[str, Any]:
        """The last epoch's record as one dict. 最后一轮的记录"""
        if not self.epoch:
            return {}
        return {"epoch": self.epoch[-1], "train_loss": self.train_loss[-1], "val_loss": self.val_loss[-1],
                "val_dice": self.val_dice[-1], "lr": self.lr[-1], "epoch_time": self.epoch_time[-1]}


# ----------------------------------------------------------------------------------------------------------------
# Builders 构建函数
# ----------------------------------------------------------------------------------------------------------------
def build_optimizer(params: Iterable[nn.Parameter] | nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.optimizer``.
    按 cfg.optimizer 构建优化器

    Args:
        params: a model or its parameters. 模型或其参数
        cfg: uses ``optimizer`` (``adam`` | ``adamw`` | ``rmsprop`` | ``sgd``), ``lr``, ``weight_decay``,
            ``momentum`` (RMSprop/SGD). 使用的字段

    Raises:
        ConfigError: an unknown optimiser name (the message lists the allowed ones).

    >>> opt = build_optimizer(nn.Linear(2, 2), TrainConfig(optimizer="sgd", lr=0.1))
    >>> type(opt).__name__, opt.param_groups[0]["lr"]
    ('SGD', 0.1)
    """
    if isinstance(params, nn.Module):
        params = params.parameters()
    params = [p for p in params if p.requires_grad]
    name = str(cfg.optimizer).lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                               nesterov=cfg.momentum > 0)
    raise ConfigError(f"Unknown optimizer {cfg.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}.")


def lr_factor(epoch: int, epochs: int, kind: str, warmup_epochs: int = 0, power: float = 0.9) -> float:
    """Multiplier of the base LR in ``epoch`` (0-based) for the cosine and poly schedules.
    cosine 与 poly 调度在第 epoch 轮（从 0 计）的学习率倍数

    Warm-up rises linearly over ``warmup_epochs``; then cosine falls as ``(1 + cos(pi t)) / 2`` and poly as
    ``(1 - t) ** power`` with ``t`` the fraction of the remaining epochs already done.
    先线性预热，然后按余弦或多项式下降

    >>> [round(lr_factor(e, 4, "poly"), 3) for e in range(4)]
    [1.0, 0.772, 0.536, 0.287]
    """
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    t = (epoch - warmup_epochs) / max(1, epochs - warmup_epochs)
    t = min(max(t, 0.0), 1.0)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    return (1.0 - t) ** power


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    """The learning rate scheduler named by ``cfg.scheduler``; stepped once per epoch.
    按 cfg.scheduler 构建学习率调度器，每轮调用一次

    - ``plateau``: ``ReduceLROnPlateau(mode="max")`` on the validation Dice, cut by ``plateau_factor`` after
      ``plateau_patience`` epochs without improvement (call ``step(dice)``); 验证 Dice 停止上升时降低学习率
    - ``cosine`` / ``poly``: :func:`lr_factor` with ``warmup_epochs`` (call ``step()``); 余弦或多项式衰减（带预热）
    - ``none``: returns None. 不使用调度器

    Raises:
        ConfigError: an unknown scheduler name (the message lists the allowed ones).
    """
    name = str(cfg.scheduler).lower()
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=1e-7)
    if name in ("cosine", "poly"):
        epochs, warmup = int(cfg.epochs), int(cfg.warmup_epochs)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, epochs, name, warmup))
    if name == "none":
        return None
    raise ConfigError(f"Unknown scheduler {cfg.scheduler!r}; choose one of: {', '.join(SCHEDULERS)}.")


def step_scheduler(scheduler: Any, val_score: float | None) -> None:
    """Advance the scheduler by one epoch (``ReduceLROnPlateau`` needs the validation score).
    调度器前进一轮（ReduceLROnPlateau 需要验证指标）
    """
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if val_score is not None and math.isfinite(val_score):
            scheduler.step(val_score)
    else:
        scheduler.step()


def _out_channels(mode: str, n_classes: int) -> int:
    """Model output channels: ``K`` for multiclass, 1 for binary. 模型输出通道数"""
    return 1 if mode == "binary" else n_classes


# ----------------------------------------------------------------------------------------------------------------
# Determinism 确定性
# ----------------------------------------------------------------------------------------------------------------
def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 32-bit seed derived from ``(seed, epoch, rank)``. 由 (seed, epoch, rank) 派生的 32 位种子"""
    return int(np.random.SeedSequence([int(seed) % 2**32, int(epoch), int(rank)]).generate_state(1)[0])


def reseed_epoch(loader: DataLoader | None, seed: int, epoch: int, rank: int = 0) -> int:
    """Reseed Python, NumPy, torch and the loader's shuffle generator at the start of an epoch.
    每轮开始时重设 Python、NumPy、torch 以及数据加载器打乱顺序所用的随机数发生器

    The shuffle order, the augmentations and the worker seeds of epoch ``e`` then depend only on
    ``(seed, e)``, not on what ran before, so a run resumed at epoch ``e`` replays it exactly.
    第 e 轮的打乱顺序、数据增强与工作进程种子只取决于 (seed, e)，因此从第 e 轮续训能精确重现
    """
    s = epoch_seed(seed, epoch, rank)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)                      # 同时设置所有 CUDA 设备
    if loader is not None:
        generators = {id(g): g for g in (getattr(loader, "generator", None),
                                         getattr(getattr(loader, "sampler", None), "generator", None))
                      if isinstance(g, torch.Generator)}
        for g in generators.values():
            g.manual_seed(s)
        distributed.set_epoch(loader, epoch)  # DistributedSampler 按 seed + epoch 打乱
    return s


# ----------------------------------------------------------------------------------------------------------------
# One epoch 一轮
# ----------------------------------------------------------------------------------------------------------------
def _batch_to(batch: dict[str, Any], device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images = batch["image"].to(device, non_blocking=True)                  # (B, C, H, W)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)      # NHWC 内存布局
    targets = batch["mask"].to(device, non_blocking=True).long()           # (B, H, W)
    return images, targets


def _non_finite_message(what: str, value: float, epoch: int, step: int, global_step: int) -> str:
    return (
        f"Non-finite {what} ({value}) at epoch {epoch}, step {step} (global step {global_step}); training stopped "
        "and the last good checkpoint is kept. Try: a lower learning rate (e.g. --lr divided by 10), "
        "--amp off or --amp bf16 instead of fp16, gradient clipping (--grad-clip 1.0), and check the inputs for "
        "NaN/Inf values. Resume with --resume last after the fix."
    )


def _progress_mode(progress: str, main: bool) -> str:
    if not main:
        return "none"
    if progress == "auto":
        return "bar" if is_interactive() else "line"
    return progress


def _autocast(policy: Any):
    if policy is None:
        import contextlib

        return contextlib.nullcontext()
    from .precision import autocast

    return autocast(policy)


def _scaler_on(scaler: Any) -> bool:
    return scaler is not None and bool(getattr(scaler, "is_enabled", lambda: True)())


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
    policy: Any = None,
    scaler: Any = None,
    *,
    epoch: int = 1,
    epochs: int | None = None,
    grad_clip: float | None = None,
    max_steps: int | None = None,
    channels_last: bool = False,
    global_step: int = 0,
    progress: str = "none",
    tracker: Tracker | None = None,
    log_every: int = 10,
) -> dict[str, Any]:
    """Train ``model`` for one pass over ``loader``.
    在 loader 上训练一轮

    Each step: forward under the AMP policy's autocast, loss in float32, backward (through the
    :class:`~torch.amp.GradScaler` when the policy uses *损失缩放*（loss scaling）), optional gradient clipping
    (after ``unscale_``), optimiser step.
    每一步：在自动混合精度下前向，以 fp32 计算损失，反向（需要时经损失缩放），可选梯度裁剪（先 unscale），更新参数

    Args:
        model: the network (plain or DDP-wrapped). 网络（可为 DDP 包装）
        loader: yields dicts with ``"image"`` ``(B, C, H, W)`` float and ``"mask"`` ``(B, H, W)`` int64.
        optimizer: the optimiser. 优化器
        loss_fn: ``loss_fn(logits, target) -> scalar``. 损失函数
        device: where to compute. 计算设备
        policy: an :class:`~unet_course.precision.AmpPolicy` (None: full precision). 混合精度策略
        scaler: a GradScaler or None. 梯度缩放器
        epoch, epochs: for messages and the progress bar (1-based). 当前轮次与总轮数
        grad_clip: max gradient norm, or None. 最大梯度范数
        max_steps: stop after this many steps (smoke tests). 最多执行的步数
        channels_last: convert inputs to NHWC. 输入转为 NHWC
        global_step: optimiser steps taken before this epoch. 本轮之前的总步数
        progress: ``"bar"`` (tqdm), ``"line"``/``"none"`` (no per-step output). 进度显示方式
        tracker: logs ``train/loss`` and ``train/lr`` every ``log_every`` steps. 实验记录器

    Returns:
        ``{"loss": mean loss over all ranks, "steps": steps, "global_step": new global step, "samples": n}``.

    Raises:
        NonFiniteLossError: the loss (or, without a scaler, the gradient norm) is NaN/Inf; raised before the
            optimiser step, so the weights stay finite.
    """
    model.train()
    use_scaler = _scaler_on(scaler)
    total = len(loader) if hasattr(loader, "__len__") else None
    if max_steps is not None and total is not None:
        total = min(total, max_steps)
    bar = None
    if progress == "bar":
        from tqdm.auto import tqdm

        desc = f"Epoch {epoch}/{epochs}" if epochs else f"Epoch {epoch}"
        bar = tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_samples = 0
    steps = 0
    try:
        for step, batch in enumerate(loader, start=1):
            if max_steps is not None and step > max_steps:
                break
            images, targets = _batch_to(batch, device, channels_last)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(policy):
                logits = model(images)                       # (B, K, H, W) 或二分类 (B, 1, H, W)
            loss = loss_fn(logits.float(), targets)          # 损失始终以 fp32 计算
            value = float(loss.detach())
            if distributed.any_rank(not math.isfinite(value), device):
                raise NonFiniteLossError(_non_finite_message("loss", value, epoch, step, global_step + 1))
            if use_scaler:
                scaler.scale(loss).backward()                # 缩放损失，避免 fp16 梯度下溢
            else:
                loss.backward()
            if grad_clip:
                if use_scaler:
                    scaler.unscale_(optimizer)               # 先还原真实梯度，再裁剪
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                # 有缩放器时 inf 梯度属正常现象（scaler 会跳过此步并减小缩放因子）
                if not use_scaler and not bool(torch.isfinite(norm)):
                    raise NonFiniteLossError(
                        _non_finite_message("gradient norm", float(norm), epoch, step, global_step + 1))
            if use_scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            global_step += 1
            steps += 1
            batch_size = images.shape[0]
            loss_sum += value * batch_size
            n_samples += batch_size
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}")
            if tracker is not None and tracker.enabled and (global_step % log_every == 0 or step == 1):
                tracker.log({"train/loss": value, "train/lr": optimizer.param_groups[0]["lr"],
                             "epoch": epoch}, step=global_step)
    finally:
        if bar is not None:
            bar.close()
    counts = torch.tensor([float(n_samples)], dtype=torch.float64, device=device)
    distributed.all_reduce_sum(loss_sum)                     # 多进程时汇总所有进程的损失
    distributed.all_reduce_sum(counts)
    mean_loss = float(loss_sum / counts.clamp_min(1)) if counts.item() > 0 else float("nan")
    return {"loss": mean_loss, "steps": steps, "global_step": global_step, "samples": int(counts.item())}


# ----------------------------------------------------------------------------------------------------------------
# Evaluation 评估
# ----------------------------------------------------------------------------------------------------------------
def evaluate(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    device: torch.device,
    policy: Any = None,
    n_classes: int = 2,
    mode: str = "multiclass",
    threshold: float = 0.5,
    ignore_index: int = 255,
    *,
    channels_last: bool = False,
    max_steps: int | None = None,
) -> dict[str, Any]:
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
        policy: AMP policy or None. 混合精度策略
        n_classes: number of classes ``K`` (2 in binary mode). 类别数
        mode: ``"multiclass"`` (argmax) or ``"binary"`` (sigmoid > ``threshold``). 模式
        threshold: binary decision threshold. 二分类阈值
        ignore_index: label never scored. 忽略的标签
        channels_last: NHWC inputs. 使用 NHWC
        max_steps: stop after this many batches. 最多评估的批次数

    Returns:
        :meth:`ConfusionMatrix.compute` metrics (``dice``, ``mean_dice``, ``pixel_accuracy``, per-class lists, ...)
        plus ``loss`` (NaN when ``loss_fn`` is None) and ``n_images``.
    """
    from .metrics import ConfusionMatrix, logits_to_labels

    net = model.module if isinstance(model, DistributedDataParallel) else model   # 评估时不经过 DDP 的同步
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(n_classes, ignore_index=ignore_index, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_images = 0
    try:
        with torch.inference_mode():
            for step, batch in enumerate(loader, start=1):
                if max_steps is not None and step > max_steps:
                    break
                images, targets = _batch_to(batch, device, channels_last)
                with _autocast(policy):
                    logits = net(images)
                logits = logits.float()
                if loss_fn is not None:
                    loss_sum += float(loss_fn(logits, targets)) * images.shape[0]
                preds = logits_to_labels(logits, mode=mode, threshold=threshold)   # (B, H, W)
                cm.update(preds, targets)
                n_images += images.shape[0]
    finally:
        model.train(was_training)
    if distributed.is_distributed():
        matrix = cm.matrix
        distributed.all_reduce_sum(matrix)                  # 各进程的混淆矩阵求和
        counts = torch.tensor([float(n_images)], dtype=torch.float64, device=device)
        distributed.all_reduce_sum(loss_sum)
        distributed.all_reduce_sum(counts)
        n_images = int(counts.item())
    metrics = dict(cm.compute())
    metrics["loss"] = float(loss_sum) / n_images if (loss_fn is not None and n_images) else float("nan")
    metrics["n_images"] = n_images
    return metrics


def monitor_value(metrics: dict[str, Any]) -> float | None:
    """The validation Dice used for ``best.pt`` and the plateau scheduler. 用于选择最优模型的验证 Dice"""
    value = metrics.get(MONITOR, metrics.get("mean_dice"))
    return None if value is None else float(value)


@torch.inference_mode()
def _example_batch(model: nn.Module, loader: DataLoader, device: torch.device, policy: Any, mode: str,
                   threshold: float, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """First validation batch with predictions, for the wandb image panel. 取第一批验证数据及预测，用于可视化"""
    from .metrics import logits_to_labels

    net = model.module if isinstance(model, DistributedDataParallel) else model
    was_training = net.training
    net.eval()
    try:
        batch = next(iter(loader))
        images, targets = _batch_to(batch, device, channels_last)
        with _autocast(policy):
            logits = net(images)
        preds = logits_to_labels(logits.float(), mode=mode, threshold=threshold)
        return images.cpu(), targets.cpu(), preds.cpu()
    except StopIteration:
        return None
    finally:
        net.train(was_training)


# ----------------------------------------------------------------------------------------------------------------
# Run set-up helpers 运行准备
# ----------------------------------------------------------------------------------------------------------------
def resolve_resume(resume: str | None, out_dir: Path) -> Path | None:
    """``"last"`` -> ``<out_dir>/last.pt``, ``"best"`` -> ``<out_dir>/best.pt``; other strings are paths.
    解析续训路径

    Raises:
        CheckpointError: the file does not exist.
    """
    if not resume:
        return None
    path = out_dir / f"{resume}.pt" if resume in ("last", "best") else Path(resume).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"Cannot resume: checkpoint {str(path)!r} does not exist. Pass the path of a last.pt/best.pt written by "
            f"an earlier run (resume='last' looks in out_dir={str(out_dir)!r}), or drop --resume to start fresh."
        )
    return path


def _info_dict(info: Any) -> dict[str, Any]:
    if info is None:
        return {}
    if dataclasses.is_dataclass(info):
        return _plain(dataclasses.asdict(info))
    return _plain({k: v for k, v in vars(info).items() if not k.startswith("_")})


def _info_from_dataset(loader: DataLoader, val_loader: DataLoader | None) -> Any:
    """A DataInfo-like namespace read from the dataset attributes (when ``fit`` gets loaders but no info).
    从数据集属性推断数据信息（fit 只收到 loader 而没有 info 时）
    """
    from types import SimpleNamespace

    ds = loader.dataset
    mask_values = list(getattr(ds, "mask_values", [0, 1]))
    return SimpleNamespace(
        in_channels=int(getattr(ds, "in_channels", 1)),
        n_classes=len(mask_values),
        mask_values=mask_values,
        class_names=list(getattr(ds, "class_names", [f"class {i}" for i in range(len(mask_values))])),
        mean=list(getattr(ds, "mean", [0.0])),
        std=list(getattr(ds, "std", [1.0])),
        ignore_index=int(getattr(ds, "ignore_index", 255)),
        n_train=len(ds),
        n_val=len(val_loader.dataset) if val_loader is not None else 0,
        dataset=type(ds).__name__,
    )


def hardware_info(device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """Device, thread and CUDA facts for ``metrics.json``. 写入 metrics.json 的硬件信息"""
    info: dict[str, Any] = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "world_size": world_size,
        "torch": torch.__version__,
        "cuda_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "platform": sys.platform,
        "cpu": cpu_info(),
    }
    return info


def _precision_text(policy: Any) -> str:
    if policy is None or not getattr(policy, "enabled", False):
        return "fp32 (AMP off)"
    dtype = str(getattr(policy, "dtype", "")).replace("torch.", "")
    scaler = " + GradScaler" if getattr(policy, "use_scaler", False) else ""
    return f"{dtype} autocast{scaler}"


def _summary_block(cfg: TrainConfig, info: Any, model: nn.Module, device: torch.device, policy: Any,
                   out_dir: Path, start_epoch: int, resume_path: Path | None, world: int, tracker: Tracker,
                   batch_size: int | None) -> str:
    n_params = sum(p.numel() for p in model.parameters())
    mc = getattr(unwrap_model(model), "config", {}) or {}
    lines = [
        "Starting training:",
        f"    Dataset:      {cfg.dataset} ({getattr(info, 'n_train', '?')} train, {getattr(info, 'n_val', '?')} val, "
        f"{info.n_classes} classes, mask_values {list(info.mask_values)}, {info.in_channels} input channel(s)"
        + (f", enhance {info.enhance})" if getattr(info, "enhance", "none") != "none" else ")"),
        f"    Model:        UNet base {mc.get('base_channels', '?')}, depth {mc.get('depth', '?')}, "
        f"{'bilinear' if mc.get('bilinear') else 'transposed-conv'} up-sampling, {n_params / 1e6:.2f} M parameters",
        f"    Loss:         {cfg.mode} (CE x{cfg.ce_weight} + Dice x{cfg.dice_weight})",
        f"    Epochs:       {cfg.epochs} (starting at {start_epoch + 1}), batch size {batch_size or cfg.batch_size}"
        + (f", max {cfg.max_steps} steps/epoch" if cfg.max_steps else ""),
        f"    Optimiser:    {cfg.optimizer}, lr {cfg.lr:g}, weight decay {cfg.weight_decay:g}, "
        f"scheduler {cfg.scheduler}, grad clip {cfg.grad_clip}",
        f"    Device:       {device} ({torch.get_num_threads()} threads)" + (f", {world} processes" if world > 1 else ""),
        f"    Precision:    {_precision_text(policy)}, channels_last={cfg.channels_last}",
        f"    Checkpoints:  {out_dir} (last.pt every {cfg.save_every} epoch(s), best.pt on a new best val Dice)",
        f"    Resume:       {resume_path if resume_path else 'no'}",
        f"    Tracking:     wandb {tracker.mode}" + (f" ({tracker.run_dir})" if tracker.run_dir else ""),
    ]
    return "\n".join(lines)


def _call_callbacks(callbacks: Sequence[Any], state: dict[str, Any]) -> bool:
    """Call each callback with the epoch state; True if one asks to stop. 调用回调；若有回调要求停止则返回 True"""
    stop = False
    for cb in callbacks:
        hook = getattr(cb, "on_epoch_end", None) or (cb if callable(cb) else None)
        if hook is None:
            continue
        if hook(state) is True:
            stop = True
    return stop or bool(state.get("stop"))


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically. 原子地写 JSON"""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_plain(payload), indent=2))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------
# fit 训练入口
# ----------------------------------------------------------------------------------------------------------------
def fit(cfg: TrainConfig, *, train_loader: DataLoader | None = None, val_loader: DataLoader | None = None,
        info: Any = None, model: nn.Module | None = None, loss_fn: nn.Module | None = None,
        callbacks: Sequence[Any] | None = None) -> History:
    """Train a U-Net as described by ``cfg``; return its :class:`History`.
    按 cfg 训练 U-Net，返回训练历史

    Args:
        cfg: every knob of the run (see :class:`~unet_course.config.TrainConfig`). 训练配置
        train_loader, val_loader: ready loaders; None builds them with :func:`unet_course.data.build_loaders`.
            已构建的数据加载器；为 None 时自动构建
        info: the ``DataInfo`` of those loaders (``in_channels``, ``n_classes``, ``mask_values``, ``mean``,
            ``std``, ...); read from the dataset when omitted. 数据信息
        model: a ready network; None builds a :class:`~unet_course.model.UNet` from ``cfg``. 已构建的网络
        loss_fn: ``loss_fn(logits, target) -> scalar``; None builds :class:`~unet_course.losses.SegmentationLoss`
            from ``cfg``. 自定义损失函数；为 None 时按 cfg 构建
        callbacks: objects with ``on_epoch_end(state)`` or plain callables ``cb(state)``; ``state`` holds
            ``epoch``, ``history``, ``metrics``, ``model``, ``cfg``. Returning True (or setting
            ``state["stop"] = True``) ends training after this epoch. 每轮结束时调用的回调，返回 True 可提前停止

    Returns:
        The :class:`History` (also written to ``<out_dir>/history.json``).

    Raises:
        ConfigError: bad names/values, an unwritable ``out_dir``, data that do not fit the config.
        CheckpointError: ``cfg.resume`` missing, corrupt, or made for other classes/channels.
        NonFiniteLossError: the loss became NaN/Inf (the last good checkpoint is kept).

    Example::

        history = fit(TrainConfig(epochs=2, train_samples=32, val_samples=16, out_dir="runs/demo"))
        print(history.best_metric)
    """
    setup_logging()
    cfg.validate()
    device = pick_device(cfg.device)
    dinfo, device, created = distributed.setup(device)
    try:
        return _fit(cfg, device, dinfo, train_loader, val_loader, info, model, loss_fn, list(callbacks or []))
    finally:
        distributed.cleanup(created)


def _fit(cfg: TrainConfig, device: torch.device, dinfo: distributed.DistInfo, train_loader: DataLoader | None,
         val_loader: DataLoader | None, info: Any, model: nn.Module | None, loss_fn: nn.Module | None,
         callbacks: list[Any]) -> History:
    from .losses import SegmentationLoss
    from .precision import amp_policy, make_scaler, prefer_channels_last

    t_start = time.perf_counter()
    main = dinfo.is_main
    out_dir = Path(cfg.out_dir).expanduser() if cfg.out_dir else default_out_dir()
    if main:
        ensure_writable_dir(out_dir)                                   # 不可写时给出清晰的 ConfigError
    seed_everything(cfg.seed, deterministic=cfg.deterministic)
    resume_path = resolve_resume(cfg.resume, out_dir)

    # --- data 数据 ---
    if train_loader is None:
        from .data import build_loaders

        train_loader, val_loader, built_info = build_loaders(cfg, device)
        info = info if info is not None else built_info
    elif info is None:
        info = _info_from_dataset(train_loader, val_loader)
    n_classes = int(cfg.n_classes or info.n_classes)
    in_channels = int(cfg.in_channels or info.in_channels)
    if cfg.n_classes and int(cfg.n_classes) != int(info.n_classes):
        raise ConfigError(
            f"n_classes={cfg.n_classes} but the data have {info.n_classes} classes (mask_values "
            f"{list(info.mask_values)}); drop --n-classes or fix the masks."
        )
    if cfg.mode == "binary" and n_classes != 2:
        raise ConfigError(
            f"mode='binary' needs exactly 2 classes, but the data have {n_classes} (mask_values "
            f"{list(info.mask_values)}); use mode='multiclass'."
        )

    # --- model 模型 ---
    if model is None:
        from .model import UNet

        model = UNet(in_channels=in_channels, n_classes=_out_channels(cfg.mode, n_classes),
                     base_channels=cfg.base_channels, depth=cfg.depth, bilinear=cfg.bilinear,
                     gradient_checkpointing=cfg.gradient_checkpointing)

    # --- resume 续训 ---
    ckpt: dict[str, Any] | None = None
    if resume_path is not None:
        ckpt = load_checkpoint(resume_path, map_location="cpu")
        _check_compatible(ckpt, resume_path, n_classes, in_channels, info)
        state = {k.removeprefix("module."): v for k, v in ckpt["model_state"].items()}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"Checkpoint {str(resume_path)!r} does not fit this model ({str(exc).splitlines()[0]}). It was "
                f"saved with model_config {ckpt.get('model_config')}; use the same base_channels/depth/bilinear."
            ) from None

    policy = amp_policy(device, cfg.amp)
    if cfg.channels_last is None:                      # 自动：只在 NHWC 更快的设备与精度上使用
        cfg = cfg.replace(channels_last=prefer_channels_last(device, policy))
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    if loss_fn is None:
        loss_fn = SegmentationLoss(mode=cfg.mode, ce_weight=cfg.ce_weight, dice_weight=cfg.dice_weight,
                                   ignore_index=cfg.ignore_index, class_weights=cfg.class_weights)
    if isinstance(loss_fn, nn.Module):
        loss_fn = loss_fn.to(device)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    scaler = make_scaler(policy)

    history = History(out_dir=str(out_dir))
    start_epoch, global_step, run_id = 0, 0, None
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer_state"])
        if scheduler is not None and ckpt.get("scheduler_state") is not None:
            scheduler.load_state_dict(ckpt["scheduler_state"])
        if _scaler_on(scaler) and ckpt.get("scaler_state"):
            scaler.load_state_dict(ckpt["scaler_state"])
        history = History.from_dict(ckpt.get("history"))
        history.out_dir = str(out_dir)
        start_epoch = int(ckpt.get("epoch", 0))
        global_step = int(ckpt.get("global_step", 0))
        run_id = ckpt.get("wandb_run_id")
        restore_rng_state(ckpt.get("rng_state"))
        # 截断到检查点所在轮次（best.pt 之后的记录不属于这次续训）
        for name in ("epoch", "train_loss", "val_loss", "val_dice", "val_metrics", "lr", "epoch_time"):
            setattr(history, name, list(getattr(history, name))[:start_epoch])

    # --- distributed 分布式 ---
    model = distributed.wrap_model(model, dinfo, device, sync_batchnorm=cfg.sync_batchnorm)
    train_loader, val_loader = distributed.distributed_loaders(train_loader, val_loader, dinfo, cfg.seed)

    progress = _progress_mode(cfg.progress, main)
    info_dict = _info_dict(info)
    tracker = Tracker(cfg.wandb_mode, project=cfg.wandb_project, run_name=cfg.wandb_run_name,
                      config={**cfg.to_dict(), "data": info_dict}, dir=out_dir, resume_id=run_id,
                      main_process=main)
    with tracker:
        if main and progress != "none":
            logger.info(_summary_block(cfg, info, model, device, policy, out_dir, start_epoch, resume_path,
                                       dinfo.world_size, tracker, getattr(train_loader, "batch_size", None)))
        if start_epoch >= cfg.epochs and main:
            logger.info("Checkpoint already holds %d epoch(s) >= epochs=%d; nothing to train. Raise --epochs to "
                        "continue.", start_epoch, cfg.epochs)
        for epoch_idx in range(start_epoch, cfg.epochs):
            epoch = epoch_idx + 1
            t0 = time.perf_counter()
            reseed_epoch(train_loader, cfg.seed, epoch_idx, dinfo.rank)   # 每轮按 (seed, epoch) 重设随机状态
            lr = optimizer.param_groups[0]["lr"]
            train = train_one_epoch(
                model, train_loader, optimizer, loss_fn, device, policy, scaler, epoch=epoch, epochs=cfg.epochs,
                grad_clip=cfg.grad_clip, max_steps=cfg.max_steps, channels_last=cfg.channels_last,
                global_step=global_step, progress=progress, tracker=tracker,
            )
            global_step = train["global_step"]
            distributed.broadcast_buffers(model)             # 各进程的 BN 统计量与 0 号进程一致
            metrics: dict[str, Any] = {}
            val_score = None
            if val_loader is not None and len(val_loader) > 0:
                metrics = evaluate(model, val_loader, loss_fn, device, policy, n_classes, cfg.mode, cfg.threshold,
                                   cfg.ignore_index, channels_last=cfg.channels_last, max_steps=cfg.max_steps)
                val_score = monitor_value(metrics)
            step_scheduler(scheduler, val_score)
            seconds = time.perf_counter() - t0

            history.epoch.append(epoch)
            history.train_loss.append(train["loss"])
            history.val_loss.append(metrics.get("loss"))
            history.val_dice.append(val_score)
            history.val_metrics.append(_plain(metrics))
            history.lr.append(lr)
            history.epoch_time.append(seconds)
            history.global_step = global_step
            improved = val_score is not None and (history.best_metric is None or val_score > history.best_metric)
            if improved:
                history.best_metric, history.best_epoch = val_score, epoch

            if main:
                last_epoch = epoch == cfg.epochs
                if improved or epoch % cfg.save_every == 0 or last_epoch:
                    history.wall_time = _wall(history, t_start, ckpt)
                    if improved:
                        history.best_checkpoint = str(out_dir / "best.pt")
                    if epoch % cfg.save_every == 0 or last_epoch:
                        history.last_checkpoint = str(out_dir / "last.pt")
                    state = _checkpoint_state(model, optimizer, scheduler, scaler, cfg, info, n_classes,
                                              in_channels, epoch, global_step, history, tracker.run_id)
                    if improved:
                        save_checkpoint(out_dir / "best.pt", state)
                    if epoch % cfg.save_every == 0 or last_epoch:
                        save_checkpoint(out_dir / "last.pt", state)
                _write_json(out_dir / "history.json", history.to_dict())
                _log_epoch(progress, epoch, cfg.epochs, train["loss"], metrics, val_score, lr, seconds, improved)
                tracker.log({"val/" + k: v for k, v in metrics.items() if isinstance(v, (int, float))}
                            | {"train/epoch_loss": train["loss"], "epoch": epoch}, step=global_step)
                if tracker.enabled and val_loader is not None:
                    example = _example_batch(model, val_loader, device, policy, cfg.mode, cfg.threshold,
                                             cfg.channels_last)
                    if example is not None:
                        tracker.log_segmentation(*example, step=global_step, mean=list(info.mean),
                                                 std=list(info.std), class_names=list(info.class_names),
                                                 ignore_index=cfg.ignore_index)
                    tracker.log_histograms(unwrap_model(model), step=global_step)
            state_cb = {"epoch": epoch, "epochs": cfg.epochs, "history": history, "metrics": metrics,
                        "train_loss": train["loss"], "model": unwrap_model(model), "cfg": cfg, "stop": False}
            stop = _call_callbacks(callbacks, state_cb)
            if distributed.any_rank(stop, device):
                if main:
                    logger.info("A callback asked to stop after epoch %d.", epoch)
                break

        history.wall_time = _wall(history, t_start, ckpt)
        if main:
            _write_json(out_dir / "history.json", history.to_dict())
            _write_json(out_dir / "metrics.json", _metrics_report(cfg, info_dict, device, dinfo, policy, history))
            tracker.summary({"best_val_dice": history.best_metric, "best_epoch": history.best_epoch})
            if progress != "none":
                best = f"{history.best_metric:.4f}" if history.best_metric is not None else "n/a"
                logger.info("Finished: best val Dice %s at epoch %s; %.1f s; outputs in %s", best,
                            history.best_epoch, history.wall_time, out_dir)
    distributed.debug_dump(model)
    distributed.barrier()
    return history


def _wall(history: History, t_start: float, ckpt: dict[str, Any] | None) -> float:
    before = float(((ckpt or {}).get("history") or {}).get("wall_time") or 0.0)
    return before + time.perf_counter() - t_start


def _check_compatible(ckpt: dict[str, Any], path: Path, n_classes: int, in_channels: int, info: Any) -> None:
    """Raise :class:`CheckpointError` if the checkpoint was made for other classes or channels.
    检查点的类别数或输入通道与数据不一致时报错
    """
    mc = ckpt.get("model_config") or {}
    mask_values = ckpt.get("mask_values")
    pre = ckpt.get("preprocess") or {}
    ck_classes = len(mask_values) if mask_values else pre.get("n_classes", mc.get("n_classes"))
    ck_channels = mc.get("in_channels", pre.get("in_channels"))
    if ck_classes is not None and int(ck_classes) != n_classes:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} was trained for {ck_classes} classes (mask_values {mask_values}), but the "
            f"data have {n_classes} classes (mask_values {list(info.mask_values)}). Resume only on the same "
            "dataset, or start a fresh run without --resume."
        )
    if ck_channels is not None and int(ck_channels) != in_channels:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} expects {ck_channels} input channel(s), but the data have {in_channels}. "
            "Resume only on the same dataset, or start a fresh run without --resume."
        )


def _checkpoint_state(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
                      cfg: TrainConfig, info: Any, n_classes: int, in_channels: int, epoch: int, global_step: int,
                      history: History, run_id: str | None) -> dict[str, Any]:
    """The checkpoint dict (format in ``docs/ARCHITECTURE.md``). 构建检查点字典"""
    from . import __version__

    net = unwrap_model(model)
    return {
        "format_version": FORMAT_VERSION,
        "model_config": dict(getattr(net, "config", {}) or {}) or None,
        "model_state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "mask_values": [int(v) for v in info.mask_values],
        "class_names": [str(c) for c in info.class_names],
        "normalization": {"mean": [float(m) for m in info.mean], "std": [float(s) for s in info.std]},
        "preprocess": {"scale": float(cfg.scale), "in_channels": in_channels, "mode": cfg.mode,
                       "threshold": float(cfg.threshold), "n_classes": n_classes,
                       "ignore_index": int(cfg.ignore_index), "enhance": getattr(info, "enhance", "none")},
        "train_config": cfg.to_dict(),
        "versions": {"unet_course": str(__version__), "torch": str(torch.__version__)},
        "epoch": epoch,
        "global_step": global_step,
        "optimizer_state": optimizer.state_dict(),
        "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
        "scaler_state": scaler.state_dict() if _scaler_on(scaler) else None,
        "rng_state": capture_rng_state(),
        "best_metric": history.best_metric,
        "wandb_run_id": run_id,
        "history": history.to_dict(),
        "data_info": _info_dict(info),
    }


def _log_epoch(progress: str, epoch: int, epochs: int, train_loss: float, metrics: dict[str, Any],
               val_score: float | None, lr: float, seconds: float, improved: bool) -> None:
    if progress == "none":
        return
    val = ""
    if metrics:
        val = f"  val loss {metrics.get('loss', float('nan')):.4f}  val Dice {val_score:.4f}"
        if "pixel_accuracy" in metrics:
            val += f"  pixel acc {metrics['pixel_accuracy']:.4f}"
    logger.info("epoch %d/%d  train loss %.4f%s  lr %.2e  %.1f s%s", epoch, epochs, train_loss, val, lr, seconds,
                "  (new best)" if improved else "")


def _metrics_report(cfg: TrainConfig, info_dict: dict[str, Any], device: torch.device,
                    dinfo: distributed.DistInfo, policy: Any, history: History) -> dict[str, Any]:
    best_idx = history.epoch.index(history.best_epoch) if history.best_epoch in history.epoch else None
    return {
        "config": cfg.to_dict(),
        "data": info_dict,
        "hardware": hardware_info(device, dinfo.world_size),
        "precision": {"policy": _precision_text(policy), "amp": cfg.amp},
        "wall_time_s": history.wall_time,
        "epochs_run": len(history.epoch),
        "global_step": history.global_step,
        "final": {"epoch": history.epoch[-1] if history.epoch else None,
                  "train_loss": history.train_loss[-1] if history.train_loss else None,
                  "val_dice": history.val_dice[-1] if history.val_dice else None,
                  "val_metrics": history.val_metrics[-1] if history.val_metrics else {}},
        "best": {"epoch": history.best_epoch, "val_dice": history.best_metric,
                 "val_metrics": history.val_metrics[best_idx] if best_idx is not None else {}},
        "checkpoints": {"last": history.last_checkpoint, "best": history.best_checkpoint},
    }
