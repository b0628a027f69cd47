"""Resuming with changed settings: the saved run is the base, and what the user changed wins.
带修改的续训：以保存的运行为基础，用户改动的设置优先

The rule, in three parts: 规则分三部分：

1. **Base.** The ``train_config`` stored in the checkpoint is the starting point. On the command line only the
   flags the user typed override it (``unet-course train --resume last`` alone continues exactly, recipe runs
   included); for ``fit(cfg)`` every field of ``cfg`` that differs from the saved one counts as a change.
   以检查点中的 train_config 为基础；命令行只有显式给出的参数覆盖它；fit(cfg) 中与保存值不同的字段都算修改
2. **Applied.** A change of a setting that can change (``lr``, ``weight_decay``, ``momentum``, ``grad_clip``,
   ``epochs``, ``warmup_epochs``, ``plateau_*``, ``batch_size``, ...) is written into the restored optimiser and
   scheduler, and one line per change is logged: ``resume: lr 0.003 -> 0.0003 (from the command line)``.
   可以修改的设置写入恢复后的优化器与调度器，每项修改打印一行
3. **Refused.** Settings that define the run (model shape, data set and split, loss mode, optimiser and scheduler
   type) raise :class:`~unet_course.errors.ConfigError` naming the flags; start a new run in another
   ``--out-dir`` instead. 定义运行本身的设置（模型结构、数据集与划分、损失模式、优化器与调度器类型）不能修改
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..errors import ConfigError

logger = logging.getLogger("unet_course")

#: Where and how a run is shown, not what it trains: never compared. 不参与比较的字段（输出位置与显示方式）
NOT_COMPARED = ("resume", "out_dir", "data_dir", "device", "num_workers", "progress", "wandb_mode", "wandb_project",
                "wandb_run_name")

#: ``None`` means "work it out" for these, so a None in the new config keeps the saved value. None 表示自动
AUTO_WHEN_NONE = ("channels_last", "in_channels", "n_classes")

#: Settings that define the run and cannot change on resume, grouped by what they are. 续训时不能修改的设置
FIXED = {
    "the model shape": ("base_channels", "depth", "bilinear", "in_channels", "n_classes"),
    "the data set and its train/validation split": ("dataset", "val_fraction", "seed", "data_seed", "folds", "fold",
                                                    "dataset_options"),
    "the loss mode": ("mode",),
    "the optimizer type": ("optimizer",),
    "the scheduler type": ("scheduler",),
}


def flag(name: str) -> str:
    """The command-line flag of a field. 字段对应的命令行参数

    >>> flag("base_channels")
    '--base-channels'
    """
    return "--" + name.replace("_", "-")


def resume_changes(saved: dict[str, Any], cfg: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """``{field: (saved value, new value)}`` for every field of ``cfg`` that differs from the saved config.
    与保存的配置不同的字段：{字段: (保存值, 新值)}

    Fields missing from an older checkpoint are not compared. 旧检查点中没有的字段不比较

    >>> resume_changes(TrainConfig(lr=0.003).to_dict(), TrainConfig(lr=0.0003))
    {'lr': (0.003, 0.0003)}
    """
    new = cfg.to_dict()
    changes = {}
    for name, value in new.items():
        if name in NOT_COMPARED or name not in saved:
            continue
        if value is None and name in AUTO_WHEN_NONE:
            continue
        old = saved[name]
        same = old == value or (isinstance(old, float) and isinstance(value, float) and math.isclose(old, value))
        if not same:
            changes[name] = (old, value)
    return changes


def check_fixed(changes: dict[str, tuple[Any, Any]], path: Path) -> None:
    """Refuse changes of settings that define the run (:data:`FIXED`).
    拒绝修改定义运行本身的设置

    Raises:
        ConfigError: names each refused flag with the saved and the new value, and what to do.

    >>> check_fixed({"base_channels": (8, 16)}, Path("runs/train/last.pt"))
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: Cannot resume 'runs/train/last.pt' with --base-channels 16 (the checkpoint has 8): the model shape cannot change on resume. Drop --base-channels to continue the run as it was, or start a new run in another folder (--out-dir NEW_DIR, without --resume).
    """
    refused = [(what, name) for what, names in FIXED.items() for name in names if name in changes]
    if not refused:
        return
    given = ", ".join(f"{flag(name)} {changes[name][1]} (the checkpoint has {changes[name][0]})" for _, name in refused)
    whats = ", ".join(dict.fromkeys(what for what, _ in refused))
    flags = " ".join(flag(name) for _, name in refused)
    raise ConfigError(
        f"Cannot resume {str(path)!r} with {given}: {whats} cannot change on resume. Drop {flags} to continue the "
        "run as it was, or start a new run in another folder (--out-dir NEW_DIR, without --resume)."
    )


def apply_changes(optimizer: torch.optim.Optimizer, scheduler: Any, cfg: TrainConfig,
                  changes: dict[str, tuple[Any, Any]]) -> None:
    """Write the changed settings into the restored optimiser and scheduler.
    把修改后的设置写入恢复后的优化器与调度器

    ``lr``, ``weight_decay`` and ``momentum`` go into every parameter group (and the scheduler's base LR);
    ``plateau_patience`` / ``plateau_factor`` into ``ReduceLROnPlateau``. A cosine/poly scheduler recomputes the
    LR of the coming epoch from its (new) ``epochs``/``warmup_epochs``, so a longer run extends the schedule.
    Other settings (``grad_clip``, ``batch_size``, ...) are read from ``cfg`` each epoch and need nothing here.
    lr/weight_decay/momentum 写入每个参数组；cosine/poly 调度按新的轮数重新计算下一轮的学习率
    """
    for group in optimizer.param_groups:
        if "lr" in changes:
            group["lr"] = cfg.lr
            group["initial_lr"] = cfg.lr
        if "weight_decay" in changes:
            group["weight_decay"] = cfg.weight_decay
        if "momentum" in changes and "momentum" in group:
            group["momentum"] = cfg.momentum
            if "nesterov" in group:
                group["nesterov"] = cfg.momentum > 0       # 与 build_optimizer 的规则一致
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.patience, scheduler.factor = int(cfg.plateau_patience), float(cfg.plateau_factor)
    elif isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        if "lr" in changes:
            scheduler.base_lrs = [cfg.lr for _ in optimizer.param_groups]
        for group, base, rule in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base * rule(scheduler.last_epoch)          # 按新的轮数计算下一轮的学习率
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def log_changes(changes: dict[str, tuple[Any, Any]], source: str, optimizer: torch.optim.Optimizer) -> None:
    """One line per changed setting: ``resume: lr 0.003 -> 0.0003 (from the command line)``. 每项修改一行"""
    for name, (old, new) in changes.items():
        unused = name == "momentum" and "momentum" not in optimizer.param_groups[0]
        note = f" (not used by {type(optimizer).__name__})" if unused else ""
        logger.info("resume: %s %s -> %s (from %s)%s", name, old, new, source, note)
