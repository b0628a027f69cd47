"""The ``unet-course`` command line: train, evaluate, predict, bench, inspect, course.
unet-course 命令行：训练、评估、预测、基准测试、检查掩码、运行课程

Every training knob of :class:`~unet_course.config.TrainConfig` is a ``train`` flag with dashes
(``batch_size`` -> ``--batch-size``). Values are layered, later ones winning:
TrainConfig 的每个字段都是 train 的一个参数（下划线换成连字符）；取值按以下顺序叠加，后者覆盖前者：

    TrainConfig defaults < ``--recipe NAME`` (``unet_course/recipes/NAME.json``) < ``--config FILE.json`` < flags

Examples::

    unet-course train                                   # synthetic data, about two minutes on a laptop CPU
    unet-course train --recipe drive --epochs 50
    unet-course train --resume last                     # continue runs/train/last.pt
    torchrun --nproc_per_node=2 -m unet_course train    # data-parallel on 2 processes
    unet-course evaluate runs/train/best.pt --split val --output metrics.json

Errors the user can fix (:class:`~unet_course.errors.UNetCourseError`) print ``error: <message>`` without a
traceback and exit with code 2. 用户可修复的错误只打印一行消息并以退出码 2 结束
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.resources
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _machine_is_busy() -> bool:
    """True when the 1-minute load average already fills most of the CPU cores. 机器是否已经繁忙"""
    try:
        return os.getloadavg()[0] > 0.75 * (os.cpu_count() or 1)
    except (AttributeError, OSError):              # Windows has no load average
        return False


# OpenMP threads spin while they wait for work. On a busy machine (other jobs on the same cores) spinning threads
# fight each other and a training step on a 2-core CPU got about 10x slower, so there they sleep (PASSIVE). On a
# quiet machine spinning is faster: a base-16 U-Net step on 8x64x64 took 0.163 s vs 0.225 s with PASSIVE. This
# must be set before torch is imported; an explicit OMP_WAIT_POLICY in the environment wins.
# 繁忙的机器上 OpenMP 线程等待时休眠（否则自旋互相争抢，慢约 10 倍）；空闲时自旋更快；须在导入 torch 之前设置
if _machine_is_busy():
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import (  # noqa: E402
    AMP_MODES,
    ENHANCEMENTS,
    LOSS_MODES,
    OPTIMIZERS,
    SCHEDULERS,
    WANDB_MODES,
    TrainConfig,
)
from .errors import ConfigError, UNetCourseError  # noqa: E402
from .files import to_plain  # noqa: E402

logger = logging.getLogger("unet_course")

#: Allowed values for the choice-type fields. 选项型字段的可选值
CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
    "amp": AMP_MODES,
    "mode": LOSS_MODES,
    "wandb_mode": WANDB_MODES,
    "enhance": ENHANCEMENTS,
    "progress": ("auto", "bar", "line", "none"),
}

#: Keys of a recipe/config JSON that are notes, not fields. 配方 JSON 中作为说明、不是字段的键
NOTE_KEYS = ("description", "notes", "comment")


# ----------------------------------------------------------------------------------------------------------------
# TrainConfig -> argparse 把 TrainConfig 字段变成命令行参数
# ----------------------------------------------------------------------------------------------------------------
def _field_comments() -> dict[str, str]:
    """The trailing ``# comment`` of each field in ``config.py``, used as ``--help`` text. 字段行尾注释作为帮助文本"""
    try:
        source = inspect.getsource(TrainConfig)
    except (OSError, TypeError):
        return {}
    comments = {}
    for match in re.finditer(r"^\s{4}(\w+):[^#\n]*#\s*(.+)$", source, flags=re.MULTILINE):
        comments[match.group(1)] = match.group(2).strip().replace("%", "%%")
    return comments


def _optional(kind: type):
    def parse(text: str):
        if text.lower() in ("none", "null", ""):
            return None
        return kind(text)

    parse.__name__ = f"{kind.__name__} or none"
    return parse


def _int_or_auto(text: str) -> int | str:
    return text if text == "auto" else int(text)


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"key\": 1}'")
    return value


def add_train_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field; defaults are suppressed so only given flags override.
    为 TrainConfig 的每个字段添加一个参数；默认值被抑制，只有显式给出的参数才会覆盖
    """
    comments = _field_comments()
    defaults = TrainConfig()
    group = parser.add_argument_group("training options (TrainConfig fields)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if flag in parser._option_string_actions:         # 已由子命令自身定义（例如 --data-root）
            continue
        default = getattr(defaults, f.name)
        help_text = f"{comments.get(f.name, '')} (default: {default!r})".strip()
        kw: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=help_text)
        kind = str(f.type).replace(" ", "")
        if f.name in CHOICES:
            group.add_argument(flag, choices=CHOICES[f.name], **kw)
        elif kind in ("bool", "bool|None"):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif kind == "int":
            group.add_argument(flag, type=int, metavar="N", **kw)
        elif kind == "float":
            group.add_argument(flag, type=float, metavar="X", **kw)
        elif kind == "int|None":
            group.add_argument(flag, type=_optional(int), metavar="N|none", **kw)
        elif kind == "float|None":
            group.add_argument(flag, type=_optional(float), metavar="X|none", **kw)
        elif kind == "int|str":
            group.add_argument(flag, type=_int_or_auto, metavar="N|auto", **kw)
        elif kind.startswith("list[float]"):
            group.add_argument(flag, type=float, nargs="+", metavar="W", **kw)
        elif kind.startswith("dict"):
            group.add_argument(flag, type=_json_dict, metavar="JSON", **kw)
        else:  # str and str | None
            group.add_argument(flag, metavar="TEXT", **kw)


def available_recipes() -> list[str]:
    """Names of the JSON recipes shipped in ``unet_course/recipes``. 内置配方名称"""
    try:
        folder = importlib.resources.files("unet_course") / "recipes"
        return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))
    except (FileNotFoundError, NotADirectoryError, ModuleNotFoundError):
        return []


def _read_json_dict(text: str, where: str) -> dict[str, Any]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}.") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must hold a JSON object of TrainConfig fields, got {type(values).__name__}.")
    return {k: v for k, v in values.items() if not k.startswith("_") and k not in NOTE_KEYS}


def load_recipe(name: str) -> dict[str, Any]:
    """TrainConfig fields of the recipe ``unet_course/recipes/<name>.json``.
    读取内置配方 unet_course/recipes/<name>.json 中的字段

    Keys starting with ``_`` and ``description``/``notes``/``comment`` are notes and are dropped.
    以下划线开头的键以及 description/notes/comment 视为说明，被忽略

    Raises:
        ConfigError: no such recipe (the message lists the available ones), or invalid JSON.
    """
    stem = name[:-5] if name.endswith(".json") else name
    resource = importlib.resources.files("unet_course") / "recipes" / f"{stem}.json"
    try:
        text = resource.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, OSError):
        names = available_recipes()
        listing = ", ".join(names) if names else "(none installed)"
        raise ConfigError(
            f"Unknown recipe {name!r}; available recipes: {listing}. Use --config FILE.json for your own file."
        ) from None
    return _read_json_dict(text, f"Recipe {name!r}")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Layer defaults, ``--recipe``, ``--config`` and the given flags into one :class:`TrainConfig`.
    把默认值、配方、配置文件与命令行参数叠加成一个 TrainConfig

    Raises:
        ConfigError: unknown recipe, unreadable config file, unknown field names or bad values.
    """
    values: dict[str, Any] = {}
    if getattr(args, "recipe", None):
        values.update(load_recipe(args.recipe))
    if getattr(args, "config", None):
        path = Path(args.config).expanduser()
        if not path.is_file():
            raise ConfigError(f"Config file {str(path)!r} does not exist.")
        values.update(_read_json_dict(path.read_text(encoding="utf-8"), f"Config file {str(path)!r}"))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return TrainConfig.from_dict(values)


# ----------------------------------------------------------------------------------------------------------------
# Sub-commands 子命令
# ----------------------------------------------------------------------------------------------------------------
def _set_data_root(args: argparse.Namespace) -> None:
    root = getattr(args, "data_root", None)
    if root:
        os.environ["UNET_COURSE_DATA"] = str(Path(root).expanduser())


def cmd_train(args: argparse.Namespace) -> int:
    """``unet-course train``: build a config and call :func:`unet_course.engine.fit`. 训练"""
    from .engine import fit

    _set_data_root(args)
    cfg = config_from_args(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    history = fit(cfg)
    if history.best_metric is not None and (os.environ.get("RANK", "0") == "0"):
        print(f"best val Dice {history.best_metric:.4f} (epoch {history.best_epoch}); outputs in {history.out_dir}")
    return 0


def _metrics_table(metrics: dict[str, Any], class_names: Sequence[str] | None) -> str:
    """A small text table: headline metrics, then one row per class. 文本表格：主要指标与逐类指标"""
    lines = []
    for key in ("dice", "mean_dice", "mean_iou", "pixel_accuracy", "pixel_error", "auc"):
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            lines.append(f"{key:<16}{value:>10.4f}")
    per_class = [k for k in ("dice_per_class", "iou", "precision", "recall") if isinstance(metrics.get(k), list)]
    if per_class:
        k = len(metrics[per_class[0]])
        names = list(class_names or [])[:k] + [f"class {i}" for i in range(len(class_names or []), k)]
        lines.append("")
        lines.append(f"{'class':<16}" + "".join(f"{c:>12}" for c in per_class))
        for i, name in enumerate(names):
            lines.append(f"{str(name)[:15]:<16}" + "".join(f"{metrics[c][i]:>12.4f}" for c in per_class))
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``unet-course evaluate``: score a checkpoint on a dataset split at native resolution.
    评估：在原始分辨率上对检查点评分

    Prints a metrics table to stderr and the JSON result to stdout (or to ``--output``).
    指标表格写到 stderr，JSON 结果写到 stdout（或 --output 指定的文件）
    """
    from .checkpoint import load_model
    from .data import build_dataset
    from .engine import setup_logging
    from .env import pick_device
    from .predict import evaluate_dataset

    setup_logging()
    _set_data_root(args)
    device = pick_device(args.device)
    model, meta = load_model(args.checkpoint, device=device)
    train_cfg = dict(meta.get("train_config") or {})
    name = args.dataset or train_cfg.get("dataset") or "synthetic"
    data_dir = args.data_dir if args.data_dir is not None else train_cfg.get("data_dir")
    kwargs = _dataset_kwargs(name, args.split, train_cfg)
    dataset = build_dataset(name, root=data_dir, split=args.split, **kwargs)
    indices = None
    if args.max_images is not None:
        indices = list(range(min(len(dataset), args.max_images)))
    result = evaluate_dataset(model, meta, dataset, tile=args.tile, overlap=args.overlap, tta=args.tta,
                              threshold=args.threshold, device=device, indices=indices)
    result = {"checkpoint": str(args.checkpoint), "dataset": name, "split": args.split, **result}
    table = _metrics_table(result["metrics"], meta.get("class_names"))
    header = f"{Path(args.checkpoint).name} on {name}/{args.split} ({result['n_images']} images)"
    text = json.dumps(_json_safe(result), indent=2)
    if args.output:
        out = Path(args.output).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(header, table, f"\nwritten to {out}", sep="\n")
    else:
        print(header, table, sep="\n", file=sys.stderr)
        print(text)
    return 0


def _dataset_kwargs(name: str, split: str, train_cfg: dict[str, Any]) -> dict[str, Any]:
    """Arguments of :func:`build_dataset` taken from the checkpoint's ``train_config`` (same split, same sizes).
    从检查点的 train_config 中取出 build_dataset 需要的参数（保证划分与尺寸一致）
    """
    wanted: dict[str, Any] = {"seed": train_cfg.get("seed"), "in_channels": train_cfg.get("in_channels")}
    if name.replace("_", "-").lower().startswith("synthetic"):
        wanted["image_size"] = train_cfg.get("image_size")
        wanted["n_samples"] = train_cfg.get("train_samples" if split == "train" else "val_samples")
    else:
        wanted["val_fraction"] = train_cfg.get("val_fraction")
    return {k: v for k, v in wanted.items() if v is not None}


def _json_safe(value: Any) -> Any:
    return to_plain(value)


def cmd_inspect(args: argparse.Namespace) -> int:
    """``unet-course inspect``: report the mask values of a dataset or a folder of masks. 检查掩码取值"""
    from .data.masks import inspect_masks

    _set_data_root(args)
    path = Path(args.target).expanduser()
    if path.exists():
        masks: Any = path                                    # 掩码目录或单个文件
    else:
        from .data import build_dataset

        masks = build_dataset(args.target, root=args.data_dir, split=args.split)
    report = inspect_masks(masks, ignore_index=args.ignore_index, max_files=args.max_files, warn=False)
    print(report)
    return 0


def run_course(args: argparse.Namespace) -> int:
    """``unet-course course``: execute the five notebooks with papermill into ``runs/course-<time>/``.
    course 子命令：用 papermill 把五个 notebook 执行到 runs/course-<时间>/，并打印汇总

    The committed notebooks stay untouched. Each notebook reports its key metric through
    :func:`unet_course.notebook_tools.record_result`; the summary table lists time and metrics per notebook.
    仓库中的 notebook 不会被修改；每个 notebook 通过 record_result 报告关键指标
    """
    from .notebook_tools import format_summary
    from .notebook_tools import run_course as run_notebooks

    parameters: dict[str, Any] = {}
    for item in args.parameter or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--parameter expects KEY=VALUE, got {item!r} (example: -p dataset=drive).")
        try:
            parameters[key] = json.loads(value)
        except json.JSONDecodeError:
            parameters[key] = value
    os.environ.setdefault("UNET_COURSE_QUIET", "1")
    runs = run_notebooks(out_dir=args.out_dir, parameters=parameters, notebooks=args.notebooks,
                         notebook_dir=args.notebook_dir)
    print(format_summary(runs))
    print(f"Executed notebooks are in {Path(runs[0].output).parent}" if runs else "No notebook ran.")
    return 0 if all(r.ok for r in runs) else 1


def _lazy_subcommand(module_name: str):
    """Load ``unet_course.<module_name>`` only when its sub-command runs (or its --help is asked).
    延迟导入子命令模块，模块缺失时不影响其他子命令
    """
    try:
        return importlib.import_module(f"unet_course.{module_name}")
    except ImportError as exc:
        logger.debug("sub-command %s unavailable: %s", module_name, exc)
        return None


# ----------------------------------------------------------------------------------------------------------------
# Parser 解析器
# ----------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The full ``unet-course`` parser with its sub-commands. 构建完整的命令行解析器"""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="unet-course",
        description="U-Net image segmentation in PyTorch: train, evaluate, predict, benchmark. "
                    "U-Net 图像分割：训练、评估、预测与基准测试",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `unet-course <command> --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("train", help="train a U-Net (every TrainConfig field is a flag)",
                       description="Train a U-Net. Values: TrainConfig defaults < --recipe < --config < flags. "
                                   "torchrun --nproc_per_node=N -m unet_course train ... runs data-parallel.")
    p.add_argument("--recipe", metavar="NAME",
                   help=f"preset from unet_course/recipes ({', '.join(available_recipes()) or 'none installed'})")
    p.add_argument("--config", metavar="FILE.json", help="JSON object of TrainConfig fields")
    p.add_argument("--data-root", metavar="DIR", help="folder holding DRIVE/, isbi2012/, ... (sets UNET_COURSE_DATA)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    add_train_config_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a checkpoint on a dataset split (metrics table + JSON)",
                       description="Score a checkpoint at native resolution. The table goes to stderr and the JSON "
                                   "to stdout, or to --output.")
    p.add_argument("checkpoint", help="best.pt / last.pt written by `unet-course train`")
    p.add_argument("--dataset", help="dataset name (default: the one the checkpoint was trained on)")
    p.add_argument("--data-dir", help="dataset folder (default: the checkpoint's)")
    p.add_argument("--data-root", metavar="DIR", help="folder holding DRIVE/, isbi2012/, ... (sets UNET_COURSE_DATA)")
    p.add_argument("--split", default="val", choices=("train", "val", "test", "all"), help="which split (default val)")
    p.add_argument("--tile", type=int, default=None, help="sliding-window tile size (default: whole image)")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    p.add_argument("--threshold", type=float, default=None, help="binary threshold (default: checkpoint's)")
    p.add_argument("--max-images", type=int, default=None, help="score only the first N images")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("-o", "--output", help="write the JSON here instead of stdout")
    p.set_defaults(func=cmd_evaluate)

    for name, help_text in (("predict", "write masks for images with a trained checkpoint"),
                            ("bench", "measure training/inference throughput and memory (JSON)")):
        module = _lazy_subcommand(name)
        if module is None or not hasattr(module, "configure_parser"):
            p = sub.add_parser(name, help=f"{help_text} (unavailable: unet_course.{name} is missing)")
            p.set_defaults(func=_missing(name))
            continue
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).split("\n")[0])
        module.configure_parser(p)
        p.set_defaults(func=module.run_cli)

    p = sub.add_parser("inspect", help="report the raw values found in mask files",
                       description="Report mask values, counts and likely problems (0/1 vs 0/255, JPEG noise, ...).")
    p.add_argument("target", help="a dataset name (synthetic, drive, isbi2012, ...) or a folder/file of masks")
    p.add_argument("--data-dir", help="dataset folder when TARGET is a dataset name")
    p.add_argument("--data-root", metavar="DIR", help="folder holding DRIVE/, isbi2012/, ... (sets UNET_COURSE_DATA)")
    p.add_argument("--split", default="train", help="split of a named dataset (default train)")
    p.add_argument("--ignore-index", type=int, default=255, help="label value that is never scored")
    p.add_argument("--max-files", type=int, default=None, help="look at no more than N files")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("course", help="run the five course notebooks with papermill (synthetic data by default)",
                       description="Execute notebooks/01..05 with papermill into runs/course-<time>/ and print a "
                                   "summary (time and key metric per notebook). The committed notebooks stay "
                                   "untouched. 用 papermill 执行五个课程 notebook")
    p.add_argument("-p", "--parameter", action="append", metavar="KEY=VALUE",
                   help="papermill parameter for every notebook, e.g. -p dataset=drive (JSON values allowed)")
    p.add_argument("--notebooks", nargs="+", metavar="NAME", help="only these notebooks (e.g. 01 04_training_loop)")
    p.add_argument("--out-dir", help="run folder, also the notebooks' working directory "
                                     "(default runs/course-<YYYYmmdd-HHMMSS>; on Kaggle under /kaggle/working)")
    p.add_argument("--notebook-dir", help="folder holding 0N_*.ipynb (default: the checkout's notebooks/)")
    p.set_defaults(func=run_course)
    return parser


def _missing(name: str):
    def run(args: argparse.Namespace) -> int:
        raise ConfigError(f"The `{name}` command is not available: the module unet_course.{name} could not be "
                          "imported. Reinstall the package (pip install -e .).")

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``unet-course`` and ``python -m unet_course``. 命令行入口

    Returns:
        0 on success, 2 for a user error (message on stderr, no traceback), 130 after Ctrl-C.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    from .engine import setup_logging

    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args) or 0)
    except UNetCourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the last completed checkpoint (last.pt) is kept; continue with "
              "`unet-course train --resume last` (add the same --out-dir if you changed it).", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
