"""``fit(cfg)``: everything ``unet-course train`` does, as ten numbered steps.
fit(cfg)：unet-course train 所做的全部工作，分为十个编号步骤

Each step of :func:`fit` is one call to a small function below, so the body reads like its docstring. The state
those steps share lives in one :class:`_Run` object. Two habits make runs trustworthy: a NaN/Inf loss stops
training at once (:class:`~unet_course.errors.NonFiniteLossError`) and a checkpoint is never written with broken
weights, so the last good ``last.pt`` survives; and each epoch reseeds every random generator from
``(seed, epoch)``, which makes ``--resume`` bit-exact on CPU. A resumed run starts from the saved settings and
applies what the user changed (:mod:`.resume`); SIGTERM and a time budget end a run early (:mod:`.stop`).
fit 的每一步都是对下面一个小函数的调用；各步共享的状态放在 _Run 中。两个习惯让训练可信：出现 NaN/Inf 损失立即停止
（绝不保存坏权重，上一个 last.pt 保留）；每轮按 (seed, epoch) 重新设定随机种子，使 CPU 上的续训结果逐位一致；
续训以保存的设置为基础并应用用户的修改；SIGTERM 与时间预算会提前结束训练
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import distributed
from ..checkpoint import (
    build_state,
    info_dict,
    load_checkpoint,
    restore_training_state,
    save_checkpoint,
    saved_train_config,
)
from ..config import TrainConfig
from ..env import pick_device, seed_everything
from ..files import write_json
from ..losses import SegmentationLoss
from ..model import unwrap_model
from ..precision import AmpPolicy, amp_policy, make_scaler, prefer_channels_last
from ..tracking import Tracker
from .history import History, monitor_value
from .loop import evaluate, train_one_epoch
from .optim import build_optimizer, build_scheduler, step_scheduler
from .prepare import (
    build_unet,
    call_callbacks,
    class_and_channel_counts,
    example_batch,
    prepare_output,
    progress_mode,
    reseed_epoch,
    resolve_data,
)
from .reporting import log_epoch, log_finished, metrics_report, setup_logging, summary_block
from .resume import apply_changes, check_fixed, log_changes, resume_changes
from .stop import EpochPlan, StopOnSignal, signal_name

logger = logging.getLogger("unet_course")


@dataclass
class _Run:
    """What the steps of one :func:`fit` call share. 一次 fit 调用中各步骤共享的状态"""

    cfg: TrainConfig
    device: torch.device
    dinfo: distributed.DistInfo
    out_dir: Path
    resume_path: Path | None
    t_start: float = field(default_factory=time.perf_counter)
    train_loader: DataLoader | None = None
    val_loader: DataLoader | None = None
    has_val: bool = True                     # 是否有验证集；没有时按训练损失选择 best.pt
    info: Any = None
    n_classes: int = 2
    in_channels: int = 1
    model: nn.Module | None = None
    policy: AmpPolicy | None = None
    loss_fn: Any = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    scaler: torch.amp.GradScaler | None = None
    history: History = field(default_factory=History)
    start_epoch: int = 0
    global_step: int = 0
    run_id: str | None = None
    wall_before: float = 0.0                 # 之前（被续训的）运行的耗时
    tracker: Tracker | None = None
    resume_ckpt: dict[str, Any] | None = None              # 续训检查点（第 6 步用完即释放）
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)   # 续训时修改的设置
    kept: tuple[Path, int] | None = None     # 磁盘上最新的完整检查点及其轮次
    stopper: StopOnSignal | None = None
    main: bool = field(init=False)
    progress: str = field(init=False)
    plan: EpochPlan = field(init=False)

    def __post_init__(self) -> None:
        self.history.out_dir = str(self.out_dir)
        self.main = self.dinfo.is_main       # 只有 0 号进程写文件与日志
        self.progress = progress_mode(self.cfg.progress, self.main)
        self.plan = EpochPlan(self.cfg.epochs, self.cfg.time_budget, started=self.t_start)

    def wall(self) -> float:
        """Seconds spent so far, summed over resumed runs. 至今的总耗时（含被续训的运行）"""
        return self.wall_before + time.perf_counter() - self.t_start


def fit(cfg: TrainConfig, *, train_loader: DataLoader | None = None, val_loader: DataLoader | None = None,
        info: Any = None, model: nn.Module | None = None, loss_fn: nn.Module | None = None,
        callbacks: Sequence[Any] | None = None, changes_from: str = "the config",
        stop_signals: Sequence[int] = (signal.SIGTERM,)) -> History:
    """Train a U-Net as described by ``cfg``; return its :class:`History`.
    按 cfg 训练 U-Net，返回训练历史

    1. the output folder (checked writable) and the checkpoint to resume from, whose saved settings may change
       only where :mod:`.resume` allows; 输出目录与续训文件（只允许修改可以修改的设置）
    2. seed every generator; 设定随机种子
    3. the data: the given loaders or :func:`unet_course.data.build_loaders`, checked against ``cfg``; 数据
    4. the model on the device, in the memory format the *混合精度*（mixed precision）policy prefers; 模型与精度策略
    5. loss, optimiser, *学习率调度器*（learning rate scheduler）and loss scaler; 损失、优化器、调度器与缩放器
    6. resume: weights, optimiser, scheduler, scaler, RNG, epoch and history from the *检查点*（checkpoint）,
       then the changed settings; 续训：恢复全部状态，再应用修改的设置
    7. DDP wrapping and per-rank samplers when ``torchrun`` started us; 分布式包装
    8. the tracker (``metrics.jsonl``, and wandb when on); 实验记录器
    9. per *轮*（epoch）, until ``epochs`` or the time budget: train, validate, step the scheduler, save
       ``best.pt`` / ``last.pt`` / ``history.json``; SIGTERM stops at once, keeping the last checkpoint;
       每轮：训练、验证、调度、保存；SIGTERM 立即停止并保留最后的检查点
    10. ``metrics.json`` and the closing summary. 写出 metrics.json 与总结

    Args:
        cfg: every knob of the run (see :class:`~unet_course.config.TrainConfig`). 训练配置
        train_loader, val_loader: ready loaders; None builds them with :func:`unet_course.data.build_loaders`.
            No validation loader: ``best.pt`` follows the training loss. 无验证集时按训练损失选择 best.pt
        info: the ``DataInfo`` of those loaders; read from the dataset when omitted. 数据信息
        model: a ready network; None builds a :class:`~unet_course.model.UNet` from ``cfg``. 已构建的网络
        loss_fn: ``loss_fn(logits, target) -> scalar``; None builds :class:`~unet_course.losses.SegmentationLoss`.
        callbacks: ``on_epoch_end(state)`` objects or callables ``cb(state)`` (``state``: ``epoch``, ``history``,
            ``metrics``, ``model``, ``cfg``); True or ``state["stop"] = True`` ends training after this epoch.
        changes_from: how the resume lines name where changed settings came from. 修改来源的说法
        stop_signals: signals that stop training after the epoch's files are written, keeping the last complete
            checkpoint (the command line adds SIGINT, Ctrl-C). 停止训练并保留最后完整检查点的信号

    Returns:
        The :class:`History` (also written to ``<out_dir>/history.json``).

    Raises:
        ConfigError: bad values, an unwritable ``out_dir``, data that do not fit, a fixed setting changed on resume.
        CheckpointError: ``cfg.resume`` missing, corrupt, or made for other classes/channels.
        NonFiniteLossError: the loss became NaN/Inf (the last good checkpoint is kept).
        TrainingStopped: one of ``stop_signals`` arrived (the last complete checkpoint is kept; the message names
            the resume command).
        OutputError: a full disk or an unwritable file (the earlier files are kept).
    """
    setup_logging()
    cfg.validate()
    dinfo, device, created = distributed.setup(pick_device(cfg.device))
    run: _Run | None = None
    try:
        run = _start(cfg, device, dinfo)                                            # 1 输出目录与续训文件
        seed_everything(cfg.seed, deterministic=cfg.deterministic)                  # 2 随机种子
        _load_data(run, train_loader, val_loader, info)                             # 3 数据
        _place_model(run, model)                                                    # 4 模型与精度策略
        _build_optimisation(run, loss_fn)                                           # 5 损失、优化器、调度器
        _resume(run, changes_from)                                                  # 6 续训
        _distribute(run)                                                            # 7 分布式
        run.tracker = _open_tracker(run)                                            # 8 实验记录
        with run.tracker, StopOnSignal(lambda signum: stop_message(run, signum),
                                        tuple(stop_signals)) as run.stopper:
            _train_epochs(run, list(callbacks or []))                               # 9 逐轮训练
            _write_reports(run)                                                     # 10 报告
        distributed.debug_dump(run.model)
        distributed.barrier()
        return run.history
    finally:
        if run is not None:
            _release_loaders(run)
        distributed.cleanup(created)


def _release_loaders(run: _Run) -> None:
    """Let the data loaders' worker processes end now, in this process. The stop handler refers back to the run,
    so without this the loaders waited for the garbage collector, and a process forked before it ran (the next
    ``cv`` fold's workers) inherited them and printed "can only test a child process" when collecting its copies.
    释放数据加载器，使其工作进程现在就在本进程中结束（否则之后 fork 的进程会继承它们并在回收时报错）
    """
    run.stopper = None
    run.train_loader = run.val_loader = None


# ----------------------------------------------------------------------------------------------------------------
# Steps 1 and 3-8: set-up 准备
# ----------------------------------------------------------------------------------------------------------------
def _start(cfg: TrainConfig, device: torch.device, dinfo: distributed.DistInfo) -> _Run:
    """The run's state; on resume, read the checkpoint and refuse changes of fixed settings. 续训时先检查设置"""
    run = _Run(cfg, device, dinfo, *prepare_output(cfg, dinfo.is_main))
    if run.resume_path is not None:
        run.resume_ckpt = load_checkpoint(run.resume_path, map_location="cpu")
        run.changes = resume_changes(saved_train_config(run.resume_ckpt, run.resume_path), cfg)
        check_fixed(run.changes, run.resume_path)                  # 模型结构等不能修改
    return run


def _load_data(run: _Run, train_loader: DataLoader | None, val_loader: DataLoader | None, info: Any) -> None:
    run.train_loader, run.val_loader, run.info = resolve_data(run.cfg, run.device, train_loader, val_loader, info)
    run.n_classes, run.in_channels = class_and_channel_counts(run.cfg, run.info)
    dataset = getattr(run.val_loader, "dataset", None)
    run.has_val = run.val_loader is not None and (not hasattr(dataset, "__len__") or len(dataset) > 0)
    run.history.monitor = "val_dice" if run.has_val else "train_loss"


def _place_model(run: _Run, model: nn.Module | None) -> None:
    if model is None:
        model = build_unet(run.cfg, run.n_classes, run.in_channels)
    run.policy = amp_policy(run.device, run.cfg.amp)
    if run.cfg.channels_last is None:                  # 自动：只在 NHWC 更快的设备与精度上使用
        run.cfg = run.cfg.replace(channels_last=prefer_channels_last(run.device, run.policy))
    memory_format = torch.channels_last if run.cfg.channels_last else torch.contiguous_format
    run.model = model.to(device=run.device, memory_format=memory_format)


def _build_optimisation(run: _Run, loss_fn: Any) -> None:
    cfg = run.cfg
    if loss_fn is None:
        loss_fn = SegmentationLoss(mode=cfg.mode, ce_weight=cfg.ce_weight, dice_weight=cfg.dice_weight,
                                   ignore_index=cfg.ignore_index, class_weights=cfg.class_weights)
    run.loss_fn = loss_fn.to(run.device) if isinstance(loss_fn, nn.Module) else loss_fn
    run.optimizer = build_optimizer(run.model, cfg)
    run.scheduler = build_scheduler(run.optimizer, cfg, higher_is_better=run.has_val,
                                    total_epochs=lambda: run.plan.epochs)      # 时间预算会重新规划轮数
    run.scaler = make_scaler(run.policy)


def _resume(run: _Run, changes_from: str) -> None:
    if run.resume_path is None:
        return
    state = restore_training_state(run.resume_path, run.model, run.optimizer, run.scheduler, run.scaler,
                                   n_classes=run.n_classes, in_channels=run.in_channels,
                                   mask_values=list(run.info.mask_values), ckpt=run.resume_ckpt)
    apply_changes(run.optimizer, run.scheduler, run.cfg, run.changes)  # 命令行给出的新设置优先
    if run.main:
        log_changes(run.changes, changes_from, run.optimizer)
    run.resume_ckpt = None                                             # 释放内存
    monitor = run.history.monitor
    run.history = History.from_dict(state.history)
    run.history.out_dir, run.history.monitor = str(run.out_dir), monitor
    run.start_epoch, run.global_step, run.run_id = state.epoch, state.global_step, state.run_id
    run.wall_before = state.wall_time
    run.kept = (run.resume_path, state.epoch)


def _distribute(run: _Run) -> None:
    run.model = distributed.wrap_model(run.model, run.dinfo, run.device, sync_batchnorm=run.cfg.sync_batchnorm)
    run.train_loader, run.val_loader = distributed.distributed_loaders(run.train_loader, run.val_loader, run.dinfo,
                                                                       run.cfg.seed)


def _open_tracker(run: _Run) -> Tracker:
    cfg = run.cfg
    return Tracker(cfg.wandb_mode, project=cfg.wandb_project, run_name=cfg.wandb_run_name,
                   config={**cfg.to_dict(), "data": info_dict(run.info)}, dir=run.out_dir, resume_id=run.run_id,
                   main_process=run.main, new_log=run.resume_path is None)


def stop_message(run: _Run, signum: int = signal.SIGTERM) -> str:
    """What a stop signal says: which complete checkpoint is kept and the command that continues from it.
    收到停止信号时的消息：保留了哪个完整的检查点，以及续训命令
    """
    how = signal_name(signum)
    if run.kept is None:
        return (f"Training was stopped by {how} before its first checkpoint was written, so nothing was saved. "
                "Run the same command again to start over.")
    path, epoch = run.kept
    launcher = "torchrun <the same options> -m unet_course" if run.dinfo.world_size > 1 else "unet-course"
    return (f"Training was stopped by {how} after epoch {epoch}; the last complete checkpoint {str(path)!r} "
            f"(epoch {epoch}) is kept and the unfinished epoch was not saved. Continue with: "
            f"{launcher} train --resume {path}")


# ----------------------------------------------------------------------------------------------------------------
# Step 9: the epochs 逐轮训练
# ----------------------------------------------------------------------------------------------------------------
def _train_epochs(run: _Run, callbacks: list[Any]) -> None:
    cfg = run.cfg
    if run.main and run.progress != "none":
        tracking = f"wandb {run.tracker.mode}" + (f" ({run.tracker.run_dir})" if run.tracker.run_dir else "")
        logger.info(summary_block(cfg, run.info, run.model, run.device, run.policy, run.out_dir, run.start_epoch,
                                  run.resume_path, run.dinfo.world_size, tracking,
                                  getattr(run.train_loader, "batch_size", None), run.history.monitor_text))
    if run.main and run.start_epoch >= cfg.epochs:
        logger.info("Checkpoint already holds %d epoch(s) >= epochs=%d; nothing to train. Raise --epochs to "
                    "continue.", run.start_epoch, cfg.epochs)
    for epoch in range(run.start_epoch + 1, cfg.epochs + 1):
        train_loss, metrics, improved = _one_epoch(run, epoch)
        asked = _callbacks_stop(run, callbacks, epoch, train_loss, metrics)
        final = asked or run.plan.is_last(epoch)
        with run.stopper.hold():                          # 本轮的文件写完之前不响应 SIGTERM
            distributed.main_does(partial(_save_epoch, run, epoch, train_loss, metrics, improved, final),
                                  run.device, f"writing the files of epoch {epoch}")
        if final:
            _log_early_end(run, epoch, asked)
            break


def _one_epoch(run: _Run, epoch: int) -> tuple[float, dict[str, Any], bool]:
    """Train, validate and step the scheduler; record the epoch. Returns (train loss, metrics, new best?)."""
    cfg = run.cfg
    t0 = time.perf_counter()
    run.plan.begin_epoch(t0)
    reseed_epoch(run.train_loader, cfg.seed, epoch - 1, run.dinfo.rank)     # 每轮按 (seed, epoch) 重设随机状态
    lr = run.optimizer.param_groups[0]["lr"]
    train = train_one_epoch(run.model, run.train_loader, run.optimizer, run.loss_fn, run.device, run.policy,
                            run.scaler, epoch=epoch, epochs=cfg.epochs, grad_clip=cfg.grad_clip,
                            max_steps=cfg.max_steps, channels_last=cfg.channels_last, global_step=run.global_step,
                            progress=run.progress, tracker=run.tracker)
    run.global_step = train["global_step"]
    distributed.broadcast_buffers(run.model)                                 # 各进程的 BN 统计量与 0 号进程一致
    metrics: dict[str, Any] = {}
    if run.has_val:                          # 每个进程都评估（分片为空也要参加求和）
        metrics = evaluate(run.model, run.val_loader, run.loss_fn, run.device, run.policy, run.n_classes, cfg.mode,
                           cfg.threshold, cfg.ignore_index, channels_last=cfg.channels_last, max_steps=cfg.max_steps)
    run.plan.epochs = int(distributed.from_main(run.plan.end_epoch(epoch), run.device))  # 各进程使用同一计划
    step_scheduler(run.scheduler, monitor_value(metrics) if run.has_val else train["loss"])
    improved = run.history.record(epoch, train_loss=train["loss"], metrics=metrics, lr=lr,
                                  seconds=time.perf_counter() - t0, global_step=run.global_step)
    return train["loss"], metrics, improved


def checkpoint_names(epoch: int, cfg: TrainConfig, improved: bool, final: bool = False) -> list[str]:
    """Which checkpoints epoch ``epoch`` writes: ``best.pt`` on a new best, ``last.pt`` every ``save_every``
    epochs and after the last one (``final``: a callback or the time budget ends the run here). 本轮写哪些检查点

    >>> checkpoint_names(2, TrainConfig(epochs=5, save_every=2), improved=True)
    ['best.pt', 'last.pt']
    >>> checkpoint_names(3, TrainConfig(epochs=5, save_every=2), improved=False)
    []
    >>> checkpoint_names(3, TrainConfig(epochs=5, save_every=2), improved=False, final=True)
    ['last.pt']
    """
    names = ["best.pt"] if improved else []
    if epoch % cfg.save_every == 0 or epoch == cfg.epochs or final:
        names.append("last.pt")
    return names


def _save_epoch(run: _Run, epoch: int, train_loss: float, metrics: dict[str, Any], improved: bool,
                final: bool) -> None:
    """Rank 0: checkpoints, ``history.json``, the epoch line and the tracker. 0 号进程：检查点、历史、日志与记录"""
    _save_checkpoints(run, epoch, improved, final)
    write_json(run.out_dir / "history.json", run.history.to_dict(), what="history")
    if run.progress != "none":
        log_epoch(epoch, run.cfg.epochs, train_loss, metrics, run.history.lr[-1], run.history.epoch_time[-1],
                  improved, run.history.monitor_text)
    _track_epoch(run, epoch, train_loss, metrics)


def _save_checkpoints(run: _Run, epoch: int, improved: bool, final: bool) -> None:
    names = checkpoint_names(epoch, run.cfg, improved, final)
    if not names:
        return
    history = run.history
    history.wall_time = run.wall()
    if "best.pt" in names:                                 # 路径先写入历史，再随历史存入检查点
        history.best_checkpoint = str(run.out_dir / "best.pt")
    if "last.pt" in names:
        history.last_checkpoint = str(run.out_dir / "last.pt")
    state = build_state(run.model, run.optimizer, run.scheduler, run.scaler, cfg=run.cfg, info=run.info,
                        n_classes=run.n_classes, in_channels=run.in_channels, epoch=epoch,
                        global_step=run.global_step, history=history.to_dict(), run_id=run.tracker.run_id)
    for name in names:
        save_checkpoint(run.out_dir / name, state)
    if "last.pt" in names:
        run.kept = (run.out_dir / "last.pt", epoch)


def _track_epoch(run: _Run, epoch: int, train_loss: float, metrics: dict[str, Any]) -> None:
    cfg, tracker = run.cfg, run.tracker
    scalars = {"val/" + k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    tracker.log(scalars | {"train/epoch_loss": train_loss, "epoch": epoch}, step=run.global_step)
    if not tracker.enabled or not run.has_val:             # 图像与直方图只发给 wandb
        return
    example = example_batch(run.model, run.val_loader, run.device, run.policy, cfg.mode, cfg.threshold,
                            cfg.channels_last)
    if example is not None:
        tracker.log_segmentation(*example, step=run.global_step, mean=list(run.info.mean), std=list(run.info.std),
                                 class_names=list(run.info.class_names), ignore_index=cfg.ignore_index)
    tracker.log_histograms(unwrap_model(run.model), step=run.global_step)


def _callbacks_stop(run: _Run, callbacks: list[Any], epoch: int, train_loss: float, metrics: dict[str, Any]) -> bool:
    state = {"epoch": epoch, "epochs": run.cfg.epochs, "history": run.history, "metrics": metrics,
             "train_loss": train_loss, "model": unwrap_model(run.model), "cfg": run.cfg, "stop": False}
    return distributed.any_rank(call_callbacks(callbacks, state), run.device)   # 所有进程一起停止


def _log_early_end(run: _Run, epoch: int, asked: bool) -> None:
    if not run.main or epoch >= run.cfg.epochs:
        return
    if asked:
        logger.info("A callback asked to stop after epoch %d.", epoch)
    else:
        logger.info("Time budget %g s: stopping after epoch %d (%.1f s used; epochs=%d is the upper bound).",
                    run.cfg.time_budget, epoch, run.plan.used(), run.cfg.epochs)


# ----------------------------------------------------------------------------------------------------------------
# Step 10: reports 报告
# ----------------------------------------------------------------------------------------------------------------
def _write_reports(run: _Run) -> None:
    run.history.wall_time = run.wall()
    with run.stopper.hold():
        distributed.main_does(lambda: _write_main_reports(run), run.device, "writing metrics.json")


def _write_main_reports(run: _Run) -> None:
    history = run.history
    write_json(run.out_dir / "history.json", history.to_dict(), what="history")
    last_epoch = history.epoch[-1] if history.epoch else run.start_epoch
    report = metrics_report(run.cfg, info_dict(run.info), run.device, run.dinfo.world_size, run.policy, history,
                            time_budget=run.plan.report(last_epoch))
    write_json(run.out_dir / "metrics.json", report, what="metrics report")
    run.tracker.summary({"best_" + history.monitor: history.best_metric, "best_epoch": history.best_epoch})
    if run.progress != "none":
        log_finished(history, run.out_dir)
