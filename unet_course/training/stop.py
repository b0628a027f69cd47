"""When training ends early: a SIGTERM from a job scheduler, or the end of a time budget.
训练提前结束的两种情况：作业调度器发来的 SIGTERM，以及用完时间预算

**SIGTERM** (Kaggle, Slurm and other schedulers send it at their time limit). :class:`StopOnSignal` installs a
handler for the duration of ``fit`` only and puts the old one back afterwards. The handler raises
:class:`TrainingStopped` at once, whether a step is running or the loader is waiting for data: nothing is
saved after it, so an interrupted epoch never becomes a checkpoint that would not resume exactly. Only the
writing of one epoch's files (checkpoints, ``history.json``, the metrics log) is held back until it is
complete (:meth:`StopOnSignal.hold`). ``unet-course train`` then prints one line naming the resume command and
exits with code 143 (128 + 15, as a shell reports a SIGTERM). The command line treats Ctrl-C (SIGINT) the same
way and exits with 130; in a notebook Ctrl-C stays Python's ``KeyboardInterrupt``.
SIGTERM：只在 fit 期间安装处理函数，结束后恢复原来的；收到信号立即停止（不保存未完成的一轮），只有正在写的
检查点等文件会先写完；命令行打印续训命令并以 143 退出。命令行对 Ctrl-C 同样处理（退出码 130），notebook 中不变

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
        exit_code: ``128 + signal number`` (143 for SIGTERM, 130 for Ctrl-C), what ``unet-course train`` exits
            with. 退出码
        signum: the signal that stopped training. 停止训练的信号
    """

    def __init__(self, message: str, signum: int = signal.SIGTERM) -> None:
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


def signal_name(signum: int) -> str:
    """How a message names a signal: Ctrl-C for SIGINT, the signal's own name otherwise. 消息中信号的说法

    >>> signal_name(signal.SIGINT), signal_name(signal.SIGTERM)
    ('Ctrl-C (SIGINT)', 'SIGTERM')
    """
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name


def _child_ended(signum: int, frame: FrameType | None) -> None:
    """SIGCHLD once training is stopping: a DataLoader worker's end is expected, so nothing is reported. A handler
    rather than SIG_DFL, so that a SIGCHLD already pending is not reported by Python as "ignored due to race
    condition". 停止训练时的 SIGCHLD：工作进程结束在预料之中，不报告
    """


class StopOnSignal:
    """A context manager that turns SIGTERM (and any other signal it is given) into :class:`TrainingStopped` while
    it is active. 在作用范围内把 SIGTERM（及指定的其他信号）转为 TrainingStopped 的上下文管理器

    Args:
        message: called with the signal number when a signal arrives; returns what the error says (which
            checkpoint is kept, the resume command). 收到信号时以信号编号调用，返回错误消息
        signals: the signals to catch (default SIGTERM; the command line adds SIGINT, so Ctrl-C also waits for
            the epoch's files and names the checkpoint). 要捕获的信号（命令行另加 SIGINT）

    Outside the main thread (signal handlers can only be set there) it does nothing. A forked DataLoader worker
    inherits the handler and ignores the signal: Ctrl-C and schedulers signal the whole process group, the main
    process stops and shuts its workers down, whereas a worker killed by the signal would make PyTorch report a
    crashed worker (a traceback after the stop message). PyTorch's own SIGTERM handler in its workers still ends
    them, so once a stop signal has arrived the main process no longer treats a worker's end as a crash (its
    SIGCHLD handler is replaced by one that does nothing).
    不在主线程时不做任何事；DataLoader 工作进程忽略该信号，由主进程关闭（被信号杀死的工作进程会让 PyTorch 报告崩溃）；
    收到停止信号后，主进程不再把工作进程的退出当作崩溃
    """

    def __init__(self, message: Callable[[int], str], signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
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
        if os.getpid() != self._pid:                   # a forked worker: the main process shuts it down 工作进程：由主进程关闭
            return
        self.received = signum
        if hasattr(signal, "SIGCHLD"):                 # workers ending with us are expected, not a crash 不再报告工作进程退出
            signal.signal(signal.SIGCHLD, _child_ended)
        if self._held == 0:
            raise self.error()

    def error(self) -> TrainingStopped:
        """The error to raise for the received signal. 收到信号后抛出的错误"""
        signum = self.received or signal.SIGTERM
        return TrainingStopped(self._message(signum), signum)

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
