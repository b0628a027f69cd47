"""The ``unet-course`` command line: train, cv, evaluate, predict, bench, inspect, course.
unet-course 命令行：训练、评估、预测、基准测试、检查掩码、运行课程

One module per command (``cli/train.py``, ``cli/evaluate.py``, ...), each with ``configure_parser(parser)`` and
the function it dispatches to; the flags shared by several commands live in :mod:`unet_course.cli.options`.
每个子命令一个模块；多个子命令共用的参数在 options.py 中

Examples::

    unet-course train --recipe drive
    unet-course evaluate runs/train/best.pt --split val --output metrics.json
    unet-course predict -m runs/train/best.pt -i image.png -o masks

Errors the user can fix (:class:`~unet_course.errors.UNetCourseError`) print ``error: <message>`` without a
traceback and exit with code 2. 用户可修复的错误只打印一行消息并以退出码 2 结束
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from .. import __version__, distributed
from ..errors import UNetCourseError
from ..training import setup_logging
from . import bench, course, cv, evaluate, inspect, predict, train
from .options import available_recipes, config_from_args, load_recipe

#: The package folder: warnings raised in it are shown as one line. 包目录
PACKAGE_DIR = Path(__file__).resolve().parent.parent
_python_show_warning = warnings.showwarning

#: The sub-commands in the order ``--help`` lists them. 子命令（按帮助中的顺序）
COMMANDS = {"train": train, "cv": cv, "evaluate": evaluate, "predict": predict, "bench": bench,
            "inspect": inspect, "course": course}


def build_parser() -> argparse.ArgumentParser:
    """The full ``unet-course`` parser with its sub-commands. 构建完整的命令行解析器"""
    parser = argparse.ArgumentParser(
        prog="unet-course",
        description="U-Net image segmentation in PyTorch: train, evaluate, predict, benchmark. "
                    "U-Net 图像分割：训练、评估、预测与基准测试",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `unet-course <command> --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        module.configure_parser(sub.add_parser(name, help=module.HELP))
    return parser


def _machine_is_busy() -> bool:
    """True when the 1-minute load average already fills most of the CPU cores. 机器是否已经繁忙"""
    try:
        return os.getloadavg()[0] > 0.75 * (os.cpu_count() or 1)
    except (AttributeError, OSError):              # Windows has no load average
        return False


def _prefer_passive_openmp() -> None:
    """On a busy machine, ask the OpenMP threads of the processes we start to sleep while they wait.
    繁忙的机器上，让本命令启动的子进程中的 OpenMP 线程在等待时休眠

    Spinning OpenMP threads fight other jobs on the same cores: a training step on a busy 2-core CPU got about 10x
    slower, while on a quiet machine spinning is faster (0.163 s vs 0.225 s per step). The OpenMP runtime reads
    OMP_WAIT_POLICY when torch loads it, which has already happened in this process, so the setting reaches the
    processes the command starts (the notebook kernels of ``course``, spawned workers). For ``train`` itself,
    export OMP_WAIT_POLICY=PASSIVE before starting. An explicit value in the environment always wins.
    OpenMP 运行时在 torch 加载时读取该变量，因此这里的设置只作用于子进程；直接训练时请事先导出该变量
    """
    if _machine_is_busy():
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Show the package's own warnings as one ``warning: <message>`` line (they are written for the user);
    others (torch, wandb, ...) as Python shows them. 本包的警告只显示一行消息，其他库的警告保持原样
    """
    if Path(filename).resolve().is_relative_to(PACKAGE_DIR):
        print(f"warning: {message}", file=file or sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


#: Commands that run data-parallel under torchrun; the others would run once per process. torchrun 下可数据并行的命令
DATA_PARALLEL = ("train", "cv")


def _launcher_error(command: str, job: distributed.DistInfo) -> str | None:
    """Why a one-process command may not run under ``torchrun`` (every process would do all the work and write
    the same files), or None. 单进程命令不能在 torchrun 下运行的原因"""
    if not job.enabled or command in DATA_PARALLEL:
        return None
    return (f"`{command}` runs in one process, so under torchrun each of the {job.world_size} processes would do "
            f"all the work and write the same files. Run `unet-course {command} ...` without torchrun (only "
            f"{' and '.join(DATA_PARALLEL)} run data-parallel).")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``unet-course`` and ``python -m unet_course``. 命令行入口

    Returns:
        0 on success, 1 when a course notebook failed, 2 for a user error (``error: <message>`` on stderr, no
        traceback), 130 after Ctrl-C.
    """
    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    warnings.showwarning = _show_warning
    _prefer_passive_openmp()
    try:
        job = distributed.env_info()
        if launcher := _launcher_error(args.command, job):
            if job.is_main:                        # said once, by rank 0 只由 0 号进程说明
                print(f"error: {launcher}", file=sys.stderr)
            return 2
        return int(args.func(args) or 0)
    except UNetCourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:                      # each command says what its Ctrl-C leaves behind 各命令说明中断后的状态
        print(f"\n{getattr(COMMANDS[args.command], 'INTERRUPTED', 'interrupted.')}", file=sys.stderr)
        return 130


__all__ = ["main", "build_parser", "config_from_args", "available_recipes", "load_recipe", "COMMANDS"]
