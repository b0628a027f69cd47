"""The optimiser and the *学习率调度器*（learning rate scheduler）named by a :class:`~unet_course.config.TrainConfig`.
按训练配置构建优化器与学习率调度器
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..config import OPTIMIZERS, SCHEDULERS, TrainConfig
from ..errors import ConfigError

#: Devices with a fused Adam/AdamW kernel in torch (one pass over each parameter instead of one per operation).
#: 具有融合 Adam/AdamW 内核的设备
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def fused_adam_ok(params: list[nn.Parameter]) -> bool | None:
    """True when every parameter is a floating-point tensor on one of :data:`FUSED_ADAM_DEVICES`, else None
    (torch then picks its default implementation). The fused kernel reads and writes each parameter and its two
    moments once per step; the default CPU implementation makes one pass per operation. Same algorithm, the
    update differs only by float rounding; the bench lever ``loop_adamw`` times the default instead.
    所有参数都是浮点张量且位于支持融合内核的设备时返回 True：融合内核每步对每个参数只读写一遍

    >>> fused_adam_ok(list(nn.Linear(2, 2).parameters())), fused_adam_ok([])
    (True, None)
    """
    ok = bool(params) and all(p.is_floating_point() and p.device.type in FUSED_ADAM_DEVICES for p in params)
    return True if ok else None


def build_optimizer(params: Iterable[nn.Parameter] | nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.optimizer``.
    按 cfg.optimizer 构建优化器

    Args:
        params: a model or its parameters (frozen ones are skipped). 模型或其参数（跳过冻结参数）
        cfg: uses ``optimizer`` (``adam`` | ``adamw`` | ``rmsprop`` | ``sgd``), ``lr``, ``weight_decay``,
            ``momentum`` (RMSprop/SGD; SGD uses Nesterov when ``momentum > 0``). Adam and AdamW use the fused
            kernel where :func:`fused_adam_ok`. 使用的字段；Adam/AdamW 在可用时使用融合内核

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
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused_adam_ok(params))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused_adam_ok(params))
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
    >>> [round(lr_factor(e, 4, "cosine", warmup_epochs=1), 3) for e in range(4)]
    [0.5, 1.0, 0.75, 0.25]
    """
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    t = (epoch - warmup_epochs) / max(1, epochs - warmup_epochs)
    t = min(max(t, 0.0), 1.0)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    return (1.0 - t) ** power


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, *, higher_is_better: bool = True,
                    total_epochs: Callable[[], int] | None = None) -> Any:
    """The learning rate scheduler named by ``cfg.scheduler``; stepped once per epoch by :func:`step_scheduler`.
    按 cfg.scheduler 构建学习率调度器，每轮由 step_scheduler 调用一次

    - ``plateau``: ``ReduceLROnPlateau`` on the monitored score (validation Dice, ``mode="max"``; the training
      loss, ``mode="min"``, when there is no validation split), cut by ``plateau_factor`` after
      ``plateau_patience`` epochs without improvement; 监控的指标停止改善时降低学习率
    - ``cosine`` / ``poly``: :func:`lr_factor` with ``warmup_epochs``; 余弦或多项式衰减（带预热）
    - ``none``: returns None. 不使用调度器

    Args:
        optimizer: the optimiser whose LR is scheduled. 优化器
        cfg: uses ``scheduler``, ``epochs``, ``warmup_epochs``, ``plateau_factor``, ``plateau_patience``.
        higher_is_better: the plateau scheduler's score rises when training goes well (Dice); False for a loss.
            监控的指标是否越大越好
        total_epochs: returns the current number of planned epochs (a time budget re-plans it); None ->
            ``cfg.epochs``. 返回当前计划的总轮数（时间预算会改变它）

    Raises:
        ConfigError: an unknown scheduler name (the message lists the allowed ones).

    >>> opt = build_optimizer(nn.Linear(2, 2), TrainConfig(lr=1.0))
    >>> type(build_scheduler(opt, TrainConfig(scheduler="plateau"))).__name__
    'ReduceLROnPlateau'
    """
    name = str(cfg.scheduler).lower()
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max" if higher_is_better else "min", factor=cfg.plateau_factor,
            patience=cfg.plateau_patience, min_lr=1e-7)
    if name in ("cosine", "poly"):
        epochs, warmup = int(cfg.epochs), int(cfg.warmup_epochs)
        total = total_epochs or (lambda: epochs)
        if warmup >= total():  # 预热不短于整个训练：学习率一直在上升
            warnings.warn(f"warmup_epochs={warmup} is not shorter than the run ({total()} epoch(s)): the learning "
                          f"rate rises for the whole run, never reaches lr={cfg.lr:g} and never decays. Use fewer "
                          "warm-up epochs (e.g. --warmup-epochs 0 for a short trial run) or more epochs.",
                          UserWarning, stacklevel=2)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, total(), name, warmup))
    if name == "none":
        return None
    raise ConfigError(f"Unknown scheduler {cfg.scheduler!r}; choose one of: {', '.join(SCHEDULERS)}.")


def step_scheduler(scheduler: Any, val_score: float | None) -> None:
    """Advance the scheduler by one epoch (``ReduceLROnPlateau`` needs the monitored score; it skips a missing one).
    调度器前进一轮（ReduceLROnPlateau 需要监控的指标，缺失时跳过）
    """
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if val_score is not None and math.isfinite(val_score):
            scheduler.step(val_score)
    else:
        scheduler.step()
