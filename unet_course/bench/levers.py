"""Bench section ``levers``: what the training engine costs over the model alone, and what each speed lever buys.
基准测试的 levers 部分：训练引擎相对“只有模型”的额外开销，以及每个提速手段的收益

Every lever is a train step with one change. They all start from the same seed, run in turn (one step each per
round, so a burst of load from another process hits them alike) and are reported by their median step time:
每个手段只改变一处；所有手段从同一随机种子开始，轮流各走一步，取中位步时

- ``engine``: :func:`unet_course.training.train_one_epoch` on a one-batch loader, with the optimiser of
  :func:`~unet_course.training.build_optimizer` (the code that trains); 训练引擎本身
- ``model_alone``: the minimal loop, forward (autocast) -> :class:`~unet_course.losses.SegmentationLoss` ->
  ``zero_grad`` -> ``backward`` -> ``optimizer.step``, nothing else; ``engine_vs_model_alone`` is the ratio of the
  two medians (> 1: the engine is slower); 最小循环
- ``sync_each_step``: ``model_alone`` + ``float(loss)`` every step (a host sync; the engine does it to check the
  loss); ``clip``: ``model_alone`` + ``clip_grad_norm_`` (the engine clips and checks the norm);
- ``loop_adamw`` / ``foreach_adamw``: ``model_alone`` with ``torch.optim.AdamW(fused=False, foreach=False)``
  (one pass per operation and tensor, torch's default on the CPU) / ``(foreach=True)`` instead of the fused AdamW
  that :func:`~unet_course.training.build_optimizer` picks; 逐张量循环 / foreach 优化器（默认为融合内核）
- ``upconv_native``: ``model_alone`` with the library's transposed-convolution kernel in the decoder instead of
  the one matrix product of :class:`~unet_course.model.UpConv2x2` (``matmul = False``); 解码器改用库的转置卷积核
- ``loss_nocheck``: ``SegmentationLoss(check_values=False)`` (no label-range check, one sync fewer);
  ``loss_lean``: CE + Dice from one ``log_softmax`` and ``scatter_add`` sums instead of a one-hot tensor
  (:func:`lean_loss`, the same value); 更少内核的损失
- ``other_format``: NCHW where the default is NHWC and the other way round; 另一种内存格式
- ``threads_1``: ``torch.set_num_threads(1)`` during the step (OMP/KMP environment variables act only at start-up,
  so they need a separate process: ``OMP_NUM_THREADS=1 unet-course bench ...``); 单线程
- ``compile``: ``torch.compile(model)``; the first call (compilation) is timed apart as ``compile_s``; a failure is
  reported as ``skipped`` with the reason. 编译；首次调用单独计时，失败时记为 skipped
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..losses import SegmentationLoss
from ..model import UNet, UpConv2x2
from ..precision import amp_policy, autocast, make_scaler, prefer_channels_last
from ..training import build_optimizer, train_one_epoch
from .modes import alternate, say, sync

#: The levers, in the order they run each round. 各手段（每轮的运行顺序）
LEVERS = ("engine", "model_alone", "sync_each_step", "clip", "loop_adamw", "foreach_adamw", "upconv_native",
          "loss_nocheck", "loss_lean", "other_format", "threads_1", "compile")


def lean_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
              smooth: float = 1.0) -> torch.Tensor:
    """``SegmentationLoss("multiclass")`` (CE + foreground soft Dice) in fewer kernels: one ``log_softmax`` feeds
    both terms and the Dice sums use ``scatter_add`` instead of a ``(B, K, H, W)`` one-hot tensor.
    与 SegmentationLoss 相同的值，但只做一次 log_softmax，并用 scatter_add 代替独热张量

    >>> logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    >>> bool(torch.isclose(lean_loss(logits, target), SegmentationLoss()(logits, target), atol=1e-5))
    True
    """
    k = logits.shape[1]
    logp = torch.log_softmax(logits.float(), dim=1)                     # (B, K, H, W) 两项共用
    ce = F.nll_loss(logp, target, ignore_index=ignore_index)            # 交叉熵
    valid = target != ignore_index                                      # (B, H, W)
    labels = torch.where(valid, target, torch.zeros_like(target))       # 忽略像素暂记为 0
    probs = logp.exp() * valid.unsqueeze(1)                             # (B, K, H, W) 有效像素的概率
    p_true = probs.gather(1, labels.unsqueeze(1)).flatten()             # 每个像素真类别的概率
    flat = labels.flatten()
    inter = torch.zeros(k, device=logits.device).scatter_add(0, flat, p_true)           # (K,) Σ p·t
    count = torch.zeros(k, device=logits.device).scatter_add(0, flat, valid.flatten().float())  # (K,) Σ t
    dice = (2 * inter + smooth) / (probs.sum((0, 2, 3)) + count + smooth)  # (K,)
    return ce + 1.0 - dice[1:].mean()                                   # 只计前景类


def _minimal(model, optimizer, loss_fn, images, target, policy, *, sync_loss=False, clip=False) -> None:
    """One step of the minimal loop (module docstring). 最小循环的一步"""
    with autocast(policy):
        logits = model(images)                                          # (B, K, H, W)
    loss = loss_fn(logits.float(), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    if sync_loss:
        float(loss.detach())                                            # 主机同步


def _lever_step(name: str, model: torch.nn.Module, data: dict[str, Any], cfg: dict[str, Any],
                device: torch.device) -> Callable[[], None]:
    """The step function of lever ``name`` on its own copy of the model. 构建某个手段的单步函数"""
    policy = data["policy"]
    tcfg = TrainConfig(mode="multiclass", base_channels=cfg["base_channels"], depth=cfg["depth"])
    loss_fn = SegmentationLoss(check_values=name != "loss_nocheck").to(device)
    images, target = data["images"], data["target"]
    if name == "other_format":                                          # 换成另一种内存格式
        fmt = torch.contiguous_format if data["channels_last"] else torch.channels_last
        model = model.to(memory_format=fmt)
        images = images.contiguous(memory_format=fmt)
    if name == "upconv_native":                                         # 解码器用库的转置卷积核
        for module in model.modules():
            if isinstance(module, UpConv2x2):
                module.matmul = False
    if name in ("loop_adamw", "foreach_adamw"):
        optimizer = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay, fused=False,
                                      foreach=name == "foreach_adamw")
    else:
        optimizer = build_optimizer(model, tcfg)
    if name == "engine":
        loader, scaler = [{"image": images, "mask": target}], make_scaler(policy)
        return lambda: train_one_epoch(model, loader, optimizer, loss_fn, device, policy, scaler,
                                       grad_clip=tcfg.grad_clip, channels_last=data["channels_last"])
    net = torch.compile(model) if name == "compile" else model
    lossf = (lambda lg, t: lean_loss(lg, t, tcfg.ignore_index)) if name == "loss_lean" else loss_fn

    def step() -> None:
        threads = torch.get_num_threads()
        if name == "threads_1":
            torch.set_num_threads(1)
        try:
            _minimal(net, optimizer, lossf, images, target, policy, sync_loss=name == "sync_each_step",
                     clip=name == "clip")
        finally:
            torch.set_num_threads(threads)
    return step


def _setup(cfg: dict[str, Any], device: torch.device, names: list[str]) -> tuple[dict, dict, dict]:
    """Build every lever's step; the compile lever's first call is its compile time. 构建各手段；编译单独计时"""
    policy = amp_policy(device, "auto")
    channels_last = prefer_channels_last(device, policy)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    b, s = cfg["batch_size"], cfg["image_size"]
    torch.manual_seed(cfg["seed"])
    base = UNet(cfg["in_channels"], cfg["n_classes"], cfg["base_channels"], cfg["depth"], cfg["bilinear"])
    base = base.to(device).to(memory_format=fmt)
    data = {"policy": policy, "channels_last": channels_last,
            "images": torch.randn(b, cfg["in_channels"], s, s, device=device).contiguous(memory_format=fmt),
            "target": torch.randint(0, cfg["n_classes"], (b, s, s), device=device)}
    steps, skipped, extra = {}, {}, {}
    for name in names:
        try:
            steps[name] = _lever_step(name, copy.deepcopy(base), data, cfg, device)
            if name == "compile":
                t0 = time.perf_counter()
                steps[name]()                                           # 首次调用：编译
                sync(device)
                extra[name] = {"compile_s": round(time.perf_counter() - t0, 2)}
        except Exception as exc:                                        # 该手段在本机不可用（如 torch.compile）
            steps.pop(name, None)
            skipped[name] = {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
    return steps, skipped, {"policy": policy.name, "channels_last": channels_last, **extra}


def bench_levers(cfg: dict[str, Any], device: torch.device, verbose: bool = False) -> dict[str, Any]:
    """Time the levers of the module docstring in one alternating run. 在一次运行中轮流计时各手段

    Args:
        cfg: the benchmark config (model, ``image_size``, ``batch_size``, ``warmup``, ``steps``, ``seed``,
            ``levers``: names to run, default :data:`LEVERS`). 配置
        device: where to run. 设备
        verbose: one progress line per lever on stderr. 进度输出

    Returns:
        ``{"amp", "channels_last", "levers": {name: {"seconds_per_step", "speedup_vs_model_alone", "step_times_s"}
        or {"skipped"}}, "engine_vs_model_alone"}``.
    """
    names = [n for n in (cfg.get("levers") or LEVERS) if n in LEVERS]
    steps, skipped, info = _setup(cfg, device, names)
    medians, times = alternate(steps, cfg["warmup"], cfg["steps"], device)   # 每轮各手段各一步
    ref = medians.get("model_alone")
    levers: dict[str, Any] = dict(skipped)
    for name in names:
        if name in medians:
            levers[name] = {"seconds_per_step": round(medians[name], 4),
                            "speedup_vs_model_alone": round(ref / medians[name], 3) if ref else None,
                            "step_times_s": [round(t, 4) for t in times[name]], **info.get(name, {})}
            say(verbose, f"[bench] lever {name:>15} {medians[name]:8.3f} s/step")
    engine = medians.get("engine")
    return {"amp": info["policy"], "channels_last": info["channels_last"], "levers": levers,
            "engine_vs_model_alone": round(engine / ref, 3) if engine and ref else None}


__all__ = ["LEVERS", "bench_levers", "lean_loss"]
