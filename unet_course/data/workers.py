"""DataLoader worker set-up: seeding, the epoch's seed shared with persistent workers, quiet lost connections.
DataLoader 工作进程的初始化：随机种子、与常驻工作进程共享的每轮种子、主进程断开时保持安静

The package's loaders keep their workers from one epoch to the next (``persistent_workers=True``), so a worker's
random state would run on across epochs: the crops and flips of epoch ``e`` would depend on every epoch before it,
and a run resumed at epoch ``e`` (with fresh workers) would draw other augmentations than the run that never
stopped. :class:`WorkerSetup` is the loaders' ``worker_init_fn`` and holds the epoch's seed in shared memory:
``reseed_epoch`` stores it (:meth:`WorkerSetup.start_epoch`), and each worker reseeds from it and its id before
its first sample of the epoch (:func:`sync_worker_rng`, which ``SegmentationDataset.__getitems__`` calls).
常驻工作进程的随机状态会跨轮延续，续训时（新的工作进程）增强结果就与不中断的运行不同；因此每轮的种子放在共享内存中，
工作进程在本轮第一个样本之前据此（加上自己的编号）重设随机状态
"""

from __future__ import annotations

import multiprocessing
import random
import sys
from types import TracebackType

import numpy as np
import torch


class WorkerSetup:
    """``worker_init_fn`` of the package's loaders, with the epoch seed its workers share.
    本包数据加载器的 worker_init_fn，并保存与工作进程共享的每轮种子

    In the main process :meth:`start_epoch` stores the seed of the coming epoch; in each worker, ``__call__`` runs
    once when the worker starts and :meth:`sync` before each batch.
    """

    def __init__(self) -> None:
        self.epoch_seed = multiprocessing.RawValue("q", -1)  # shared memory; -1: no epoch yet 共享内存
        self.worker_id = -1
        self._seen = -1

    def __call__(self, worker_id: int) -> None:
        """Set up one worker: seed NumPy and ``random`` from torch's per-worker seed, remember the worker's id,
        and keep quiet when the main process goes away mid-transfer (see :func:`_quiet_lost_connection`).
        初始化一个工作进程：设置随机种子、记录编号、主进程中途退出时不打印回溯
        """
        global _ACTIVE
        seed = torch.initial_seed() % 2**32
        np.random.seed(seed)
        random.seed(seed)
        sys.excepthook = _quiet_lost_connection
        self.worker_id = int(worker_id)
        _ACTIVE = self

    def start_epoch(self, seed: int) -> None:
        """Main process: the coming epoch's seed, for every worker to reseed from. 主进程：写入下一轮的种子"""
        self.epoch_seed.value = int(seed) % 2**62

    def sync(self) -> None:
        """Worker: reseed torch, NumPy and ``random`` once per epoch, from the epoch's seed and the worker's id.
        工作进程：每轮一次，按本轮种子与自己的编号重设随机状态
        """
        seed = int(self.epoch_seed.value)
        if seed < 0 or seed == self._seen:
            return
        self._seen = seed
        own = seed + 1 + self.worker_id                     # as torch seeds workers: base seed + worker id
        torch.manual_seed(own)
        np.random.seed(own % 2**32)
        random.seed(own)


#: the :class:`WorkerSetup` of this process when it is a DataLoader worker of the package, else None 本进程的设置
_ACTIVE: WorkerSetup | None = None


def sync_worker_rng() -> None:
    """In a worker of the package's loaders, bring the random state to the current epoch; elsewhere nothing.
    在本包的工作进程中把随机状态对齐到当前轮次；其他情况下什么也不做
    """
    if _ACTIVE is not None:
        _ACTIVE.sync()


def _quiet_lost_connection(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """A worker hands each batch's tensors to the main process as file descriptors, served by a thread of its own.
    When training stops (Ctrl-C, SIGTERM) while the main process is taking a batch, that thread finds the
    connection reset and printed a ``ConnectionResetError`` traceback after the stop message (about one stop in
    fifteen with two workers). The main process has already said why it stopped, so the worker reports connection
    errors no more; any other error is shown as before. 主进程已退出时的连接错误不再报告，其他错误照常显示
    """
    if not issubclass(kind, ConnectionError | EOFError):
        sys.__excepthook__(kind, value, tb)
