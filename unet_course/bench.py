"""``unet-course bench``: how fast does a U-Net train and predict here, and with how much memory?
基准测试：在本机上 U-Net 训练与推理有多快、占用多少内存

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
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig
from .env import cpu_info, pick_device
from .errors import ConfigError
from .losses import SegmentationLoss
from .model import UNet, count_parameters
from .precision import amp_policy, autocast, cpu_has_fast_bf16, make_scaler, prefer_channels_last
from .training import build_optimizer, train_one_epoch

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


class _PeakMemory:
    """Peak memory of one phase (see the module docstring). 记录一个阶段的峰值内存"""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = ""
        self.start_kb = 0

    def __enter__(self) -> _PeakMemory:
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


def _sync(device: torch.device) -> None:
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
        x = torch.empty(1, in_channels, image_size, image_size)
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(x)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        model(x).float().sum().backward()
    return {"forward": forward / 1e9, "train_step": counter.get_total_flops() / 1e9}


# ----------------------------------------------------------------------------------------------------------
# the benchmark 基准测试


def _time_phase(fn, warmup: int, steps: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _summary(times: list[float], batch_size: int) -> dict[str, Any]:
    median = statistics.median(times)
    return {"img_per_s": batch_size / median, "img_per_s_mean": batch_size * len(times) / sum(times),
            "seconds_per_step": median, "step_times_s": [round(t, 4) for t in times]}


def _say(verbose: bool, text: str) -> None:
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

        with _PeakMemory(device) as mem:
            times = _time_phase(step, cfg["warmup"], cfg["steps"], device)
        result["train"] = {**_summary(times, b), "peak_memory_mb": round(mem.delta_mb, 1),
                           "process_peak_mb": round(mem.peak_mb, 1), "memory_method": mem.method,
                           "optimizer": type(optimizer).__name__, "loss_last": losses[-1],
                           "loss_finite": math.isfinite(losses[-1])}
        _say(verbose, f"[bench] {mode:>12} train {result['train']['img_per_s']:8.3f} img/s "
                      f"(median step {result['train']['seconds_per_step']:.3f} s)")
        del optimizer, losses

    if infer:
        model.eval()

        def forward() -> None:
            with torch.inference_mode(), autocast(policy):
                model(images)

        with _PeakMemory(device) as mem:
            times = _time_phase(forward, cfg["warmup"], cfg["steps"], device)
        result["infer"] = {**_summary(times, b), "peak_memory_mb": round(mem.delta_mb, 1),
                           "process_peak_mb": round(mem.peak_mb, 1), "memory_method": mem.method}
        _say(verbose, f"[bench] {mode:>12} infer {result['infer']['img_per_s']:8.3f} img/s")
    return result


def run_benchmark(base_channels: int = 64, depth: int = 4, image_size: int = 256, batch_size: int = 2,
                  steps: int = 5, warmup: int = 2, modes: tuple[str, ...] | list[str] | None = None,
                  device: str | torch.device = "auto", train: bool = True, infer: bool = True,
                  in_channels: int = 3, n_classes: int = 2, bilinear: bool = False, seed: int = 0,
                  threads: int | None = None, verbose: bool = False) -> dict[str, Any]:
    """Measure training and inference throughput and peak memory of a U-Net, mode by mode.
    逐模式测量 U-Net 训练与推理的吞吐量和峰值内存

    Args:
        base_channels, depth, in_channels, n_classes, bilinear: the :class:`~unet_course.model.UNet`. 模型参数
        image_size: square side of the random input. 随机输入的边长
        batch_size: images per step. 每步图像数
        steps: timed steps per phase. 计时步数
        warmup: untimed steps first (oneDNN / cuDNN pick kernels on the first calls). 预热步数
        modes: e.g. ``("fp32", "bf16+cl")``; None -> the device's defaults (CPU: fp32, fp32+cl, bf16, bf16+cl;
            without native bf16: fp32, fp32+cl, bf16+cl).
            Modes the device cannot run are reported with ``"skipped"``. 要测的模式
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ... 设备
        train, infer: which phases to run. 要运行的阶段
        seed: model initialisation seed (the same for every mode). 随机种子
        threads: ``torch.set_num_threads`` for the run (None: leave as is). 线程数
        verbose: print one progress line per mode and phase to stderr. 向 stderr 输出进度

    Returns:
        A JSON-safe dict: ``config``, ``device``, ``torch_version``, ``cpu``, ``params``, ``gflop_per_image``,
        ``default_mode``, ``modes`` (per mode: ``train``/``infer`` with ``img_per_s``, ``peak_memory_mb``, …, and
        ``train_speedup_vs_fp32`` / ``infer_speedup_vs_fp32``), ``memory_note``.

    Raises:
        ConfigError: bad sizes, unknown modes, or an unavailable device.
    """
    for name, value in (("base_channels", base_channels), ("depth", depth), ("image_size", image_size),
                        ("batch_size", batch_size), ("steps", steps)):
        if int(value) < 1:
            raise ConfigError(f"bench {name} must be >= 1, got {value!r}.")
    if warmup < 0:
        raise ConfigError(f"bench warmup must be >= 0, got {warmup!r}.")
    if not (train or infer):
        raise ConfigError("Nothing to measure: both train and infer are off.")
    dev = pick_device(device)
    if modes is None:
        modes = DEFAULT_MODES.get(dev.type, ("fp32",))
        if dev.type == "cpu" and not cpu_has_fast_bf16():
            modes = CPU_MODES_NO_BF16
    modes = [m.strip() for m in modes if m.strip()]
    for m in modes:
        parse_mode(m)                                       # 先检查全部模式名
    if threads:
        torch.set_num_threads(int(threads))
    cfg = {"base_channels": base_channels, "depth": depth, "image_size": image_size, "batch_size": batch_size,
           "steps": steps, "warmup": warmup, "in_channels": in_channels, "n_classes": n_classes,
           "bilinear": bilinear, "seed": seed, "train": train, "infer": infer, "modes": list(modes)}
    flops = count_flops(base_channels, depth, image_size, in_channels, n_classes, bilinear)
    report: dict[str, Any] = {
        "config": cfg,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_info()["model"],
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "params": count_parameters(UNet(in_channels, n_classes, base_channels, depth, bilinear)),
        "gflop_per_image": {k: round(v, 3) for k, v in flops.items()},
        "default_mode": default_mode(dev),
        "modes": {},
        "train_step": "unet_course.training.train_one_epoch on a one-batch loader, build_optimizer(TrainConfig())",
        "memory_note": ("CUDA: torch.cuda.max_memory_allocated growth during the phase. CPU: growth of the "
                        "process RSS high-water mark during the phase (VmHWM reset via /proc/self/clear_refs)."),
    }
    for m in modes:
        try:
            report["modes"][m] = _bench_mode(m, dev, cfg, train, infer, verbose)
        except ConfigError as exc:                          # 本设备不支持该模式
            report["modes"][m] = {"skipped": str(exc)}
    base = report["modes"].get("fp32", {})
    for res in report["modes"].values():
        for phase in ("train", "infer"):
            if phase in res:
                ref = base.get(phase, {}).get("img_per_s")
                res[f"{phase}_speedup_vs_fp32"] = round(res[phase]["img_per_s"] / ref, 3) if ref else None
                res[phase]["gflop_per_s"] = round(res[phase]["img_per_s"] *
                                                  flops["train_step" if phase == "train" else "forward"], 2)
    return report
