"""``unet-course bench``: measure U-Net training/inference throughput and peak memory (JSON report).
bench 子命令：测量 U-Net 训练/推理吞吐量与峰值内存（JSON 报告）

Example::

    unet-course bench --output runs/bench_cpu.json
    unet-course bench --device cuda --modes fp32,fp16+cl --image-size 512
    unet-course bench --base-channels 32 --depth 4 --image-size 128 --batch-size 8 --predict --levers

``--predict`` adds seconds per image of whole-image and tiled prediction (with and without flip TTA) at DRIVE's
584 x 565; ``--levers`` adds the engine's overhead over the model alone (``engine_vs_model_alone``) and the gain
of each speed lever; ``--peer-dir DIR`` adds this project's train step against the loop of a checkout of
Pytorch-UNet at equal model (``engine_vs_peer``). Every field of the JSON is described in :mod:`unet_course.bench`.
--predict 增加整图与切片预测的每图秒数；--levers 增加训练引擎开销与各提速手段；字段说明见 unet_course.bench
"""

from __future__ import annotations

import argparse
import json
import sys

from ..bench import DRIVE_SIZE, LEVERS, run_benchmark
from ..files import ensure_writable_file, write_json
from .options import DEVICE_HELP, positive_int

HELP = "measure training/inference throughput and memory (JSON)"

#: Keys of the JSON report; an existing --output file is replaced only when it holds them (an earlier report).
#: JSON 报告的键：已存在的 --output 文件只有含这些键（之前的报告）时才会被替换
REPORT_KEYS = ("device_name", "torch_version", "modes", "gflop_per_image")
#: What Ctrl-C says. 中断时的消息
INTERRUPTED = "interrupted: no report was written (the JSON is printed and written when every section has run)."


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``unet-course bench`` flags to ``parser``. 为 bench 子命令添加参数"""
    parser.description = parser.description or "Measure U-Net training/inference throughput and peak memory."
    parser.add_argument("--base-channels", type=positive_int, default=64, help="width of the first level (default 64)")
    parser.add_argument("--depth", type=positive_int, default=4, help="number of down-sampling steps (default 4)")
    parser.add_argument("--image-size", type=positive_int, default=256, help="side of the square input (default 256)")
    parser.add_argument("--batch-size", type=positive_int, default=2, help="images per step (default 2)")
    parser.add_argument("--steps", type=positive_int, default=5, help="timed steps per phase (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps (default 2)")
    parser.add_argument("--modes", default=None,
                        help="comma-separated modes: fp32|bf16|fp16 plus +cl (channels_last) and/or +ckpt "
                             "(gradient checkpointing); default: the device's set, e.g. fp32,fp32+cl,bf16,bf16+cl")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--bilinear", action="store_true", help="bilinear up-sampling model")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--output", metavar="FILE", default=None, help="also write the JSON report to FILE")
    parser.add_argument("--no-train", dest="train", action="store_false", help="skip the training phase")
    parser.add_argument("--no-infer", dest="infer", action="store_false", help="skip the inference phase")
    parser.add_argument("--no-modes", dest="run_modes", action="store_false",
                        help="skip the per-mode section (run only --predict / --levers)")
    parser.add_argument("--predict", action="store_true",
                        help="also time prediction per image: whole image / tiles, with and without flip TTA")
    parser.add_argument("--predict-size", type=positive_int, nargs=2, default=list(DRIVE_SIZE), metavar=("H", "W"),
                        help=f"image size of --predict (default {DRIVE_SIZE[0]} {DRIVE_SIZE[1]}, DRIVE)")
    parser.add_argument("--predict-tile", type=positive_int, default=256, help="tile side of --predict (default 256)")
    parser.add_argument("--levers", nargs="?", const="all", default=None, metavar="NAMES",
                        help="also time the training engine against the model alone and each speed lever; "
                             f"optionally a comma-separated subset of: {', '.join(LEVERS)}")
    parser.add_argument("--peer-dir", metavar="DIR", default=None,
                        help="also time the train step against the loop of this checkout of "
                             "github.com/milesial/Pytorch-UNet at equal model (base 64, depth 4)")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Run the benchmark from parsed flags; print the JSON report (and write ``--output``). Returns 0.
    按命令行参数运行基准测试，打印 JSON（并写入 --output）

    ``--output`` is checked before the benchmark starts, so an unwritable path fails at once.
    --output 在测量开始前检查，不可写时立即报错
    """
    output = ensure_writable_file(args.output, "--output", report_keys=REPORT_KEYS) if args.output else None
    modes = args.modes.split(",") if args.modes else None
    run_modes = getattr(args, "run_modes", True)
    levers = getattr(args, "levers", None)
    lever_names = None if levers in (None, "all") else [n.strip() for n in levers.split(",") if n.strip()]
    report = run_benchmark(base_channels=args.base_channels, depth=args.depth, image_size=args.image_size,
                           batch_size=args.batch_size, steps=args.steps, warmup=args.warmup, modes=modes,
                           device=args.device, train=args.train and run_modes, infer=args.infer and run_modes,
                           bilinear=args.bilinear, threads=args.threads, verbose=not args.quiet,
                           predict=getattr(args, "predict", False),
                           predict_size=tuple(getattr(args, "predict_size", DRIVE_SIZE)),
                           predict_tile=getattr(args, "predict_tile", 256), levers=levers is not None,
                           lever_names=lever_names, peer_dir=getattr(args, "peer_dir", None))
    if output is not None:
        write_json(output, report, what="bench report")
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0
