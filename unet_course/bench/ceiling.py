"""How much faster could a train step be on this machine? Two yardsticks for the bench's peer section.
训练一步在本机上还能快多少？基准测试 peer 部分的两把尺子

- :func:`matmul_peak` (field ``matmul_peak``): the best GFLOP/s of a square matrix product in the step's precision,
  the usual measure of what a machine can do; a step's GFLOP/s over it is its share of the machine.
  方阵乘法的最佳 GFLOP/s：一步的 GFLOP/s 除以它，即占机器能力的比例
- :func:`convolutions_alone` (field ``peer.convolutions_alone``): the model's own convolutions, forward and
  backward, each layer on its own with the step's shapes, precision and memory format, and nothing else. Almost all
  of a U-Net step's arithmetic is in these layers, and both loops call the same library kernels for them, so their
  summed time is what a step would take if batch norm, ReLU, the loss and the optimiser were free: the peer's step
  time over it (``peer.ceiling_vs_peer``) is the most any loop at equal model could gain on the peer here.
  模型自己的各卷积层单独运行（前向 + 反向，形状、精度、内存格式同训练一步）：若其余一切耗时为零，一步就需这么久，
  所以外部一步的时间除以它，就是相同模型下任何训练循环相对外部循环的最大加速比
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..model import UNet
from ..precision import AmpPolicy, autocast
from .modes import sync

#: Side of the square matrices: large enough to reach the kernel's steady rate, small enough to take well under a
#: second on two CPU cores. 方阵边长
MATMUL_SIDE = 2048


def _best_seconds(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``fn``, after one untimed call (kernel choice, caches).
    The best call rather than the median: these are ceilings, and a burst of load from another process only slows a
    call down. 预热一次后计时若干次取最快：这是上限，其他进程的干扰只会让某次变慢"""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(device: torch.device, dtype: torch.dtype, side: int = MATMUL_SIDE, repeats: int = 5) -> dict[str, Any]:
    """The best GFLOP/s of ``side x side`` matrix products in ``dtype`` on ``device``, over ``repeats`` timed calls.
    方阵乘法的最佳 GFLOP/s

    >>> peak = matmul_peak(torch.device("cpu"), torch.float32, side=64, repeats=2)
    >>> peak["dtype"], peak["side"], peak["gflop_per_s"] > 0
    ('float32', 64, True)
    """
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(side, side, generator=gen).to(device=device, dtype=dtype)   # (N, N)
    b = torch.randn(side, side, generator=gen).to(device=device, dtype=dtype)   # (N, N)
    best = _best_seconds(lambda: a @ b, device, repeats)
    rate = 2 * side ** 3 / best / 1e9                                  # GFLOP/s
    # Four significant digits: 407.7 for a real peak, and never 0.0 for a small product on a busy machine.
    # 保留四位有效数字：小矩阵在繁忙的机器上也不会舍入为 0
    return {"dtype": str(dtype).removeprefix("torch."), "side": side, "gflop_per_s": float(f"{rate:.4g}")}


def _conv_inputs(model: nn.Module, x: torch.Tensor, policy: AmpPolicy) -> list[tuple[nn.Module, torch.Tensor]]:
    """Every convolution layer of ``model`` with the input it gets in a forward pass of ``x`` under ``policy``.
    前向一次，记录每个卷积层及其输入"""
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append((m, args[0].detach())))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad(), autocast(policy):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def convolutions_alone(cfg: dict[str, Any], device: torch.device, policy: AmpPolicy, repeats: int = 3) -> dict[str, Any]:
    """Seconds of one train step's convolutions alone: each layer of the benchmarked :class:`UNet`, forward and
    backward on its own input shape, dtype and memory format (NHWC, as in the peer section), best of ``repeats``,
    summed. 一步中各卷积层单独运行（前向 + 反向）的时间之和

    The first layer's input needs no gradient, as in training; the others compute both the input and the weight
    gradient. 第一层的输入不需要梯度，其余各层同时计算输入与权重的梯度

    >>> cfg = {"in_channels": 1, "n_classes": 2, "base_channels": 4, "depth": 2, "bilinear": False,
    ...        "batch_size": 1, "image_size": 16}
    >>> res = convolutions_alone(cfg, torch.device("cpu"), AmpPolicy("cpu", False, torch.float32, False), 1)
    >>> res["layers"], res["seconds_per_step"] > 0
    (13, True)
    """
    fmt = torch.channels_last
    model = UNet(cfg["in_channels"], cfg["n_classes"], cfg["base_channels"], cfg["depth"], cfg["bilinear"])
    model = model.to(device).to(memory_format=fmt)
    x = torch.randn(cfg["batch_size"], cfg["in_channels"], cfg["image_size"], cfg["image_size"], device=device)
    total = 0.0
    for i, (layer, seen) in enumerate(_conv_inputs(model, x.contiguous(memory_format=fmt), policy)):
        inp = torch.randn_like(seen).contiguous(memory_format=fmt).requires_grad_(i > 0)  # same shape, dtype

        def step(layer: nn.Module = layer, inp: torch.Tensor = inp) -> None:
            layer.zero_grad(set_to_none=True)
            inp.grad = None
            with autocast(policy):
                out = layer(inp)
            out.backward(torch.ones_like(out))

        total += _best_seconds(step, device, repeats)
    return {"seconds_per_step": round(total, 4), "layers": i + 1}


def against_peak(seconds_per_step: float, gflop_per_step: float, peak_gflop_per_s: float) -> dict[str, float]:
    """A step's GFLOP/s and its fraction of the matmul peak. 一步的 GFLOP/s 及其占矩阵乘法峰值的比例

    >>> against_peak(2.0, 100.0, 200.0)
    {'gflop_per_s': 50.0, 'fraction_of_matmul_peak': 0.25}
    """
    rate = gflop_per_step / seconds_per_step
    return {"gflop_per_s": round(rate, 1), "fraction_of_matmul_peak": round(rate / peak_gflop_per_s, 3)}


__all__ = ["MATMUL_SIDE", "against_peak", "convolutions_alone", "matmul_peak"]
