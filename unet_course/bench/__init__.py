"""``unet-course bench``: how fast does a U-Net train and predict here, and with how much memory?
基准测试：在本机上 U-Net 训练与推理有多快、占用多少内存

Three sections, each in its own module: 三个部分，各在一个模块中：

- :mod:`.modes`: training and inference throughput and peak memory per *mode* (``fp32``, ``bf16+cl``, ...);
  每种模式的训练与推理吞吐量和峰值内存
- :mod:`.predict` (``predict=True``): seconds per image of whole-image and tiled prediction, with and without
  flip TTA, at a DRIVE-like size; 整图与切片预测每张图像的秒数
- :mod:`.levers` (``levers=True``): the training engine against the model alone, and each speed lever.
  训练引擎相对最小循环的开销，以及各提速手段
- :mod:`.peer` (``peer_dir=...``): the training engine against an outside U-Net loop (a checkout of
  Pytorch-UNet) at equal model, and (:mod:`.ceiling`) the most any loop at that model could gain here.
  与外部 U-Net 训练循环在相同模型下对比，并给出相同模型下任何训练循环在本机上的提速上限

Timings from a machine shared with other jobs are noisy: every section alternates its variants round by round and
reports medians, so compare the ratios inside one report, not absolute seconds across reports.
与其他任务共用的机器上计时有噪声：各部分轮流运行其变体并取中位数，应比较同一份报告内的比值

The JSON report 报告字段:

========================================  ========================================================================
field                                     meaning
========================================  ========================================================================
``config``                                the arguments of :func:`run_benchmark` (sizes, steps, modes, sections)
``device``, ``device_name``               where it ran (``cpu`` / ``cuda:0``) and the CPU model or GPU name
``torch_version``, ``python_version``     versions; ``platform``: the OS string
``cpu``                                   ``model``, ``logical_cores``, ``torch_threads``, ``native_bf16``, ...
``params``                                parameters of the benchmarked U-Net
``gflop_per_image``                       ``forward`` and ``train_step`` GFLOP of one ``image_size`` image
``default_mode``                          the mode training uses by default here (``amp="auto"``)
``modes.<m>.amp`` / ``channels_last``     the mode's AMP policy name and memory format;
                                          ``gradient_checkpointing``: whether ``+ckpt`` is on
``modes.<m>.train|infer.img_per_s``       images per second from the median step (``img_per_s_mean``: mean)
``modes.<m>.*.seconds_per_step``          median step time; ``step_times_s``: every timed step
``modes.<m>.*.peak_memory_mb``            memory growth during the phase (``memory_method`` says how);
                                          ``process_peak_mb``: the process's whole high-water mark
``modes.<m>.*.gflop_per_s``               ``img_per_s`` x GFLOP per image
``modes.<m>.train.loss_last``             last loss (``loss_finite``: it is finite); ``optimizer``: its class
``modes.<m>.train_speedup_vs_fp32``       throughput over the ``fp32`` mode of the same run (None without it);
                                          ``infer_speedup_vs_fp32`` likewise for inference
``predict.size``, ``amp``, ``tile``       image size (H, W), AMP policy and tile side of the predict section
``predict.variants.<v>.seconds_per_image``  median wall seconds per image (``cpu_seconds_per_image``: CPU time;
                                          ``times_s``: every timed image)
``predict.tta_vs_whole``                  ``whole+tta`` time over ``whole`` (4 flips cost at most 4x)
``predict.tta_batch_speedup``             four flip passes over one batch of 4 flips (> 1: batching wins)
``predict.tiled_vs_whole``                tiled time over whole-image time
``levers.levers.<l>.seconds_per_step``    median step time of lever ``l`` (``step_times_s``: every step)
``levers.levers.<l>.speedup_vs_model_alone``  ``model_alone`` time over the lever's time (> 1: faster)
``levers.levers.compile.compile_s``       the first call of the compiled model (compilation included)
``levers.levers.<l>.skipped``             why the lever could not run here
``levers.engine_vs_model_alone``          ``engine`` time over ``model_alone`` time (> 1: engine overhead)
``peer.variants.<v>.seconds_per_step``    median step of ``engine``, ``ours_in_peer_loop``, ``peer``
                                          (``img_per_s``, ``step_times_s``); ``peer.amp``: their precision;
                                          ``peer.peer_dir``: the checkout it imported
``peer.engine_vs_peer``                   ``peer`` time over ``engine`` time (> 1: this project is faster)
``peer.ours_in_peer_loop_vs_peer``        ``peer`` time over this project's model in the peer's loop
``matmul_peak``                           with the peer section: best GFLOP/s of a square matrix product
                                          (``side``) in the step's ``dtype`` (:mod:`.ceiling`)
``peer.variants.<v>.gflop_per_s``         ``train_step`` GFLOP x batch over the median step time;
                                          ``fraction_of_matmul_peak``: that over ``matmul_peak.gflop_per_s``
``peer.convolutions_alone``               the model's convolution layers alone, forward + backward, each at its
                                          step shape (``layers``; best of 3 each, summed: ``seconds_per_step``;
                                          ``gflop_per_s``, ``fraction_of_matmul_peak`` as for a variant)
``peer.ceiling_vs_peer``                  the peer's step time over ``convolutions_alone``: the largest
                                          ``engine_vs_peer`` a loop at equal model, on the same kernels, could reach here
``train_step``, ``memory_note``           what a mode's train step runs and how memory is measured
========================================  ========================================================================
"""

from __future__ import annotations

import platform
from typing import Any

import torch

from ..env import cpu_info, pick_device
from ..errors import ConfigError
from ..model import UNet, count_parameters
from ..precision import amp_policy, cpu_has_fast_bf16
from ..rules import check_tile, check_training_size
from .ceiling import against_peak, convolutions_alone, matmul_peak
from .levers import LEVERS, bench_levers, lean_loss
from .modes import CPU_MODES_NO_BF16, DEFAULT_MODES, _bench_mode, count_flops, default_mode, parse_mode
from .peer import PEER_VARIANTS, bench_peer, check_peer
from .predict import PREDICT_VARIANTS, bench_predict

#: DRIVE's image size (height, width), the default of the predict section. DRIVE 图像尺寸
DRIVE_SIZE = (584, 565)


def _check_args(sizes: dict[str, int], warmup: int, sections: tuple[bool, ...]) -> None:
    """Refuse sizes below 1, a negative warm-up and a run that measures nothing. 检查参数"""
    for name, value in sizes.items():
        if int(value) < 1:
            raise ConfigError(f"bench {name} must be >= 1, got {value!r}.")
    if warmup < 0:
        raise ConfigError(f"bench warmup must be >= 0, got {warmup!r}.")
    if not any(sections):
        raise ConfigError("Nothing to measure: train and infer are off and no --predict, --levers or --peer-dir "
                          "section was asked for.")


def _modes_for(dev: torch.device, modes: tuple[str, ...] | list[str] | None) -> list[str]:
    """The modes to run (the device's defaults when None), all checked first. 要测的模式（先全部检查）"""
    if modes is None:
        modes = DEFAULT_MODES.get(dev.type, ("fp32",))
        if dev.type == "cpu" and not cpu_has_fast_bf16():
            modes = CPU_MODES_NO_BF16
    modes = [m.strip() for m in modes if m.strip()]
    for m in modes:
        parse_mode(m)
    return modes


def _header(cfg: dict[str, Any], dev: torch.device, flops: dict[str, float]) -> dict[str, Any]:
    """The report's description of the run and the machine. 报告中描述运行与机器的部分"""
    return {
        "config": cfg,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_info()["model"],
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "params": count_parameters(UNet(cfg["in_channels"], cfg["n_classes"], cfg["base_channels"], cfg["depth"],
                                        cfg["bilinear"])),
        "gflop_per_image": {k: round(v, 3) for k, v in flops.items()},
        "default_mode": default_mode(dev),
        "modes": {},
        "train_step": "unet_course.training.train_one_epoch on a one-batch loader, build_optimizer(TrainConfig())",
        "memory_note": ("CUDA: torch.cuda.max_memory_allocated growth during the phase. CPU: growth of the "
                        "process RSS high-water mark during the phase (VmHWM reset via /proc/self/clear_refs)."),
    }


def _speedups(report: dict[str, Any], flops: dict[str, float]) -> None:
    """Add each mode's speed-up over ``fp32`` and its GFLOP/s. 计算相对 fp32 的加速比与 GFLOP/s"""
    base = report["modes"].get("fp32", {})
    for res in report["modes"].values():
        for phase in ("train", "infer"):
            if phase in res:
                ref = base.get(phase, {}).get("img_per_s")
                res[f"{phase}_speedup_vs_fp32"] = round(res[phase]["img_per_s"] / ref, 3) if ref else None
                res[phase]["gflop_per_s"] = round(res[phase]["img_per_s"] *
                                                  flops["train_step" if phase == "train" else "forward"], 2)


def run_benchmark(base_channels: int = 64, depth: int = 4, image_size: int = 256, batch_size: int = 2,
                  steps: int = 5, warmup: int = 2, modes: tuple[str, ...] | list[str] | None = None,
                  device: str | torch.device = "auto", train: bool = True, infer: bool = True,
                  in_channels: int = 3, n_classes: int = 2, bilinear: bool = False, seed: int = 0,
                  threads: int | None = None, verbose: bool = False, predict: bool = False,
                  predict_size: tuple[int, int] = DRIVE_SIZE, predict_tile: int = 256, levers: bool = False,
                  lever_names: tuple[str, ...] | list[str] | None = None,
                  peer_dir: str | None = None) -> dict[str, Any]:
    """Measure training and inference throughput and peak memory of a U-Net, mode by mode; optionally the predict
    and levers sections. 逐模式测量吞吐量与峰值内存；可选预测与提速手段两部分

    Args:
        base_channels, depth, in_channels, n_classes, bilinear: the :class:`~unet_course.model.UNet`. 模型参数
        image_size: square side of the random input of the modes and levers. 随机输入的边长
        batch_size: images per step. 每步图像数
        steps: timed steps (or rounds) per phase. 计时步数
        warmup: untimed steps first (oneDNN / cuDNN pick kernels on the first calls). 预热步数
        modes: e.g. ``("fp32", "bf16+cl")``; None -> the device's defaults; ``()`` skips the modes section.
            Modes the device cannot run are reported with ``"skipped"``. 要测的模式
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ... 设备
        train, infer: which phases of the modes to run. 要运行的阶段
        seed: model initialisation seed (the same for every mode). 随机种子
        threads: ``torch.set_num_threads`` for the run (None: leave as is). 线程数
        verbose: print progress lines to stderr. 向 stderr 输出进度
        predict, predict_size, predict_tile: run the predict section at ``(H, W)`` with that tile. 预测部分
        levers, lever_names: run the levers section (default: every name of :data:`LEVERS`). 提速手段部分
        peer_dir: run the peer section against this checkout of Pytorch-UNet (None: skip). 外部对比部分

    Returns:
        A JSON-safe dict; every field is listed in the module docstring. 字段见模块说明

    Raises:
        ConfigError: bad sizes, unknown modes or levers, or an unavailable device.
    """
    _check_args({"base_channels": base_channels, "depth": depth, "image_size": image_size,
                 "batch_size": batch_size, "steps": steps, "predict_tile": predict_tile,
                 "predict_height": predict_size[0], "predict_width": predict_size[1]}, warmup,
                (train, infer, predict, levers, peer_dir is not None))
    if train or levers or peer_dir is not None:              # a training step needs batch-norm statistics 训练步骤
        check_training_size(image_size, batch_size, depth, "image_size")
    else:
        check_tile(image_size, depth, "image_size")          # the model must be able to halve it depth times 可以减半
    unknown = sorted(set(lever_names or ()) - set(LEVERS))
    if unknown:
        raise ConfigError(f"Unknown bench lever(s) {unknown}; choose from: {', '.join(LEVERS)}.")
    if predict:
        check_tile(predict_tile, depth, "predict_tile")      # before the modes run, not after 在测量开始之前
    dev = pick_device(device)
    mode_list = _modes_for(dev, modes) if (train or infer) else []
    if threads:
        torch.set_num_threads(int(threads))
    cfg = {"base_channels": base_channels, "depth": depth, "image_size": image_size, "batch_size": batch_size,
           "steps": steps, "warmup": warmup, "in_channels": in_channels, "n_classes": n_classes,
           "bilinear": bilinear, "seed": seed, "train": train, "infer": infer, "modes": list(mode_list),
           "predict": predict, "predict_size": [int(v) for v in predict_size], "predict_tile": int(predict_tile),
           "levers": list(lever_names or LEVERS) if levers else [], "peer": peer_dir is not None}
    if peer_dir is not None:
        check_peer(cfg, peer_dir)                           # 先检查，避免测完其他部分才报错
    flops = count_flops(base_channels, depth, image_size, in_channels, n_classes, bilinear)
    report = _header(cfg, dev, flops)
    for m in mode_list:
        try:
            report["modes"][m] = _bench_mode(m, dev, cfg, train, infer, verbose)
        except ConfigError as exc:                          # 本设备不支持该模式
            report["modes"][m] = {"skipped": str(exc)}
    _speedups(report, flops)
    if predict:
        report["predict"] = bench_predict(cfg, dev, verbose)
    if levers:
        report["levers"] = bench_levers(cfg, dev, verbose)
    if peer_dir is not None:
        report["peer"] = bench_peer(cfg, dev, peer_dir, verbose)
        _add_ceiling(report, cfg, flops["train_step"] * batch_size, dev)
    return report


def _add_ceiling(report: dict[str, Any], cfg: dict[str, Any], gflop_per_step: float, dev: torch.device) -> None:
    """Measure :mod:`.ceiling`'s two yardsticks in the peer section's precision and set the variants against them.
    测量两把尺子，并把各变体与之对比"""
    policy = amp_policy(dev, "auto")
    peak = matmul_peak(dev, policy.dtype)
    report["matmul_peak"] = peak
    sec = report["peer"]
    for res in sec["variants"].values():
        res.update(against_peak(res["seconds_per_step"], gflop_per_step, peak["gflop_per_s"]))
    convs = convolutions_alone(cfg, dev, policy)
    sec["convolutions_alone"] = {**convs, **against_peak(convs["seconds_per_step"], gflop_per_step,
                                                         peak["gflop_per_s"])}
    sec["ceiling_vs_peer"] = round(sec["variants"]["peer"]["seconds_per_step"] / convs["seconds_per_step"], 3)


__all__ = ["DRIVE_SIZE", "LEVERS", "PEER_VARIANTS", "PREDICT_VARIANTS", "bench_levers", "bench_peer", "bench_predict", "count_flops",
           "default_mode", "lean_loss", "parse_mode", "run_benchmark"]
