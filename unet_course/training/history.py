"""What happened in each epoch: the :class:`History` that ``fit`` returns and writes to ``history.json``.
每一轮发生了什么：fit 返回并写入 history.json 的训练历史
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..files import to_plain

#: The score that picks ``best.pt`` and drives ``ReduceLROnPlateau``. 选择 best.pt 与驱动调度器的指标
MONITOR = "dice"

#: What :attr:`History.monitor` can be: the validation Dice (higher is better), or the training loss (lower is
#: better) for a run without a validation split. 监控对象：验证 Dice（越大越好）或训练损失（无验证集时，越小越好）
MONITORS = ("val_dice", "train_loss")


def monitor_value(metrics: dict[str, Any]) -> float | None:
    """The validation Dice used for ``best.pt`` and the plateau scheduler (None without validation).
    用于选择最优模型与调度器的验证 Dice（无验证集时为 None）

    >>> monitor_value({"dice": 0.75}), monitor_value({})
    (0.75, None)
    """
    value = metrics.get(MONITOR, metrics.get("mean_dice"))
    return None if value is None else float(value)


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
        best_metric, best_epoch: best monitored score so far and its epoch. 目前最好的监控指标及其轮次
        monitor: ``"val_dice"`` (highest wins), or ``"train_loss"`` (lowest wins) when the run has no validation
            split. 监控对象：验证 Dice（最高者胜），无验证集时为训练损失（最低者胜）
        global_step: optimiser steps taken. 已执行的优化步数
        out_dir, last_checkpoint, best_checkpoint: output folder and checkpoint paths (str). 输出目录与检查点路径
        wall_time: seconds spent in ``fit`` (summed over resumed runs). fit 总耗时

    >>> h = History()
    >>> h.record(1, train_loss=0.5, metrics={"dice": 0.8, "loss": 0.4}, lr=1e-3, seconds=2.0, global_step=4)
    True
    >>> h.best_epoch, h.last["val_dice"], History.from_dict(h.to_dict()).epoch
    (1, 0.8, [1])
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
    monitor: str = "val_dice"

    @property
    def monitor_text(self) -> str:
        """``"val Dice"`` or ``"train loss"``, for messages. 用于消息的监控指标名称"""
        return "val Dice" if self.monitor == "val_dice" else "train loss"

    def record(self, epoch: int, *, train_loss: float, metrics: dict[str, Any], lr: float, seconds: float,
               global_step: int) -> bool:
        """Append one epoch; return True if its monitored score is a new best.
        追加一轮的记录；监控指标创新高（或训练损失创新低）时返回 True
        """
        dice = monitor_value(metrics)
        score = dice if self.monitor == "val_dice" else train_loss
        self.epoch.append(epoch)
        self.train_loss.append(train_loss)
        self.val_loss.append(metrics.get("loss"))
        self.val_dice.append(dice)
        self.val_metrics.append(to_plain(metrics))
        self.lr.append(lr)
        self.epoch_time.append(seconds)
        self.global_step = global_step
        better = (lambda a, b: a > b) if self.monitor == "val_dice" else (lambda a, b: a < b)
        improved = score is not None and math.isfinite(score) and (self.best_metric is None
                                                                   or better(score, self.best_metric))
        if improved:
            self.best_metric, self.best_epoch = score, epoch
        return improved

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-safe dict (also stored inside checkpoints). 转为基本类型字典（也存入检查点）"""
        return to_plain(dataclasses.asdict(self))

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
