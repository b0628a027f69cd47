"""Bench section ``predict``: seconds per image of whole-image and tiled prediction, with and without flip TTA.
基准测试的 predict 部分：整图与切片预测、有无翻转 TTA 时每张图像的秒数

Each variant calls :func:`unet_course.inference.predict_probs` (the code ``unet-course predict`` runs) on one
random preprocessed image of ``predict_size`` (DRIVE: 584 x 565) with the default AMP policy and a freshly
initialised model of the benchmark's width and depth. The variants run in turn, round after round, so a burst of
load from another process hits all of them alike; the median of the rounds is reported, as wall-clock seconds and
as process CPU seconds (the CPU time is less sensitive to other processes sharing the cores).
各变体轮流运行（每轮各一次），其他进程造成的负载波动对所有变体影响相同；报告中位数，包括墙钟时间与进程 CPU 时间

Variants: ``whole`` (one pass), ``whole+tta`` (flip TTA as ``predict`` runs it here: one batch of four flips on
CUDA, four passes on the CPU), ``whole+tta_batch`` and ``whole+tta_loop`` (the four flips forced into one batch of
4, or forced to four passes: ``tta_batch_speedup`` is the loop's time over the batch's, the measurement behind
that choice), ``tiled`` and ``tiled+tta`` (``predict_tile`` tiles, ``tile_batch`` 4, overlap 0.25).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from ..inference import predict_probs
from ..inference.predict import TTA_FLIPS, flip_batch_probs
from ..model import UNet
from ..precision import amp_policy, prefer_channels_last
from .modes import say, sync

#: The predict variants, in the order they run each round. 预测变体（每轮的运行顺序）
PREDICT_VARIANTS = ("whole", "whole+tta", "whole+tta_batch", "whole+tta_loop", "tiled", "tiled+tta")


def _flip_loop(model: torch.nn.Module, x: torch.Tensor, device: torch.device, amp: str) -> torch.Tensor:
    """Flip TTA as four separate whole-image passes. 逐个翻转前向"""
    total = None
    for dims in TTA_FLIPS:
        xi = x.flip(dims) if dims else x
        p = predict_probs(model, xi, mode="multiclass", device=device, amp=amp, max_memory_mb=None)  # (1, K, H, W)
        p = p.flip(dims) if dims else p                                 # 反翻转
        total = p if total is None else total + p
    assert total is not None
    return total / len(TTA_FLIPS)


def bench_predict(cfg: dict[str, Any], device: torch.device, verbose: bool = False) -> dict[str, Any]:
    """Time the predict variants, alternating (module docstring). 轮流计时各预测变体

    Args:
        cfg: the benchmark config (``base_channels``, ``depth``, ``in_channels``, ``n_classes``, ``bilinear``,
            ``seed``, ``warmup``, ``steps``, ``predict_size``, ``predict_tile``, ``predict_variants``). 配置
        device: where to run. 设备
        verbose: one progress line per variant on stderr. 进度输出

    Returns:
        ``{"size", "amp", "channels_last", "tile", "variants": {name: {"seconds_per_image",
        "cpu_seconds_per_image", "times_s"}}, "tta_vs_whole", "tta_batch_speedup", "tiled_vs_whole"}``.
    """
    torch.manual_seed(cfg["seed"])
    model = UNet(cfg["in_channels"], cfg["n_classes"], cfg["base_channels"], cfg["depth"], cfg["bilinear"])
    model = model.to(device).eval()
    height, width = cfg["predict_size"]
    x = torch.randn(1, cfg["in_channels"], height, width)               # (1, C, H, W) 已预处理的图像
    tile = cfg["predict_tile"]
    policy = amp_policy(device, "auto")
    calls = {
        "whole": lambda: predict_probs(model, x, device=device, max_memory_mb=None),
        "whole+tta": lambda: predict_probs(model, x, tta=True, device=device, max_memory_mb=None),
        "whole+tta_batch": lambda: flip_batch_probs(model, x, TTA_FLIPS, "multiclass", device, policy),
        "whole+tta_loop": lambda: _flip_loop(model, x, device, "auto"),
        "tiled": lambda: predict_probs(model, x, tile=tile, device=device),
        "tiled+tta": lambda: predict_probs(model, x, tile=tile, tta=True, device=device),
    }
    names = [n for n in cfg.get("predict_variants") or PREDICT_VARIANTS if n in calls]
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for round_ in range(cfg["warmup"] + cfg["steps"]):
        for name in names:                                              # 每轮各变体各运行一次
            t0, c0 = time.perf_counter(), time.process_time()
            calls[name]()
            sync(device)
            if round_ >= cfg["warmup"]:
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    variants = {n: {"seconds_per_image": round(statistics.median(wall[n]), 4),
                    "cpu_seconds_per_image": round(statistics.median(cpu[n]), 4),
                    "times_s": [round(t, 4) for t in wall[n]]} for n in names}
    for n in names:
        say(verbose, f"[bench] predict {n:>15} {variants[n]['seconds_per_image']:8.3f} s/image")

    def ratio(a: str, b: str) -> float | None:
        if a in variants and b in variants and variants[b]["seconds_per_image"] > 0:
            return round(variants[a]["seconds_per_image"] / variants[b]["seconds_per_image"], 3)
        return None

    return {"size": [height, width], "amp": policy.name, "channels_last": prefer_channels_last(device, policy),
            "tile": tile, "variants": variants, "tta_vs_whole": ratio("whole+tta", "whole"),
            "tta_batch_speedup": ratio("whole+tta_loop", "whole+tta_batch"), "tiled_vs_whole": ratio("tiled", "whole")}


__all__ = ["PREDICT_VARIANTS", "bench_predict"]
