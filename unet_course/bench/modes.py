"""Bench modes: a precision plus flags, each trained and run by the package's own engine.
基准测试的模式：精度加标志，每种模式都用包内的训练引擎训练与推理

Each *mode* is a precision plus optional flags, joined with ``+``:
每种模式由精度加可选标志组成，用 + 连接

* precision: ``fp32`` (autocast off), ``bf16`` or ``fp16`` (autocast with that type; fp16 gets a GradScaler on
  CUDA); 精度
* ``cl``: ``channels_last`` (NHWC) model and input; 通道在后的内存格式
* ``ckpt``: gradient checkpointing. 梯度检查点

For every mode a fresh model (same seed) is trained for ``warmup + steps`` steps by the training engine itself:
each step is one call of :func:`unet_course.training.train_one_epoch` on a one-batch loader, with the optimiser from
:func:`unet_course.training.build_optimizer` and the loss, AMP policy, gradient clipping and channels_last handling of
the default :class:`~unet_course.config.TrainConfig`. So the benchmark times the code that trains. Then inference
runs under ``torch.inference_mode``. Throughput is ``batch_size / median step time`` (the median resists other processes
stealing the CPU for a moment). Every mode is compared with ``fp32`` measured in the same run.
每种模式用同一随机种子新建模型，直接调用训练引擎的 train_one_epoch（每次一个批量）计时；吞吐量取中位步时，并与同次运行的 fp32 比较

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (tensors only, not the allocator's cache) after
resetting the peak. On CPU it is the growth of the process's resident set: Linux's RSS high-water mark
(``VmHWM``) is reset through ``/proc/self/clear_refs`` before each phase and compared with the RSS at its start.
Where that reset is impossible, the lifetime ``ru_maxrss`` is reported and marked as such. Allocator caching means
a later mode may reuse memory freed by an earlier one, so CPU numbers are indicative.
峰值内存：CUDA 上为 max_memory_allocated；CPU 上为每个阶段常驻内存高水位相对阶段开始时的增量（Linux），仅供参考

FLOPs per image come from ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device (shapes only, no
compute): the forward pass, and forward + backward for a training step.
每张图像的 FLOPs 由 FlopCounterMode 在 meta 设备上统计（只用形状，不做计算）
"""

from __future__ import annotations

import math
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..errors import ConfigError
from ..losses import SegmentationLoss
from ..model import UNet
from ..precision import amp_policy, autocast, make_scaler, prefer_channels_last
from ..training import build_optimizer, train_one_epoch

PRECISIONS = {"fp32": "off", "bf16": "bf16", "fp16": "fp16"}
FLAGS = ("cl", "ckpt")
DEFAULT_MODES = {"cpu": ("fp32", "fp32+cl", "bf16", "bf16+cl"),
                 "cuda": ("fp32", "fp32+cl", "fp16", "fp16+cl", "bf16+cl"),
                 "mps": ("fp32", "fp32+cl", "fp16")}
#: Without native bf16 the bf16 modes take minutes per step at base 64; one is kept to show the cost.
#: 无原生 bf16 时 bf16 模式极慢，只保留一个用于对比
CPU_MODES_NO_BF16 = ("fp32", "fp32+cl", "bf16+cl")


def parse_mode(mode: str) -> tuple[str, bool, bool]:
    """``"bf16+cl"`` -> ``(amp, channels_last, gradient_checkpointing)`` = ``("bf16", True, False)``.
    解析模式字符串

    Raises:
        ConfigError: unknown precision or flag.

    >>> parse_mode("fp32+cl+ckpt")
    ('off', True, True)
    """
    precision, *flags = mode.strip().lower().split("+")
    if precision not in PRECISIONS:
        raise ConfigError(f"Unknown precision {precision!r} in bench mode {mode!r}; use one of "
                          f"{', '.join(PRECISIONS)}, optionally followed by +cl and/or +ckpt.")
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        raise ConfigError(f"Unknown flag(s) {unknown} in bench mode {mode!r}; allowed flags: {', '.join(FLAGS)}.")
    return PRECISIONS[precision], "cl" in flags, "ckpt" in flags


def default_mode(device: torch.device | str) -> str:
    """The mode training uses by default on ``device``: :func:`~unet_course.precision.amp_policy` with
    ``amp="auto"`` and :func:`~unet_course.precision.prefer_channels_last`.
    训练默认使用的模式：amp="auto" 的策略加上该设备偏好的内存格式

    >>> default_mode("cpu") in ("bf16+cl", "fp32")     # bf16+cl with native bf16, else fp32 (NCHW)
    True
    """
    policy = amp_policy(device, "auto")
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(policy.dtype, "fp32") if policy.enabled \
        else "fp32"
    return precision + ("+cl" if prefer_channels_last(device, policy) else "")


# ----------------------------------------------------------------------------------------------------------
# memory 内存


def _proc_status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakMemory:
    """Peak memory of one phase (see the module docstring). 记录一个阶段的峰值内存"""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = ""
        self.start_kb = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            return self
        try:  # Linux：写 5 到 clear_refs 可重置 VmHWM
            Path("/proc/self/clear_refs").write_text("5")
            self.start_kb = _proc_status_kb("VmRSS") or 0
            self.method = "rss_high_water_delta"
        except OSError:
            self.start_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.method = "ru_maxrss_lifetime"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.delta_mb = (torch.cuda.max_memory_allocated(self.device) - self.start_bytes) / 2**20
        elif self.method == "rss_high_water_delta":
            hwm = _proc_status_kb("VmHWM") or 0
            self.peak_mb = hwm / 1024
            self.delta_mb = max(0, hwm - self.start_kb) / 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.peak_mb = peak / 1024
            self.delta_mb = max(0, peak - self.start_kb) / 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ----------------------------------------------------------------------------------------------------------
# FLOPs 浮点运算量


def count_flops(base_channels: int, depth: int, image_size: int, in_channels: int = 3, n_classes: int = 2,
                bilinear: bool = False) -> dict[str, float]:
    """GFLOP per image for a forward pass and for a training step (forward + backward), on the meta device.
    在 meta 设备上统计每张图像前向与训练一步（前向 + 反向）的 GFLOP

    Counts multiply-adds of convolutions and matrix products as 2 FLOPs (FlopCounterMode's convention);
    element-wise work (BN, ReLU, optimizer) is not counted.
    乘加计为 2 次浮点运算；逐元素运算（BN、ReLU、优化器）不计入

    >>> f = count_flops(base_channels=4, depth=2, image_size=32)
    >>> f["train_step"] > 2 * f["forward"] > 0
    True
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = UNet(in_channels, n_classes, base_channels, depth, bilinear)
        # two images, so batch norm in training mode has more than one value per channel even at a 1x1 bottom
        # 两张图像：即使最底层为 1x1，训练模式的批归一化也有多于一个值
        x = torch.empty(2, in_channels, image_size, image_size)
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(x)
    forward = counter.get_total_flops() / 2                   # per image 每张图像
    with FlopCounterMode(display=False) as counter:
        model(x).float().sum().backward()
    return {"forward": forward / 1e9, "train_step": counter.get_total_flops() / 2 / 1e9}


# ----------------------------------------------------------------------------------------------------------
# the benchmark 基准测试


def time_phase(fn, warmup: int, steps: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def alternate(steps: dict[str, Any], warmup: int, rounds: int,
              device: torch.device) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Run every step function once per round, in turn, and time the rounds after ``warmup``: a burst of load
    from another process then hits all variants alike. Returns ``(median seconds, every time)`` per name.
    每轮依次运行各单步函数并计时（预热轮不计），返回各自的中位时间与全部时间
    """
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(warmup + rounds):
        for name, step in steps.items():                                # 每轮各变体各一步
            t0 = time.perf_counter()
            step()
            sync(device)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}, times


def summary(times: list[float], batch_size: int) -> dict[str, Any]:
    median = statistics.median(times)
    return {"img_per_s": batch_size / median, "img_per_s_mean": batch_size * len(times) / sum(times),
            "seconds_per_step": median, "step_times_s": [round(t, 4) for t in times]}


def say(verbose: bool, text: str) -> None:
    if verbose:
        print(text, file=sys.stderr, flush=True)            # 进度写到 stderr，stdout 只输出 JSON


def _bench_mode(mode: str, device: torch.device, cfg: dict[str, Any], train: bool, infer: bool,
                verbose: bool = False) -> dict[str, Any]:
    amp, channels_last, ckpt = parse_mode(mode)
    policy = amp_policy(device, amp)
    torch.manual_seed(cfg["seed"])
    model = UNet(cfg["in_channels"], cfg["n_classes"], cfg["base_channels"], cfg["depth"], cfg["bilinear"],
                 gradient_checkpointing=ckpt).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    b, s = cfg["batch_size"], cfg["image_size"]
    images = torch.randn(b, cfg["in_channels"], s, s, device=device).contiguous(memory_format=memory_format)
    target = torch.randint(0, cfg["n_classes"], (b, s, s), device=device)
    result: dict[str, Any] = {"amp": policy.name, "channels_last": channels_last, "gradient_checkpointing": ckpt}

    if train:
        tcfg = TrainConfig(mode="multiclass", base_channels=cfg["base_channels"], depth=cfg["depth"],
                           batch_size=b, channels_last=channels_last, gradient_checkpointing=ckpt)
        loss_fn = SegmentationLoss(mode=tcfg.mode, ce_weight=tcfg.ce_weight, dice_weight=tcfg.dice_weight,
                                   ignore_index=tcfg.ignore_index).to(device)
        optimizer = build_optimizer(model, tcfg)
        scaler = make_scaler(policy)
        loader = [{"image": images, "mask": target}]        # 一个批量的“数据加载器”
        losses: list[float] = []

        def step() -> None:
            out = train_one_epoch(model, loader, optimizer, loss_fn, device, policy, scaler,
                                  grad_clip=tcfg.grad_clip, channels_last=channels_last, progress="none")
            losses.append(out["loss"])

        with PeakMemory(device) as mem:
            times = time_phase(step, cfg["warmup"], cfg["steps"], device)
        result["train"] = {**summary(times, b), "peak_memory_mb": round(mem.delta_mb, 1),
                           "process_peak_mb": round(mem.peak_mb, 1), "memory_method": mem.method,
                           "optimizer": type(optimizer).__name__, "loss_last": losses[-1],
                           "loss_finite": math.isfinite(losses[-1])}
        say(verbose, f"[bench] {mode:>12} train {result['train']['img_per_s']:8.3f} img/s "
                      f"(median step {result['train']['seconds_per_step']:.3f} s)")
        del optimizer, losses

    if infer:
        model.eval()

        def forward() -> None:
            with torch.inference_mode(), autocast(policy):
                model(images)

        with PeakMemory(device) as mem:
            times = time_phase(forward, cfg["warmup"], cfg["steps"], device)
        result["infer"] = {**summary(times, b), "peak_memory_mb": round(mem.delta_mb, 1),
                           "process_peak_mb": round(mem.peak_mb, 1), "memory_method": mem.method}
        say(verbose, f"[bench] {mode:>12} infer {result['infer']['img_per_s']:8.3f} img/s")
    return result
