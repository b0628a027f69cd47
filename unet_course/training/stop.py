"""When training ends early: a SIGTERM from a job scheduler, or the end of a time budget.
训练提前结束的两种情况：作业调度器发来的 SIGTERM，以及用完时间预算

**SIGTERM** (Kaggle, Slurm and other schedulers send it at their time limit). :class:`StopOnSignal` installs a
handler for the duration of ``fit`` only and puts the old one back afterwards. The handler raises
:class:`TrainingStopped` at once, whether a step is running or the loader is waiting for data: nothing is
saved after it, so an interrupted epoch never becomes a checkpoint that would not resume exactly. Only the
writing of one epoch's files (checkpoints, ``history.json``, the metrics log) is held back until it is
complete (:meth:`StopOnSignal.hold`). ``unet-course train`` then prints one line naming the resume command and
exits with code 143 (128 + 15, as a shell reports a SIGTERM).
SIGTERM：只在 fit 期间安装处理函数，结束后恢复原来的；收到信号立即停止（不保存未完成的一轮），只有正在写的
检查点等文件会先写完；命令行打印续训命令并以 143 退出

**Time budget** (``time_budget`` seconds). :class:`EpochPlan` measures the mean time of an epoch (training,
validation and saving) and after each epoch plans how many epochs fit in the rest of the budget; the cosine and
poly schedules span that planned number (``epochs`` stays the upper bound), and the run stops, with its
checkpoints and reports, after the last epoch that fits. Choice: epochs are estimated from the measured speed,
re-estimated after every epoch, rather than an LR that follows the elapsed time, so that every epoch keeps one LR
and a checkpoint always ends a whole epoch.
时间预算：测量每轮平均耗时，每轮结束后估计剩余时间还能训练几轮；cosine/poly 调度覆盖该轮数，最后一轮后照常保存
并写报告；采用"按测得的速度估计轮数"而不是"按时间比例调整学习率"，每轮保持一个学习率，检查点总在整轮结束时
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType

from ..errors import UNetCourseError


class TrainingStopped(UNetCourseError):
    """Training was stopped by a signal; the last complete checkpoint is kept and the message says how to resume.
    训练被信号停止；最后一个完整的检查点保留，消息给出续训命令

    Attributes:
        exit_code: ``128 + signal number`` (143 for SIGTERM), what ``unet-course train`` exits with. 退出码
    """

    def __init__(self, message: str, signum: int = signal.SIGTERM) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


class StopOnSignal:
    """A context manager that turns SIGTERM into :class:`TrainingStopped` while it is active.
    在作用范围内把 SIGTERM 转为 TrainingStopped 的上下文管理器

    Args:
        message: called when the signal arrives; returns what the error says (which checkpoint is kept, the
            resume command). 收到信号时调用，返回错误消息
        signals: the signals to catch (default SIGTERM). 要捕获的信号

    Outside the main thread (signal handlers can only be set there) it does nothing. In a forked DataLoader worker
    the inherited handler falls back to the default action, so workers simply end.
    不在主线程时不做任何事；DataLoader 工作进程中恢复默认行为
    """

    def __init__(self, message: Callable[[], str], signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
        self._message, self._signals = message, signals
        self._old: dict[int, object] = {}
        self._pid = os.getpid()
        self._held = 0
        self.received: int | None = None

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in self._signals:
                self._old[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)                 # 恢复原来的处理函数
        self._old.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:                   # 继承了处理函数的工作进程：按默认方式结束
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signum
        if self._held == 0:
            raise self.error()

    def error(self) -> TrainingStopped:
        """The error to raise for the received signal. 收到信号后抛出的错误"""
        signum = self.received or signal.SIGTERM
        return TrainingStopped(self._message(), signum)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Let the block finish before a signal that arrives inside it stops training (used for file writes).
        在块内收到的信号等块执行完再生效（用于写文件）
        """
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if self._held == 0 and self.received is not None:
            raise self.error()


@dataclass
class EpochPlan:
    """How many epochs the run trains: ``epochs``, or with a time budget as many as fit in it.
    本次运行训练多少轮：epochs，或在时间预算内能完成的轮数

    Args:
        max_epochs: ``cfg.epochs``, the upper bound. 轮数上限
        budget: ``cfg.time_budget`` in seconds, or None. 时间预算（秒）
        started: ``time.perf_counter()`` when ``fit`` started (set-up counts against the budget). fit 开始的时刻

    >>> plan = EpochPlan(max_epochs=100, budget=10.0, started=0.0)
    >>> plan.begin_epoch(now=1.0); plan.end_epoch(1, now=3.0)     # set-up 1 s, one epoch 2 s -> 7 s left
    4
    >>> plan.is_last(4), plan.is_last(3)
    (True, False)
    """

    max_epochs: int
    budget: float | None = None
    started: float = field(default_factory=time.perf_counter)
    epochs: int = 0
    first_epoch_start: float | None = None
    epochs_here: int = 0

    def __post_init__(self) -> None:
        self.epochs = self.epochs or self.max_epochs

    def begin_epoch(self, now: float | None = None) -> None:
        """Note the start of the first epoch of this run. 记录本次运行第一轮开始的时刻"""
        if self.first_epoch_start is None:
            self.first_epoch_start = time.perf_counter() if now is None else now

    def end_epoch(self, epoch: int, now: float | None = None) -> int:
        """After ``epoch`` trained and validated: re-plan the number of epochs; return it.
        一轮训练与验证结束后重新估计总轮数并返回
        """
        if self.budget is None:
            return self.epochs
        now = time.perf_counter() if now is None else now
        self.epochs_here += 1
        per_epoch = max((now - (self.first_epoch_start or self.started)) / self.epochs_here, 1e-9)  # 平均每轮耗时
        left = self.budget - (now - self.started)                                              # 剩余预算
        self.epochs = min(self.max_epochs, epoch + max(0, math.floor(left / per_epoch)))
        return self.epochs

    def is_last(self, epoch: int) -> bool:
        """True if ``epoch`` is the last one the plan allows. 是否为计划中的最后一轮"""
        return epoch >= min(self.epochs, self.max_epochs)

    def used(self, now: float | None = None) -> float:
        """Seconds since ``fit`` started. fit 开始至今的秒数"""
        return (time.perf_counter() if now is None else now) - self.started

    def report(self, last_epoch: int) -> dict[str, object] | None:
        """The ``time_budget`` entry of ``metrics.json`` (None without a budget). metrics.json 中的预算信息"""
        if self.budget is None:
            return None
        return {"seconds": self.budget, "used_s": round(self.used(), 3), "planned_epochs": self.epochs,
                "epochs_run": self.epochs_here, "stopped_by_budget": last_epoch < self.max_epochs}
