"""Lesson 04, training: one epoch, one evaluation, and ``fit`` that repeats them.
第 04 课，训练：一轮训练、一次评估，以及反复执行二者的 fit

- :mod:`.loop`: :func:`train_one_epoch` and :func:`evaluate`, the loop the notebook shows line by line;
  训练一轮与评估（notebook 逐行讲解）
- :mod:`.optim`: :func:`build_optimizer`, :func:`build_scheduler`, :func:`step_scheduler`; 优化器与学习率调度器
- :mod:`.history`: :class:`History`, what happened in each epoch; 训练历史
- :mod:`.prepare`: output folder, :func:`resolve_resume`, per-epoch seeds, data facts; 训练前的准备
- :mod:`.reporting`: :func:`setup_logging`, the banner, :func:`hardware_info`, ``metrics.json``; 日志与报告
- :mod:`.resume`: what may change when a run resumes, and how the change is applied; 续训时的设置修改规则
- :mod:`.stop`: SIGTERM (:class:`TrainingStopped`) and the time budget; 信号停止与时间预算
- :mod:`.fit`: :func:`fit`, the ten steps of ``unet-course train``. fit 的十个步骤

The checkpoint format lives in :mod:`unet_course.checkpoint`, tracking in :mod:`unet_course.tracking`, and
``torchrun`` support in :mod:`unet_course.distributed`. 检查点格式、实验记录与分布式训练分别在对应模块中
"""

from __future__ import annotations

from .fit import fit
from .history import History, monitor_value
from .loop import evaluate, train_one_epoch
from .optim import build_optimizer, build_scheduler, lr_factor, step_scheduler
from .prepare import resolve_resume
from .reporting import hardware_info, setup_logging
from .stop import TrainingStopped, signal_name

__all__ = [
    "History",
    "TrainingStopped",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "fit",
    "hardware_info",
    "lr_factor",
    "monitor_value",
    "resolve_resume",
    "setup_logging",
    "signal_name",
    "step_scheduler",
    "train_one_epoch",
]
