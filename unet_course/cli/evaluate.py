"""``unet-course evaluate``: score a checkpoint on a dataset split at native resolution.
evaluate 子命令：在原始分辨率上对检查点评分

The metrics table goes to stderr and the JSON result to stdout, or to ``-o/--output``.
指标表格写到 stderr，JSON 结果写到 stdout（或 -o/--output 指定的文件）

Example::

    unet-course evaluate runs/train/best.pt --split val --tile 256 --tta -o metrics.json
    unet-course evaluate runs/isbi2012/best.pt --split holdout    # 24/3/3 split stored in the checkpoint

Tile and TTA default to the checkpoint's ``predict_tile`` / ``predict_tta``. On a data set that declares
``instance_metrics`` (ISBI-2012) the table and the JSON add the challenge's adapted Rand error and variation of
information (:func:`unet_course.metrics.instance_scores`). 切片与 TTA 默认取自检查点；ISBI-2012 额外报告挑战赛指标
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import load_model
from ..config import SPLITS
from ..data import build_dataset, dataset_key, options_blamed, split_kwargs
from ..env import pick_device
from ..errors import ConfigError
from ..files import ensure_writable_file, to_plain, write_json
from ..inference import INSTANCE_KEYS, evaluate_dataset, settings_from_meta
from . import options
from .predict import add_prediction_default_arguments, check_user_settings, prediction_options

HELP = "score a checkpoint on a dataset split (metrics table + JSON)"

#: Keys of the JSON report; an existing -o file is replaced only when it holds them (an earlier report).
#: JSON 报告的键：已存在的 -o 文件只有含这些键（之前的报告）时才会被替换
REPORT_KEYS = ("checkpoint", "split", "metrics", "per_image")
#: What Ctrl-C says. 中断时的消息
INTERRUPTED = "interrupted: nothing was written (-o/--output is written only when scoring ends)."


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` flags (dataset, split, output, and the shared inference flags). 添加 evaluate 参数"""
    parser.description = ("Score a checkpoint at native resolution. The table goes to stderr and the JSON to "
                          "stdout, or to -o/--output.")
    parser.add_argument("checkpoint", help="best.pt / last.pt written by `unet-course train`")
    parser.add_argument("--dataset", help="dataset name (default: the one the checkpoint was trained on)")
    parser.add_argument("--data-dir", help="dataset folder (default: the checkpoint's)")
    options.add_data_root_argument(parser)
    parser.add_argument("--split", default="val", choices=SPLITS, help="which split (default val)")
    parser.add_argument("--max-images", type=options.positive_int, default=None, help="score only the first N (>= 1) images")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the JSON here instead of stdout")
    parser.add_argument("--dataset-options", type=options.json_object, default=None, metavar="JSON",
                        help="keyword arguments of the dataset class (default: the checkpoint's dataset_options), "
                             "e.g. '{\"n_val\": 3, \"n_holdout\": 3}' with --split holdout 数据集类的额外参数")
    options.add_inference_arguments(parser)
    add_prediction_default_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the output, load the checkpoint and dataset, score, report. 检查输出、加载、评分、报告

    Returns:
        0. Errors are :class:`~unet_course.errors.UNetCourseError` subclasses, printed by the CLI.
    """
    output = (ensure_writable_file(args.output, "-o/--output", report_keys=REPORT_KEYS)  # 评分前先检查
              if args.output else None)
    settings = prediction_options(args)                             # 未给出的参数使用检查点的设置
    options.apply_data_root(args)
    device = pick_device(args.device)
    model, meta = load_model(args.checkpoint, device=device)
    check_user_settings(settings, model)
    train_cfg = dict(meta.get("train_config") or {})
    name = args.dataset or train_cfg.get("dataset") or "synthetic"
    own = _own_dataset(args, train_cfg)
    # the recorded folder belongs to the data set trained on, not to another one 记录的目录只属于训练所用的数据集
    data_dir = args.data_dir if args.data_dir is not None else (train_cfg.get("data_dir") if own else None)
    if args.data_dir is None and own:
        options.check_recorded_data_dir(data_dir, args.checkpoint)
    kwargs = split_kwargs(name, args.split, train_cfg, own)
    kwargs.update(args.dataset_options or {})                       # --dataset-options 覆盖检查点的设置
    if note := _changed_split_note(args, train_cfg, kwargs):
        print(note, file=sys.stderr)
    try:
        with options_blamed(name, args.dataset_options):             # 选项取值有误时指明选项
            dataset = build_dataset(name, root=data_dir, split=args.split, **kwargs)
    except ConfigError as exc:
        raise ConfigError(_no_validation_split(args, train_cfg, kwargs) or str(exc)) from None
    indices = None if args.max_images is None else list(range(min(len(dataset), args.max_images)))
    tile = settings["tile"] if "tile" in settings else settings_from_meta(meta).get("tile")
    if note := options.unused_tiling_note(args, tile):
        print(note, file=sys.stderr)
    result = evaluate_dataset(model, meta, dataset, device=device, indices=indices, **settings)
    result = {"checkpoint": str(args.checkpoint), "dataset": name, "split": args.split, **result}
    table = metrics_table(result["metrics"], meta.get("class_names"))
    fold = f"fold {kwargs['fold']} of {kwargs['folds']}, " if kwargs.get("folds") else ""   # k 折时注明是哪一折
    header = f"{Path(args.checkpoint).name} on {name}/{args.split} ({fold}{result['n_images']} images)"
    if output is not None:
        write_json(output, result, what="metrics report")
        print(header, table, f"\nwritten to {output}", sep="\n")
    else:
        print(header, table, sep="\n", file=sys.stderr)
        print(json.dumps(to_plain(result), indent=2))
    return 0


def _own_dataset(args: argparse.Namespace, train_cfg: dict[str, Any]) -> bool:
    """Whether the data set scored is the one the checkpoint was trained on (``DRIVE`` is ``drive``).
    是否在训练所用的数据集上评分（名称按注册键比较）"""
    if args.dataset is None:
        return True
    try:
        return dataset_key(args.dataset) == dataset_key(train_cfg.get("dataset") or "synthetic")
    except ConfigError:                                  # an unknown name: build_dataset says so 未知名称稍后报错
        return False


def _changed_split_note(args: argparse.Namespace, train_cfg: dict[str, Any], kwargs: dict[str, Any]) -> str:
    """A note when ``--dataset-options`` change the checkpoint's own options on its own data set: the scored split
    may then hold images the model was trained on. 覆盖训练时的数据集参数时提示：评分的图像可能参与过训练
    """
    saved = train_cfg.get("dataset_options") or {}
    changed = {key: value for key, value in (args.dataset_options or {}).items() if saved.get(key) != value}
    if not _own_dataset(args, train_cfg) or not changed:
        return ""
    return (f"note: --dataset-options {json.dumps(changed)} differ from the options {args.checkpoint} was trained "
            f"with ({json.dumps(saved)}), so the {args.split!r} images may include images it was trained on.")


def _no_validation_split(args: argparse.Namespace, train_cfg: dict[str, Any], kwargs: dict[str, Any]) -> str:
    """The message for ``--split val`` of a model trained on every image (``val_fraction=0``, as the final DRIVE
    model is), which has no validation split; empty for any other refused split.
    用全部图像训练（val_fraction=0）的模型没有验证集时的说明；其他情况为空
    """
    if not _own_dataset(args, train_cfg) or args.split != "val" or kwargs.get("val_fraction") != 0 or train_cfg.get("val_fraction") != 0:
        return ""
    return (f"{args.checkpoint} was trained with --val-fraction 0, on every training image, so it has no "
            "validation split to score. Score those images with --split train (an optimistic figure: the model "
            "has seen them), or estimate its quality with `unet-course cv`.")


def metrics_table(metrics: dict[str, Any], class_names: Sequence[str] | None) -> str:
    """A small text table: headline metrics, then one row per class. 文本表格：主要指标与逐类指标

    >>> print(metrics_table({"dice": 0.5, "iou": [0.9, 0.25]}, ["bg", "fg"]))
    dice                0.5000
    <BLANKLINE>
    class                    iou
    bg                    0.9000
    fg                    0.2500
    """
    lines = []
    keys = [k for k in ("dice", "mean_dice", "mean_iou", "pixel_accuracy", "pixel_error", "auc", *INSTANCE_KEYS)
            if isinstance(metrics.get(k), (int, float))]
    width = max([16] + [len(k) + 2 for k in keys])                  # 长名称（如 variation_of_information）也对齐
    for key in keys:
        lines.append(f"{key:<{width}}{metrics[key]:>10.4f}")
    per_class = [k for k in ("dice_per_class", "iou", "precision", "recall") if isinstance(metrics.get(k), list)]
    if per_class:
        k = len(metrics[per_class[0]])
        names = list(class_names or [])[:k] + [f"class {i}" for i in range(len(class_names or []), k)]
        lines.append("")
        lines.append(f"{'class':<16}" + "".join(f"{c:>12}" for c in per_class))
        for i, name in enumerate(names):
            lines.append(f"{str(name)[:15]:<16}" + "".join(f"{metrics[c][i]:>12.4f}" for c in per_class))
    return "\n".join(lines)
