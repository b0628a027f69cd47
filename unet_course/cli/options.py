"""Flags shared by several commands, and the ``train`` flags generated from :class:`TrainConfig`.
多个子命令共用的参数，以及由 TrainConfig 自动生成的 train 参数

Every :class:`~unet_course.config.TrainConfig` field becomes one flag with dashes (``batch_size`` ->
``--batch-size``); its help text and choices come from the field's ``metadata`` and its argument type from the
field's real type (``int | None`` -> an integer or ``none``). Values are layered, later ones winning:
每个字段对应一个参数；帮助文本与可选值来自字段 metadata，参数类型来自字段的真实类型；取值按以下顺序叠加：

    TrainConfig defaults < ``--recipe NAME`` (``unet_course/recipes/NAME.json``) < ``--config FILE.json`` < flags

With ``--resume`` the checkpoint's saved settings replace the defaults, so only what the user gave overrides them
(:func:`resumed_values`). 续训时以检查点保存的设置代替默认值，只有用户给出的取值覆盖它们

The inference flags (``--tile``, ``--overlap``, ...) are declared once here for ``predict`` and ``evaluate``.
推理参数只在这里声明一次，predict 与 evaluate 共用
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import json
import os
import typing
from pathlib import Path
from typing import Any

from ..checkpoint import load_checkpoint, saved_train_config
from ..coerce import type_members
from ..config import (
    AMP_MODES,
    BLEND_MODES,
    TrainConfig,
    field_types,
    fields_from_json,
    read_config_file,
)
from ..env import default_out_dir
from ..errors import ConfigError, DataError
from ..inference import check_overlap
from ..rules import check_scale, check_threshold
from ..training import resolve_resume

#: Keys of a recipe/config JSON that are notes, not fields. 配方 JSON 中作为说明、不是字段的键
DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps (default auto)"


# ----------------------------------------------------------------------------------------------------------------
# Argument types 参数类型
# ----------------------------------------------------------------------------------------------------------------
def positive_int(text: str) -> int:
    """An integer >= 1 (``--max-images 0`` would score nothing). 大于等于 1 的整数

    >>> positive_int("3")
    3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _optional(kind: type):
    """``int`` -> a parser that also reads ``none`` as None. 额外接受 none 的解析函数"""
    def parse(text: str):
        if text.lower() in ("none", "null", ""):
            return None
        return kind(text)

    parse.__name__ = f"{kind.__name__} or none"           # argparse 的报错中显示此名称
    return parse


def _int_or_auto(text: str) -> int | str:
    return text if text == "auto" else int(text)


def json_object(text: str) -> dict[str, Any]:
    """An argparse type: a JSON object (``--dataset-options``, dict fields). JSON 对象

    >>> json_object('{"n_val": 3}')
    {'n_val': 3}
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"n_val\": 3, \"n_holdout\": 3}'")
    return value


def _flag_kind(hint: Any) -> dict[str, Any]:
    """argparse keywords (type, metavar, nargs, action) for a field of type ``hint``. 由字段类型得到 argparse 设置"""
    kinds, optional = type_members(hint)
    bases = {typing.get_origin(k) or k for k in kinds}       # list[float] -> list
    if bases == {bool}:
        return {"action": argparse.BooleanOptionalAction}
    if bases == {int, str}:
        return {"type": _int_or_auto, "metavar": "N|auto"}
    if bases == {list}:
        return {"type": float, "nargs": "+", "metavar": "W"}
    if bases == {dict}:
        return {"type": json_object, "metavar": "JSON"}
    for base, metavar in ((int, "N"), (float, "X")):
        if bases == {base}:
            return {"type": _optional(base) if optional else base, "metavar": f"{metavar}|none" if optional else metavar}
    return {"metavar": "TEXT"}                                # str 与 str | None


def add_train_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field; defaults are suppressed so only given flags override.
    为 TrainConfig 的每个字段添加一个参数；默认值被抑制，只有显式给出的参数才会覆盖
    """
    defaults = TrainConfig()
    hints = field_types()
    group = parser.add_argument_group("training options (TrainConfig fields)")
    for f in dataclasses.fields(TrainConfig):
        help_text = f"{f.metadata.get('help', '')} (default: {getattr(defaults, f.name)!r})".strip()
        keywords: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                                    "help": help_text.replace("%", "%%")}      # argparse 把 % 当作格式符
        if f.metadata.get("choices"):
            keywords["choices"] = f.metadata["choices"]
        else:
            keywords.update(_flag_kind(hints[f.name]))
        group.add_argument("--" + f.name.replace("_", "-"), **keywords)


# ----------------------------------------------------------------------------------------------------------------
# Shared flags 共用参数
# ----------------------------------------------------------------------------------------------------------------
def add_data_root_argument(parser: argparse.ArgumentParser) -> None:
    """``--data-root DIR``: where DRIVE/, isbi2012/, ... live (sets ``UNET_COURSE_DATA``). 数据根目录"""
    parser.add_argument("--data-root", metavar="DIR",
                        help="folder holding DRIVE/, isbi2012/, ... (sets UNET_COURSE_DATA) 数据根目录")


def apply_data_root(args: argparse.Namespace) -> None:
    """Export ``--data-root`` as ``UNET_COURSE_DATA`` for the dataset builders. 设置数据根目录环境变量"""
    root = getattr(args, "data_root", None)
    if root:
        os.environ["UNET_COURSE_DATA"] = str(Path(root).expanduser())


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: where the network runs. 推理/训练设备"""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


#: The tiling flags and their defaults: they only matter when the images are tiled. 仅在切片推理时起作用的参数
TILING_DEFAULTS = {"overlap": 0.25, "tile_batch": 4, "blend": "gaussian"}


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """The prediction settings that ``predict`` and ``evaluate`` share. predict 与 evaluate 共用的推理参数"""
    group = parser.add_argument_group("inference options 推理参数")
    group.add_argument("--tile", type=positive_int, default=None, metavar="N",
                       help="sliding-window tile size in pixels (default: whole image in one pass) 切片大小")
    group.add_argument("--overlap", type=float, default=TILING_DEFAULTS["overlap"], metavar="X", help="tile overlap fraction in [0, 1) 切片重叠比例")
    group.add_argument("--tile-batch", type=positive_int, default=TILING_DEFAULTS["tile_batch"], metavar="N", help="tiles per forward pass 每次前向的切片数")
    group.add_argument("--blend", choices=BLEND_MODES, default=TILING_DEFAULTS["blend"], help="tile blending weights 融合权重")
    group.add_argument("--tta", action="store_true", help="average the four flips (test-time augmentation)")
    group.add_argument("--threshold", type=float, default=None, metavar="X",
                       help="binary foreground threshold in (0, 1) (default: the checkpoint's) 前景阈值")
    group.add_argument("--scale", type=float, default=None, metavar="X",
                       help="resize factor in (0, 4] (default: the checkpoint's) 缩放比例")
    group.add_argument("--amp", default="auto", choices=AMP_MODES, help="mixed precision 混合精度")
    group.add_argument("--device", default="auto", metavar="DEVICE", help=DEVICE_HELP)


def inference_options(args: argparse.Namespace) -> dict[str, Any]:
    """The shared flags as keywords of ``predict_image`` / ``evaluate_dataset`` (without ``device``).
    把共用推理参数转换为关键字参数（不含 device）

    ``scale`` and ``threshold`` are left out when not given, so the checkpoint's values apply. ``--scale``,
    ``--threshold`` and ``--overlap`` are checked here, before any work, by their one rule each
    (:func:`~unet_course.rules.check_scale`, :func:`~unet_course.rules.check_threshold`,
    :func:`~unet_course.inference.check_overlap`); ``--overlap`` even when no tiles are used, so a wrong value
    is never silently ignored.
    未给出 scale 与 threshold 时不传，使用检查点中的值；三个参数都在开始工作前检查

    Raises:
        ConfigError: ``--scale`` outside (0, 4], ``--threshold`` outside (0, 1), ``--overlap`` outside [0, 1).
    """
    options: dict[str, Any] = {"tile": args.tile, "overlap": check_overlap(args.overlap, "--overlap"),
                               "tile_batch": args.tile_batch, "blend": args.blend, "tta": args.tta, "amp": args.amp}
    if args.scale is not None:
        options["scale"] = check_scale(args.scale, "--scale")
    if args.threshold is not None:
        options["threshold"] = check_threshold(args.threshold, "--threshold")
    return options


def unused_tiling_note(args: argparse.Namespace, tile: int | None) -> str:
    """A note when ``--overlap`` / ``--tile-batch`` / ``--blend`` were changed but the images are predicted whole
    (``tile`` None), so the user does not think they took effect; empty otherwise. 设置了切片参数却整图推理时的提示

    >>> print(unused_tiling_note(argparse.Namespace(overlap=0.5, tile_batch=8, blend="gaussian"), None))
    ... # doctest: +NORMALIZE_WHITESPACE
    note: --overlap 0.5 and --tile-batch 8 apply only to tiled prediction, and these images are predicted whole
    unless one exceeds --max-memory-mb; add --tile N to tile them.
    >>> unused_tiling_note(argparse.Namespace(overlap=0.5, tile_batch=4, blend="gaussian"), 256)
    ''
    """
    changed = [f"--{key.replace('_', '-')} {getattr(args, key)}" for key, default in TILING_DEFAULTS.items()
               if getattr(args, key, default) != default]
    if tile or not changed:
        return ""
    verb = "applies" if len(changed) == 1 else "apply"
    return (f"note: {' and '.join(changed)} {verb} only to tiled prediction, and these images are predicted whole "
            "unless one exceeds --max-memory-mb; add --tile N to tile them.")


# ----------------------------------------------------------------------------------------------------------------
# Recipes and config files 配方与配置文件
# ----------------------------------------------------------------------------------------------------------------
def available_recipes() -> list[str]:
    """Names of the JSON recipes shipped in ``unet_course/recipes``. 内置配方名称"""
    try:
        folder = importlib.resources.files("unet_course") / "recipes"
        return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))
    except (FileNotFoundError, NotADirectoryError, ModuleNotFoundError):
        return []


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
    return fields_from_json(text, f"Recipe {name!r}")


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
        values.update(read_config_file(args.config))                  # 配置文件中的字段
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})   # 只含显式给出的参数（默认值被抑制）
    if values.get("resume"):
        values = resumed_values(values)
    return TrainConfig.from_dict(values)


def resumed_values(given: dict[str, Any]) -> dict[str, Any]:
    """With ``--resume`` the checkpoint's ``train_config`` is the base; only what the user gave overrides it.
    续训时以检查点中的 train_config 为基础，只有用户给出的取值（配方、配置文件、参数）覆盖它

    So ``unet-course train --resume last`` alone continues the run exactly as it was started, recipe included.
    The output folder stays the checkpoint's folder unless ``--out-dir`` is given. ``fit`` then applies each
    override to the restored optimiser and scheduler, or refuses it (:mod:`unet_course.training.resume`).
    因此只写 --resume last 就能按原设置继续；输出目录默认为检查点所在目录

    Raises:
        CheckpointError: the checkpoint is missing, unreadable or has no ``train_config``.
    """
    out_dir = Path(given["out_dir"]).expanduser() if given.get("out_dir") else default_out_dir("train")
    path = resolve_resume(given["resume"], out_dir)
    saved = saved_train_config(load_checkpoint(path), path)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in saved.items() if k in names}
    values.update(given)
    if "data_dir" not in given:
        check_recorded_data_dir(values.get("data_dir"), path)
    values["resume"] = str(path)
    values["out_dir"] = given.get("out_dir") or str(path.parent)
    return values


def check_recorded_data_dir(data_dir: str | None, checkpoint: str | os.PathLike) -> None:
    """Refuse, with the fix, a data folder taken from a checkpoint that does not exist here: a relative path is
    relative to the folder training ran in, not to this one. 检查点记录的数据目录在此处不存在时报错

    Raises:
        DataError: ``data_dir`` is set and missing; the message names the checkpoint and says to pass --data-dir.
    """
    if data_dir is None or Path(data_dir).expanduser().exists():
        return
    where = (" It is a relative path, so it is relative to the folder training ran in, not to this one."
             if not Path(data_dir).expanduser().is_absolute() else "")
    raise DataError(f"The data folder {data_dir!r} recorded in the checkpoint {str(checkpoint)!r} does not exist "
                    f"here.{where} Run from that folder, or pass --data-dir with the data's folder.")
