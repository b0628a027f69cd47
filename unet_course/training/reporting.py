"""What a run tells the reader: log set-up, the start banner, one line per epoch, and ``metrics.json``.
训练运行向读者报告的内容：日志设置、开始时的摘要、每轮一行日志，以及 metrics.json
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..env import cpu_info, in_notebook
from ..model import unwrap_model
from ..precision import AmpPolicy
from .history import History, monitor_value

logger = logging.getLogger("unet_course")


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


def hardware_info(device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """Device, thread and CUDA facts for ``metrics.json``. 写入 metrics.json 的硬件信息

    >>> info = hardware_info(torch.device("cpu"))
    >>> info["device"], info["world_size"], info["cuda_name"]
    ('cpu', 1, None)
    """
    return {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "world_size": world_size,
        "torch": torch.__version__,
        "cuda_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "platform": sys.platform,
        "cpu": cpu_info(),
    }


def precision_text(policy: AmpPolicy | None) -> str:
    """A readable name of the AMP policy. 混合精度策略的可读名称

    >>> from unet_course.precision import amp_policy
    >>> precision_text(amp_policy("cpu", "off")), precision_text(amp_policy("cpu", "bf16"))
    ('fp32 (AMP off)', 'bfloat16 autocast')
    """
    if policy is None or not policy.enabled:
        return "fp32 (AMP off)"
    scaler = " + GradScaler" if policy.use_scaler else ""
    return f"{str(policy.dtype).replace('torch.', '')} autocast{scaler}"


def summary_block(cfg: TrainConfig, info: Any, model: nn.Module, device: torch.device, policy: AmpPolicy,
                  out_dir: Path, start_epoch: int, resume_path: Path | None, world: int, tracker_text: str,
                  batch_size: int | None, monitor_text: str = "val Dice") -> str:
    """The "Starting training:" banner: data, model, loss, schedule, device, precision, outputs.
    开始训练时打印的摘要：数据、模型、损失、轮数、设备、精度与输出位置
    """
    n_params = sum(p.numel() for p in model.parameters())
    mc = getattr(unwrap_model(model), "config", {}) or {}
    enhance = getattr(info, "enhance", "none")
    lines = [
        "Starting training:",
        f"    Dataset:      {cfg.dataset} ({getattr(info, 'n_train', '?')} train, {getattr(info, 'n_val', '?')} val, "
        f"{info.n_classes} classes, mask_values {list(info.mask_values)}, {info.in_channels} input channel(s)"
        + (f", enhance {enhance})" if enhance != "none" else ")"),
        f"    Model:        UNet base {mc.get('base_channels', '?')}, depth {mc.get('depth', '?')}, "
        f"{'bilinear' if mc.get('bilinear') else 'transposed-conv'} up-sampling, {n_params / 1e6:.2f} M parameters",
        f"    Loss:         {cfg.mode} (CE x{cfg.ce_weight} + Dice x{cfg.dice_weight})",
        f"    Epochs:       {cfg.epochs} (starting at {start_epoch + 1}), batch size {batch_size or cfg.batch_size}"
        + (f", max {cfg.max_steps} steps/epoch" if cfg.max_steps else "")
        + (f", time budget {cfg.time_budget:g} s (the schedule spans the epochs that fit; at most {cfg.epochs})"
           if cfg.time_budget else ""),
        f"    Optimiser:    {cfg.optimizer}, lr {cfg.lr:g}, weight decay {cfg.weight_decay:g}, "
        f"scheduler {cfg.scheduler}, grad clip {cfg.grad_clip}",
        f"    Device:       {device} ({torch.get_num_threads()} threads)" + (f", {world} processes" if world > 1 else ""),
        f"    Precision:    {precision_text(policy)}, channels_last={cfg.channels_last}",
        f"    Checkpoints:  {out_dir} (last.pt every {cfg.save_every} epoch(s), best.pt on a new best {monitor_text}"
        + (": no validation split, so the lowest training loss)" if monitor_text == "train loss" else ")"),
        f"    Resume:       {resume_path if resume_path else 'no'}",
        f"    Tracking:     {tracker_text}",
    ]
    return "\n".join(lines)


def log_epoch(epoch: int, epochs: int, train_loss: float, metrics: dict[str, Any], lr: float, seconds: float,
              improved: bool, monitor_text: str = "val Dice") -> None:
    """One log line per epoch: losses, validation Dice (or "no validation"), learning rate, time. 每轮一行日志"""
    val = "  (no validation)"
    if metrics:
        dice = monitor_value(metrics)
        val = f"  val loss {metrics.get('loss', float('nan')):.4f}  val Dice {dice if dice is not None else float('nan'):.4f}"
        if "pixel_accuracy" in metrics:
            val += f"  pixel acc {metrics['pixel_accuracy']:.4f}"
    logger.info("epoch %d/%d  train loss %.4f%s  lr %.2e  %.1f s%s", epoch, epochs, train_loss, val, lr, seconds,
                f"  (new best {monitor_text})" if improved else "")


def log_finished(history: History, out_dir: Path) -> None:
    """The closing line: best validation Dice (or training loss), its epoch, wall time, output folder. 结束时的总结"""
    best = f"{history.best_metric:.4f}" if history.best_metric is not None else "n/a"
    logger.info("Finished: best %s %s at epoch %s; %.1f s; outputs in %s", history.monitor_text, best,
                history.best_epoch, history.wall_time, out_dir)


def metrics_report(cfg: TrainConfig, info_dict: dict[str, Any], device: torch.device, world_size: int,
                   policy: AmpPolicy, history: History, time_budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """The content of ``metrics.json``: config, data, hardware, precision, wall time, final and best metrics.
    metrics.json 的内容：配置、数据、硬件、精度、耗时、最终与最佳指标

    ``best.monitor`` says what chose ``best.pt``: ``"val_dice"``, or ``"train_loss"`` without a validation split
    (then ``best.value`` is that loss and ``best.val_dice`` is None). ``time_budget`` holds the budget, the
    seconds used and the planned epochs (None without a budget). best.monitor 说明 best.pt 的选择依据
    """
    best_idx = history.epoch.index(history.best_epoch) if history.best_epoch in history.epoch else None
    return {
        "config": cfg.to_dict(),
        "data": info_dict,
        "hardware": hardware_info(device, world_size),
        "precision": {"policy": precision_text(policy), "amp": cfg.amp},
        "wall_time_s": history.wall_time,
        "epochs_run": len(history.epoch),
        "global_step": history.global_step,
        "final": {"epoch": history.epoch[-1] if history.epoch else None,
                  "train_loss": history.train_loss[-1] if history.train_loss else None,
                  "val_dice": history.val_dice[-1] if history.val_dice else None,
                  "val_metrics": history.val_metrics[-1] if history.val_metrics else {}},
        "best": {"epoch": history.best_epoch, "monitor": history.monitor, "value": history.best_metric,
                 "val_dice": history.best_metric if history.monitor == "val_dice" else None,
                 "val_metrics": history.val_metrics[best_idx] if best_idx is not None else {}},
        "validation": "none: best.pt has the lowest training loss" if history.monitor == "train_loss" else "val split",
        "time_budget": time_budget,
        "checkpoints": {"last": history.last_checkpoint, "best": history.best_checkpoint},
    }
