"""``unet-course train``: build a :class:`~unet_course.config.TrainConfig` from the flags and call ``fit``.
train 子命令：由命令行参数构建 TrainConfig 并调用 fit

Examples::

    unet-course train                                   # synthetic data, about two minutes on a laptop CPU
    unet-course train --recipe drive                    # 40 epochs, or as many as fit in its 840 s budget
    unet-course train --resume last                     # continue runs/train/last.pt exactly as it was
    unet-course train --resume last --lr 3e-4 --epochs 30   # ... with a new LR and a longer schedule
    unet-course train --recipe drive --epochs 200 --time-budget 3600   # as many epochs as fit in an hour
    unet-course train --recipe drive --epochs 50 --time-budget none    # 50 epochs, however long they take
    torchrun --nproc_per_node=2 -m unet_course train    # data-parallel on 2 processes
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from ..env import default_out_dir
from ..files import ensure_writable_dir
from ..training import TrainingStopped, fit
from .options import (
    add_data_root_argument,
    add_train_config_arguments,
    apply_data_root,
    available_recipes,
    config_from_args,
)

HELP = "train a U-Net (every TrainConfig field is a flag)"

#: Signals that end training after the epoch's files are written: a scheduler's SIGTERM, and Ctrl-C.
#: 训练时这两个信号都在本轮文件写完后停止：调度器的 SIGTERM 与 Ctrl-C
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

#: What Ctrl-C says outside the epochs (set-up, or the last lines after the reports). 轮次之外被中断时的消息
INTERRUPTED = ("interrupted outside the epochs (set-up or the end of the run), so no epoch was cut short. Continue "
               "from the last complete checkpoint with `unet-course train --resume last` (add the same --out-dir), "
               "or, if the run wrote none yet, run the same command again.")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` flags: recipe, config file, data root, and one flag per TrainConfig field.
    添加 train 参数：配方、配置文件、数据根目录，以及每个 TrainConfig 字段
    """
    parser.description = ("Train a U-Net. Values: TrainConfig defaults < --recipe < --config < flags. "
                          "torchrun --nproc_per_node=N -m unet_course train ... runs data-parallel.")
    parser.add_argument("--recipe", metavar="NAME",
                        help=f"preset from unet_course/recipes ({', '.join(available_recipes()) or 'none installed'})")
    parser.add_argument("--config", metavar="FILE.json", help="JSON object of TrainConfig fields")
    add_data_root_argument(parser)
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    add_train_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config, check ``--out-dir`` before any work, then train. 解析配置、先检查输出目录，再训练

    Returns:
        0; 143 (128 + SIGTERM) when a scheduler's SIGTERM stopped training, 130 after Ctrl-C (one ``error:`` line
        names the kept checkpoint and the resume command). Other errors are
        :class:`~unet_course.errors.UNetCourseError` subclasses, printed by the CLI (exit 2).
        收到 SIGTERM 或 Ctrl-C 时返回 143 或 130 并打印续训命令
    """
    apply_data_root(args)
    cfg = config_from_args(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    ensure_writable_dir(cfg.out_dir or default_out_dir("train"), "--out-dir")     # 训练开始前就检查
    main = os.environ.get("RANK", "0") == "0"                                     # 只有主进程打印
    try:
        history = fit(cfg, changes_from="the command line", stop_signals=STOP_SIGNALS)
    except TrainingStopped as exc:                                    # SIGTERM / Ctrl-C：保留检查点，退出码 143 / 130
        if main:
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if history.best_metric is not None and main:
        print(f"best {history.monitor_text} {history.best_metric:.4f} (epoch {history.best_epoch}); "
              f"outputs in {history.out_dir}")
    return 0
