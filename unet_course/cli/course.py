"""``unet-course course``: execute the five course notebooks with papermill into ``runs/course-<time>/``.
course 子命令：用 papermill 把五个课程 notebook 执行到 runs/course-<时间>/，并打印汇总

The committed notebooks stay untouched. Each notebook reports its key metric through
:func:`unet_course.notebook_tools.record_result`; the summary table lists time and metrics per notebook.
仓库中的 notebook 不会被修改；每个 notebook 通过 record_result 报告关键指标

Example::

    unet-course course -p dataset=drive -p data_dir=../shared/data/DRIVE
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import checked_output_dir
from ..notebook_tools import format_summary, run_course

HELP = "run the five course notebooks with papermill (synthetic data by default)"

#: What Ctrl-C says. 中断时的消息
INTERRUPTED = ("interrupted: the notebooks already run are saved in the run folder (--out-dir; by default the newest "
               "runs/course-<time>), the interrupted one up to the cell that was running. Run the same command "
               "again to execute them all.")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``course`` flags. 添加 course 参数"""
    parser.description = ("Execute notebooks/01..05 with papermill into runs/course-<time>/ and print a summary "
                          "(time and key metric per notebook). The committed notebooks stay untouched. "
                          "用 papermill 执行五个课程 notebook")
    parser.add_argument("-p", "--parameter", action="append", metavar="KEY=VALUE",
                        help="papermill parameter for every notebook, e.g. -p dataset=drive (JSON values allowed); a "
                             "name that no notebook's parameters cell declares is refused")
    parser.add_argument("--notebooks", nargs="+", metavar="NAME",
                        help="only these notebooks: numbers, names or a word of a name (e.g. 1 04_training_loop "
                             "prediction)")
    parser.add_argument("--out-dir", help="run folder, also the notebooks' working directory "
                                          "(default runs/course-<YYYYmmdd-HHMMSS>; on Kaggle under /kaggle/working)")
    parser.add_argument("--notebook-dir", help="folder holding 0N_*.ipynb (default: the checkout's notebooks/)")
    parser.set_defaults(func=run)


def parse_parameters(items: list[str] | None) -> dict[str, Any]:
    """``["epochs=3", "dataset=drive"]`` -> ``{"epochs": 3, "dataset": "drive"}`` (JSON values, else text).
    解析 -p KEY=VALUE（能按 JSON 解析则按 JSON，否则为字符串）

    >>> parse_parameters(["epochs=3", "dataset=drive", "tta=true"])
    {'epochs': 3, 'dataset': 'drive', 'tta': True}
    """
    parameters: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--parameter expects KEY=VALUE, got {item!r} (example: -p dataset=drive).")
        try:
            parameters[key] = json.loads(value)
        except json.JSONDecodeError:
            parameters[key] = value
    return parameters


def run(args: argparse.Namespace) -> int:
    """Check the parameters, papermill and ``--out-dir`` first, then run the notebooks and print the summary.
    先检查参数、papermill 与输出目录，再执行 notebook 并打印汇总

    Returns:
        0 when every notebook ran, 1 when one failed (its error is in the summary).
    """
    parameters = parse_parameters(args.parameter)
    if importlib.util.find_spec("papermill") is None:       # 只查找不导入：papermill 由 notebook_tools 按需导入
        raise ConfigError("The course command needs papermill: pip install papermill (or pip install -e .).")
    os.environ.setdefault("UNET_COURSE_QUIET", "1")
    # the folder is checked before any notebook runs, and removed again if a parameter is refused 参数被拒时删除
    with checked_output_dir(args.out_dir, "--out-dir") if args.out_dir else contextlib.nullcontext():
        runs = run_course(out_dir=args.out_dir, parameters=parameters, notebooks=args.notebooks,
                          notebook_dir=args.notebook_dir)
    print(format_summary(runs))
    print(f"Executed notebooks are in {Path(runs[0].output).parent}" if runs else "No notebook ran.")
    return 0 if all(r.ok for r in runs) else 1
