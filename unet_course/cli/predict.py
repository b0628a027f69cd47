"""``unet-course predict``: write one mask per input image with a trained checkpoint.
predict 子命令：用训练好的检查点为每张输入图像写出一个掩码

Outputs are named like the inputs: ``01_test.tif`` -> ``<output>/01_test.png`` (the original mask values at the
original size); a multi-page TIFF (ISBI ``test-volume.tif``) -> ``<output>/test-volume.tif`` with one mask page per
input page. ``--viz`` adds ``<name>_overlay.png``, ``--save-probs`` adds ``<name>_prob.npy`` (``(K, H, W)``;
``(N, K, H, W)`` for a stack).
输出与输入同名：单张图写 PNG，多页 TIFF 写同名的多页 TIFF；--viz 额外写叠加图，--save-probs 写概率

predict never overwrites an input or a file it did not write. Before any work it refuses an ``-o/--output`` that
is the folder of an input, an output name that resolves to an input file, an existing file that lacks predict's
mark (:data:`MARK`, written into every PNG and TIFF it makes), such as a label mask named like its image, and two
inputs that would write the same file (``x.jpg`` and ``x.png`` both give ``x.png``); every message names the files
and the fix. Its own earlier outputs are replaced. Each file is written atomically
(:func:`unet_course.files.write_with`): a full disk leaves no partial or 0-byte mask, and the error names the
folder and its free space. An input that cannot be read is skipped and named, the others are still predicted, and
the run ends with exit code 2 and the list of skipped files.
predict 不会覆盖输入文件或不是它写的文件：开始前就拒绝与输入同目录的 -o/--output、会解析到输入文件或无 predict 标记的
已有文件（如同名的标签掩码）的输出名，以及会写同一文件的两个输入（如 x.jpg 与 x.png）；它自己之前的输出会被替换；
每个文件原子写入，磁盘已满时不留下 0 字节文件；无法读取的输入被跳过并在结束时列出（退出码 2）

Example::

    unet-course predict -m runs/drive/best.pt --input-dir DRIVE/test/images -o runs/drive/test_masks \\
        --fov-dir DRIVE/test/mask

How to predict comes from the checkpoint (``TrainConfig.predict_tile`` / ``predict_tta``: by default the whole
image in one pass, no TTA); ``--tile N`` / ``--whole-image`` and ``--tta`` / ``--no-tta`` override it. A whole
image whose estimated memory exceeds ``--max-memory-mb`` is tiled automatically, with one warning.
预测方式默认取自检查点（整图、不用 TTA），--tile/--whole-image 与 --tta/--no-tta 可覆盖；超过内存上限时自动切片
"""

from __future__ import annotations

import argparse
import io
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image, PngImagePlugin

from ..checkpoint import load_model
from ..data.io import IMAGE_EXTENSIONS, image_subfolders, is_image_file, page_count, read_image, read_stack
from ..env import default_out_dir, pick_device
from ..errors import CheckpointError, ConfigError, DataError, OutputError, UNetCourseError
from ..files import checked_output_dir, write_with
from ..inference import (
    DEFAULT_MEMORY_CAP_MB,
    apply_fov,
    check_memory_cap,
    find_fov_mask,
    predict_image,
    settings_from_meta,
)
from ..rules import check_tile
from ..viz import overlay
from .options import add_inference_arguments, inference_options, unused_tiling_note

HELP = "write masks for images with a trained checkpoint"

#: Written into every PNG (a text chunk) and TIFF (the Software tag) that predict makes, so that a later run can
#: tell its own outputs, which it replaces, from anyone else's files, which it never overwrites. 输出文件中的标记
MARK = "unet-course predict"

#: The flag that names the output folder, as messages should spell it. 输出目录参数的写法
OUTPUT_FLAG = "-o/--output"


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``unet-course predict`` options to ``parser``. 为 predict 子命令添加参数"""
    parser.description = (
        "Write one mask per input, named like it (<name>.png; a multi-page TIFF gives <name>.tif with one page per "
        "input page). Inputs are never overwritten: predict refuses, before any work, an -o/--output that is the "
        "folder of an input, an existing file there that predict did not write (a label mask named like its "
        "image; its own earlier masks are replaced) and two inputs with the same name stem (x.jpg and x.png would "
        "both write x.png); predict those in two runs with different -o/--output folders.")
    parser.add_argument("-m", "--model", required=True, metavar="CKPT", help="checkpoint (best.pt / last.pt)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("-i", "--input", nargs="+", metavar="IMG", help="image file(s); a multi-page TIFF is a stack")
    src.add_argument("--input-dir", metavar="DIR", help=f"every image in DIR ({', '.join(IMAGE_EXTENSIONS)})")
    parser.add_argument("-o", "--output", metavar="DIR", default=None,
                        help="where the masks go (default runs/predict); not the folder of an input 输出目录")
    parser.add_argument("--fov-dir", metavar="DIR", default=None,
                        help="field-of-view masks (<name>_mask.*, e.g. DRIVE's test/mask): pixels outside the FOV "
                             "are set to the background value 视野掩码目录")
    parser.add_argument("--viz", action="store_true", help="also write <name>_overlay.png 叠加图")
    parser.add_argument("--save-probs", action="store_true",
                        help="also write <name>_prob.npy (float16, K x H x W; N x K x H x W for a stack) 概率")
    add_inference_arguments(parser)
    add_prediction_default_arguments(parser)
    parser.set_defaults(func=run_cli)
    return parser


def add_prediction_default_arguments(parser: argparse.ArgumentParser) -> None:
    """``--no-tta``, ``--whole-image`` and ``--max-memory-mb``: override how the checkpoint says to predict.
    覆盖检查点记录的预测方式

    Without ``--tile`` / ``--tta`` the checkpoint's ``predict_tile`` / ``predict_tta`` apply (see
    :func:`unet_course.inference.settings_from_meta`), so ``--tta`` reads "not given" as None here.
    未给出 --tile / --tta 时使用检查点中的设置
    """
    parser.set_defaults(tta=None)                                  # None：使用检查点的 predict_tta
    group = parser.add_argument_group("prediction defaults 预测方式（默认取自检查点）")
    group.add_argument("--no-tta", dest="tta", action="store_false",
                       help="no flip TTA even if the checkpoint asks for it 不使用 TTA")
    group.add_argument("--whole-image", action="store_true",
                       help="one whole-image pass even if the checkpoint stores a tile size 整图推理")
    group.add_argument("--max-memory-mb", type=float, default=DEFAULT_MEMORY_CAP_MB, metavar="MB",
                       help=f"tile automatically when a whole-image pass would need more (default "
                            f"{DEFAULT_MEMORY_CAP_MB:.0f}) 整图推理的内存上限")


def prediction_options(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`~unet_course.cli.options.inference_options` without the flags that were not given, so the
    checkpoint's ``tile`` / ``tta`` apply; ``--whole-image`` gives ``tile=0``. 未给出的参数不覆盖检查点的设置
    """
    options = inference_options(args)
    if getattr(args, "whole_image", False):
        if options.get("tile") is not None:
            raise ConfigError("--tile and --whole-image contradict each other; give one of them.")
        options["tile"] = 0                                        # 0：整图
    for key in ("tile", "tta"):
        if options.get(key) is None:
            options.pop(key, None)                                 # 使用检查点的设置
    options["max_memory_mb"] = check_memory_cap(getattr(args, "max_memory_mb", DEFAULT_MEMORY_CAP_MB),
                                                "--max-memory-mb")
    return options


def check_user_settings(options: dict[str, Any], model: Any) -> None:
    """Refuse the flags that do not fit the loaded model: a ``--tile`` below what it can halve
    (:func:`~unet_course.rules.check_tile`), and a ``--threshold`` for a model of more than two classes, whose
    labels are the arg-max (:func:`~unet_course.metrics.probs_to_labels`). They need the model, so they run once
    the checkpoint is loaded. 需要模型本身的检查：切片大小与阈值（多于两类时不使用阈值），在加载检查点之后进行
    """
    if options.get("tile"):
        check_tile(options["tile"], getattr(model, "depth", None), "--tile")
    n_classes = getattr(model, "n_classes", None)
    if options.get("threshold") is not None and n_classes is not None and n_classes > 2:
        raise ConfigError(f"--threshold applies to two-class models; this checkpoint has {n_classes} classes, "
                          "whose labels are the most probable class. Leave --threshold out.")


def describe_settings(settings: dict[str, Any]) -> str:
    """One line that says how the images are predicted. 一行说明预测方式

    >>> describe_settings({"tile": None, "tta": True, "max_memory_mb": 2048.0})
    'whole image (tiles above 2048 MiB), flip TTA'
    """
    tile = settings.get("tile")
    how = f"{tile}x{tile} tiles" if tile else f"whole image (tiles above {settings.get('max_memory_mb', 0):.0f} MiB)"
    return how + (", flip TTA" if settings.get("tta") else ", no TTA")


# ----------------------------------------------------------------------------------------------------------------
# Inputs and planned outputs 输入与计划输出
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Job:
    """One input file and the files it will write. 一个输入文件及其输出文件"""

    path: Path                                           # the input image or TIFF stack 输入
    pages: int                                           # > 1 for a multi-page TIFF 页数
    outputs: dict[str, Path] = field(default_factory=dict)   # "mask" / "overlay" / "probs" -> path


def collect_inputs(files: Sequence[str] | None, folder: str | None) -> list[Path]:
    """The input files, checked to exist. 收集并检查输入文件

    Raises:
        DataError: a missing file, or a folder that is missing or holds no images.
    """
    if folder is not None:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise DataError(f"--input-dir {str(root)!r} is not a folder.")
        # the data sets' rule: visible files with an image extension (not macOS's ._x.png) 与数据集相同的规则
        paths = sorted(p for p in root.iterdir() if p.is_file() and is_image_file(p))
        if not paths:
            subs = image_subfolders(root)                # e.g. a data set's root 例如给了数据集根目录
            pick = next((d for d in subs if "image" in d.name.lower()), subs[0]) if subs else None
            hint = (f" Its subfolders {', '.join(repr(d.name + '/') for d in subs[:6])} hold images; pass the one to "
                    f"predict, e.g. --input-dir {str(pick)!r}." if pick else "")
            raise DataError(f"--input-dir {str(root)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}).{hint}")
        return paths
    paths = [Path(f).expanduser() for f in files or []]
    folders = [str(p) for p in paths if p.is_dir()]
    if folders:                                                        # -i 给了目录：提示改用 --input-dir
        raise DataError(f"-i/--input {', '.join(folders)}: a folder, not an image file; predict every image in it "
                        f"with --input-dir {folders[0]}.")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"Input image(s) not found: {', '.join(missing)}.")
    unique = {p.resolve(): p for p in reversed(paths)}                # a file given twice (overlapping globs) once
    return [p for p in paths if unique.get(p.resolve()) is p]         # 重复给出的文件只预测一次，保持顺序


def plan_outputs(inputs: Sequence[Path], out_dir: Path, viz: bool = False, save_probs: bool = False) -> list[Job]:
    """Name every output before any work: ``<stem>.png`` (``<stem>.tif`` for a stack), plus the extras.
    开始工作前为每个输出命名

    Args:
        inputs: the input files. 输入文件
        out_dir: the output folder (need not exist yet). 输出目录
        viz, save_probs: also plan ``<stem>_overlay.*`` / ``<stem>_prob.npy``. 是否写叠加图与概率

    Returns:
        One :class:`Job` per input.
    """
    jobs = []
    for path in inputs:
        pages = page_count(path)
        suffix = ".tif" if pages > 1 else ".png"                       # 多页 TIFF 写多页 TIFF
        job = Job(path, pages, {"mask": out_dir / f"{path.stem}{suffix}"})
        if viz:
            job.outputs["overlay"] = out_dir / f"{path.stem}_overlay{suffix}"
        if save_probs:
            job.outputs["probs"] = out_dir / f"{path.stem}_prob.npy"
        jobs.append(job)
    return jobs


def check_outputs(jobs: Sequence[Job], out_dir: Path) -> None:
    """Refuse any plan that would overwrite an input or a file predict did not write, or write one file twice.
    拒绝会覆盖输入或他人文件、或重复写入的计划

    Raises:
        OutputError: ``out_dir`` is a file name (``mask.png``) that is not a folder yet; ``out_dir`` is the folder
            of an input; an output resolves to an input file, or to an existing file without :data:`MARK`; two
            inputs would write the same file (the message names both inputs).
    """
    if out_dir.suffix.lower() in (*IMAGE_EXTENSIONS, ".npy") and not out_dir.is_dir():
        example = jobs[0].outputs["mask"].name if jobs else "<input name>.png"
        raise OutputError(
            f"{OUTPUT_FLAG} {str(out_dir)!r} looks like a file name, but it names the output folder: the mask "
            f"would be written as {str(out_dir / example)!r}. Give a folder, e.g. {OUTPUT_FLAG} "
            f"{str(out_dir.with_suffix(''))!r}; each mask takes its input's name.")
    target = out_dir.expanduser().resolve()
    inputs = {job.path.resolve(): job.path for job in jobs}
    beside = [str(p) for p in inputs.values() if p.resolve().parent == target]
    if beside:
        raise OutputError(
            f"{OUTPUT_FLAG} {str(out_dir)!r} is the folder of the input(s) {', '.join(beside[:3])}"
            f"{' ...' if len(beside) > 3 else ''}; masks are named like their inputs and would overwrite or mix "
            f"with them. Choose another {OUTPUT_FLAG} folder.")
    writers: dict[Path, tuple[Path, str]] = {}
    for job in jobs:
        for output in job.outputs.values():
            resolved = output.expanduser().resolve()
            if resolved in inputs:
                raise OutputError(f"Writing {str(output)!r} would overwrite the input {str(inputs[resolved])!r}. "
                                  f"Choose another {OUTPUT_FLAG} folder.")
            key = resolved.with_name(resolved.name.casefold())    # macOS / Windows: A.png is a.png 不区分大小写
            if key in writers:
                first, name = writers[key]
                why = ("outputs are named by the input's name without its suffix" if name == output.name else
                       f"{name!r} and {output.name!r} are one file on macOS and Windows, where case does not count")
                raise OutputError(
                    f"The inputs {str(first)!r} and {str(job.path)!r} would both write {str(output)!r} ({why}). "
                    f"Rename one of them, or predict them in two runs with different {OUTPUT_FLAG} folders.")
            writers[key] = (job.path, output.name)
    foreign = [str(output) for job in jobs for output in job.outputs.values() if not may_replace(output, job)]
    if foreign:
        raise OutputError(
            f"{OUTPUT_FLAG} {str(out_dir)!r} already holds {', '.join(repr(f) for f in foreign[:3])}"
            f"{f' and {len(foreign) - 3} more' if len(foreign) > 3 else ''}, which predict did not write (a label "
            "mask, another tool's result?); predict replaces only its own earlier outputs and never overwrites "
            f"other files. Choose another {OUTPUT_FLAG} folder, or move those files away.")


def may_replace(output: Path, job: Job) -> bool:
    """True when ``output`` does not exist yet or is predict's own earlier output (:data:`MARK`); a ``.npy`` goes
    with the job's mask. 输出文件不存在，或是 predict 之前写的（带标记）时为 True
    """
    if not output.exists():
        return True
    if output.suffix == ".npy":                                  # 概率文件无法加标记：随同一输入的掩码判断
        mask = job.outputs["mask"]
        return mask.exists() and may_replace(mask, job)
    try:
        if output.suffix == ".tif":
            with tifffile.TiffFile(output) as tif:
                tag = tif.pages[0].tags.get("Software")
                return tag is not None and tag.value == MARK
        with Image.open(output) as image:
            return image.info.get("Software") == MARK
    except Exception:  # unreadable or not an image: not ours  无法读取的文件不是我们写的
        return False


# ----------------------------------------------------------------------------------------------------------------
# Atomic writers 原子写入
# ----------------------------------------------------------------------------------------------------------------
def write_png(path: Path, array: np.ndarray, what: str = "mask") -> Path:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG, atomically. 原子写入 PNG"""
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", MARK)                              # predict 的标记
    return write_with(path, lambda handle: Image.fromarray(array).save(handle, format="PNG", pnginfo=info), what)


def write_tiff(path: Path, stack: np.ndarray, photometric: str, what: str = "mask stack") -> Path:
    """Write ``(N, H, W)`` / ``(N, H, W, 3)`` as a multi-page TIFF, atomically. 原子写入多页 TIFF"""
    buffer = io.BytesIO()                      # tifffile wants a named file; the atomic handle has only a number
    tifffile.imwrite(buffer, stack, photometric=photometric, software=MARK)
    return write_with(path, lambda handle: handle.write(buffer.getvalue()), what)


def write_npy(path: Path, array: np.ndarray, what: str = "probabilities") -> Path:
    """Write a numpy array as ``.npy``, atomically. 原子写入 .npy"""
    return write_with(path, lambda handle: np.save(handle, array), what)


def overlay_array(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The predicted classes drawn over the image, uint8 ``(H, W, 3)``. 预测类别叠加在图像上"""
    return np.asarray(overlay(image, labels))


# ----------------------------------------------------------------------------------------------------------------
# The command 子命令
# ----------------------------------------------------------------------------------------------------------------
def run_cli(args: argparse.Namespace) -> int:
    """Run ``unet-course predict``: check everything, then predict and write each input in turn.
    执行 predict：先检查全部输入与输出，再逐个预测并写出

    An input that cannot be read (a corrupt or truncated file) is skipped with a message, the others are still
    predicted, and the run ends with an error that lists the skipped files. Any other error stops the run and says
    how many masks were already written. 无法读取的输入会被跳过并在最后列出；其他错误立即停止并说明已写出多少掩码

    Returns:
        0 on success. Errors are :class:`~unet_course.errors.UNetCourseError` subclasses, printed by the CLI.
    """
    checkpoint = Path(args.model).expanduser()
    if not checkpoint.exists():
        raise CheckpointError(
            f"Checkpoint {str(checkpoint)!r} does not exist. Pass the best.pt/last.pt written by `unet-course train`."
        )
    inputs = collect_inputs(getattr(args, "input", None), getattr(args, "input_dir", None))
    options = prediction_options(args)                                     # 先检查 --scale 等参数
    fov_dir = Path(args.fov_dir).expanduser() if getattr(args, "fov_dir", None) else None
    fov_paths = {path: find_fov_mask(fov_dir, path) for path in inputs} if fov_dir else {}   # 先全部检查再预测
    out_dir = Path(args.output).expanduser() if args.output else default_out_dir("predict")
    jobs = plan_outputs(inputs, out_dir, viz=args.viz, save_probs=getattr(args, "save_probs", False))
    check_outputs(jobs, out_dir)                                           # 不覆盖输入，不重复写同一文件
    device = pick_device(args.device)
    with checked_output_dir(out_dir, OUTPUT_FLAG) as out_dir:              # 之后的检查失败时不留下空目录
        model, meta = load_model(checkpoint, device=device)
        settings = {**settings_from_meta(meta), **options}                  # 检查点的设置，参数覆盖
        settings["tile"] = settings["tile"] or None
        check_user_settings(options, model)
    print(f"predicting {len(jobs)} input(s): {describe_settings(settings)}")
    if note := unused_tiling_note(args, settings["tile"]):
        print(note, file=sys.stderr)

    def predict(image: np.ndarray, label: str) -> Any:
        # the checkpoint is part of the name, so a channel mismatch names both files 通道不符时消息同时写出两个文件
        return predict_image(model, image, name=f"{label} (model {checkpoint})", device=device, **settings)

    written, unreadable = 0, []
    try:
        for job in jobs:
            start = time.perf_counter()
            try:
                pixels = read_stack(job.path) if job.pages > 1 else read_image(job.path)
            except DataError as exc:                                           # 损坏的文件：跳过，继续其他输入
                print(f"skipped {job.path}: {exc}", file=sys.stderr)
                unreadable.append(str(job.path))
                continue
            try:
                if job.pages > 1:
                    shape = _predict_stack(job, np.asarray(pixels), predict)
                else:
                    shape = _predict_single(job, pixels, predict, fov_paths.get(job.path),
                                            int(settings["mask_values"][0]))
            except UNetCourseError as exc:                                     # 其他错误：停止，并说明已写出的掩码
                if written:
                    exc.args = (f"{exc} ({written} of {len(jobs)} input(s) were predicted into {str(out_dir)!r} "
                                "before this one; their masks are kept.)",)
                raise
            written += 1
            print(f"{job.path.name} -> {job.outputs['mask']} ({shape}, {time.perf_counter() - start:.1f} s)")
    except KeyboardInterrupt:                                              # Ctrl-C：已写出的文件都是完整的
        print(f"\ninterrupted: {written} of {len(jobs)} input(s) have their mask in {str(out_dir)!r}, each file "
              "complete (files are written whole or not at all). Run the same command again to predict them all.",
              file=sys.stderr)
        return 130
    if unreadable:
        raise DataError(unreadable_summary(unreadable, len(jobs), out_dir))
    return 0


def unreadable_summary(unreadable: Sequence[str], total: int, out_dir: Path) -> str:
    """The closing message of a run that skipped unreadable inputs. 跳过无法读取的输入后的结束消息

    >>> unreadable_summary(["in/b.png"], 3, Path("masks"))  # doctest: +NORMALIZE_WHITESPACE
    "1 of 3 input(s) could not be read and have no mask: in/b.png (the reason is printed above each). The
    other 2 mask(s) are in 'masks'. Replace the file(s), then predict only them: -i in/b.png"
    """
    listed = ", ".join(unreadable[:5]) + (f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
    return (f"{len(unreadable)} of {total} input(s) could not be read and have no mask: {listed} (the reason is "
            f"printed above each). The other {total - len(unreadable)} mask(s) are in {str(out_dir)!r}. Replace "
            f"the file(s), then predict only them: -i {shlex.join(unreadable[:5])}")


def _predict_stack(job: Job, stack: np.ndarray, predict: Callable[[np.ndarray, str], Any]) -> str:
    """Predict every page of a multi-page TIFF ``(N, H, W[, C])``; write the mask stack (and overlays, probabilities).
    逐页预测多页 TIFF"""
    masks, overlays, probs = [], [], []
    for k, page in enumerate(stack):
        pred = predict(page, f"{job.path} (page {k})")
        masks.append(pred.mask)                                            # (H, W)
        if "overlay" in job.outputs:
            overlays.append(overlay_array(page, pred.labels))              # (H, W, 3)
        if "probs" in job.outputs:
            probs.append(pred.probs.astype(np.float16))                    # (K, H, W)
    # (N, H, W) one mask per page; minisblack, so that 3 pages are not read as RGB planes 明确 minisblack
    write_tiff(job.outputs["mask"], np.stack(masks), "minisblack")
    if overlays:
        write_tiff(job.outputs["overlay"], np.stack(overlays), "rgb", what="overlay stack")
    if probs:
        write_npy(job.outputs["probs"], np.stack(probs))                  # (N, K, H, W)
    return f"{len(masks)} pages of {masks[0].shape[1]}x{masks[0].shape[0]}"


def _predict_single(job: Job, image: np.ndarray, predict: Callable[[np.ndarray, str], Any], fov: Path | None,
                    background: int) -> str:
    """Predict one image ``(H, W, C)``; write its mask (FOV applied) and the extras. 预测单张图像并写出掩码与附加文件"""
    pred = predict(image, str(job.path))
    mask = pred.mask if fov is None else apply_fov(pred.mask, fov, background)   # 视野外为背景
    write_png(job.outputs["mask"], mask)
    if "overlay" in job.outputs:
        write_png(job.outputs["overlay"], overlay_array(image, pred.labels), what="overlay")
    if "probs" in job.outputs:
        write_npy(job.outputs["probs"], pred.probs.astype(np.float16))
    return f"{mask.shape[1]}x{mask.shape[0]}"
