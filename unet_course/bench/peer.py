"""Bench section ``peer``: this project's train step against an outside U-Net training loop, in one run.
基准测试的 peer 部分：在同一次运行中，把本项目的训练一步与外部 U-Net 训练循环对比

The outside loop is the training step of a checkout of `milesial/Pytorch-UNet
<https://github.com/milesial/Pytorch-UNet>`_, the most used PyTorch U-Net. Nothing of it is copied here: its
``unet`` package (the model) and ``utils/dice_score.py`` (its Dice loss) are *imported from the folder you give*
(``unet-course bench --peer-dir DIR``), and its step is replayed as its ``train.py`` runs it:
外部循环来自 milesial/Pytorch-UNet 的检出目录：模型与 Dice 损失都从该目录导入（不复制代码），一步的顺序与其 train.py 相同

    forward under autocast -> cross-entropy + its ``dice_loss`` on the softmax and a one-hot target ->
    ``zero_grad`` -> (scaled) ``backward`` -> ``clip_grad_norm_(1.0)`` -> ``RMSprop(foreach=True)`` step

with its default hyper-parameters (lr 1e-5, weight decay 1e-8, momentum 0.999) and channels_last model and input.
Both sides run at equal model (the classic U-Net: base 64, depth 4, transposed-convolution up-sampling, 3 input
channels, 2 classes), on the same random batch, under the precision ``amp="auto"`` picks on this device, and
alternate one step each per round (see :func:`~unet_course.bench.modes.alternate`). Variants:
双方模型相同（经典 U-Net），同一批随机数据，同一精度，每轮各走一步交替计时。变体：

- ``engine``: this project's step, :func:`unet_course.training.train_one_epoch` with the default optimiser
  (the same as the levers section's ``engine``); 本项目的训练一步
- ``ours_in_peer_loop``: this project's :class:`~unet_course.model.UNet` in the outside loop (separates the model's
  share from the loop's); 本项目模型放入外部循环
- ``peer``: the outside model in the outside loop. 外部模型 + 外部循环

``engine_vs_peer`` is the peer's median step time over the engine's (> 1: this project is faster).
engine_vs_peer 为外部一步中位时间除以本项目一步中位时间（> 1 表示本项目更快）
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..errors import ConfigError
from ..losses import SegmentationLoss
from ..model import UNet
from ..precision import AmpPolicy, amp_policy, autocast, make_scaler
from ..training import build_optimizer, train_one_epoch
from .modes import alternate, say

#: The variants, in the order they run each round. 各变体（每轮的运行顺序）
PEER_VARIANTS = ("engine", "ours_in_peer_loop", "peer")
#: The outside loop's defaults (its train.py): learning rate, weight decay, RMSprop momentum, gradient clip.
#: 外部循环的默认超参数
PEER_DEFAULTS = {"lr": 1e-5, "weight_decay": 1e-8, "momentum": 0.999, "grad_clip": 1.0}
PEER_URL = "https://github.com/milesial/Pytorch-UNet"


def _load_module(name: str, path: Path, package: bool) -> ModuleType:
    """Import ``path`` under the private name ``name`` (a package when ``package``), so the peer's generic
    ``unet`` / ``utils`` names cannot clash with installed modules. 以私有名称导入，避免与已安装模块重名"""
    for cached in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[cached]                                         # another folder may have been loaded
    location = path / "__init__.py" if package else path
    spec = importlib.util.spec_from_file_location(
        name, location, submodule_search_locations=[str(path)] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module                                          # 包内相对导入需要先注册
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(name, None)
        raise
    return module


def load_peer(peer_dir: str | Path) -> tuple[type, Callable[..., torch.Tensor]]:
    """The outside ``UNet`` class and ``dice_loss`` function, imported from a checkout of Pytorch-UNet.
    从 Pytorch-UNet 检出目录导入其 UNet 类与 dice_loss 函数

    Raises:
        ConfigError: the folder is missing, is not such a checkout, or its code fails to import.
    """
    root = Path(peer_dir).expanduser()
    needed = [root / "unet" / "__init__.py", root / "utils" / "dice_score.py"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise ConfigError(f"--peer-dir {str(peer_dir)!r} is not a checkout of Pytorch-UNet: missing "
                          f"{', '.join(missing)}. Clone it first (git clone {PEER_URL}) and pass that folder.")
    try:
        unet = _load_module("_unet_course_peer_unet", root / "unet", package=True)
        dice = _load_module("_unet_course_peer_dice", needed[1], package=False)
        return unet.UNet, dice.dice_loss
    except Exception as exc:
        raise ConfigError(f"Could not import the peer's code from {str(root)!r}: {type(exc).__name__}: {exc}. "
                          f"Check that the folder is an unmodified checkout of {PEER_URL}.") from exc


def check_peer(cfg: dict[str, Any], peer_dir: str | Path) -> tuple[type, Callable[..., torch.Tensor]]:
    """Refuse a model other than the peer's and a folder that is not a checkout, before anything is timed;
    returns :func:`load_peer`'s pair. 在计时前检查模型尺寸与目录

    Raises:
        ConfigError: another model size, or see :func:`load_peer`.
    """
    if (cfg["base_channels"], cfg["depth"], cfg["bilinear"]) != (64, 4, False):
        raise ConfigError("The peer's U-Net is fixed at base 64, depth 4, transposed convolutions: run the peer "
                          "section without --base-channels, --depth and --bilinear.")
    return load_peer(peer_dir)


def _peer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               dice_loss: Callable[..., torch.Tensor], images: torch.Tensor, target: torch.Tensor,
               n_classes: int, policy: AmpPolicy) -> None:
    """One step of the outside loop, in its order (module docstring). 外部循环的一步（顺序同其 train.py）"""
    with autocast(policy):                                              # its loss runs in autocast too 损失也在 autocast 内
        logits = model(images)                                          # (B, K, H, W)
        one_hot = F.one_hot(target, n_classes).permute(0, 3, 1, 2).float()  # (B, K, H, W)
        loss = F.cross_entropy(logits, target) + dice_loss(F.softmax(logits, dim=1).float(), one_hot,
                                                           multiclass=True)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()                                       # pass-through without fp16 非 fp16 时直通
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), PEER_DEFAULTS["grad_clip"])
    scaler.step(optimizer)
    scaler.update()


def _steps(cfg: dict[str, Any], device: torch.device, peer_unet: type,
           dice_loss: Callable[..., torch.Tensor]) -> tuple[dict[str, Callable[[], None]], AmpPolicy]:
    """Build the three variants' step functions on fresh models from one seed. 构建三个变体的单步函数"""
    policy = amp_policy(device, "auto")
    fmt = torch.channels_last                                           # the outside loop uses NHWC 外部循环用 NHWC
    b, s, k = cfg["batch_size"], cfg["image_size"], cfg["n_classes"]
    torch.manual_seed(cfg["seed"])
    images = torch.randn(b, cfg["in_channels"], s, s, device=device).contiguous(memory_format=fmt)
    target = torch.randint(0, k, (b, s, s), device=device)
    steps: dict[str, Callable[[], None]] = {}

    ours = UNet(cfg["in_channels"], k, 64, 4, False).to(device).to(memory_format=fmt)
    tcfg = TrainConfig(mode="multiclass")
    optimizer = build_optimizer(ours, tcfg)
    loss_fn = SegmentationLoss(mode="multiclass").to(device)
    loader, scaler = [{"image": images, "mask": target}], make_scaler(policy)
    steps["engine"] = lambda: train_one_epoch(ours, loader, optimizer, loss_fn, device, policy, scaler,
                                              grad_clip=tcfg.grad_clip, channels_last=True)

    try:
        theirs = peer_unet(n_channels=cfg["in_channels"], n_classes=k, bilinear=False)
    except Exception as exc:                                            # a changed or newer checkout 接口不符
        raise ConfigError(f"The peer's UNet(n_channels, n_classes, bilinear) could not be built: "
                          f"{type(exc).__name__}: {exc}. Use an unmodified checkout of {PEER_URL}.") from exc
    for name, model in (("ours_in_peer_loop", UNet(cfg["in_channels"], k, 64, 4, False)), ("peer", theirs)):
        model = model.to(device).to(memory_format=fmt)
        opt = torch.optim.RMSprop(model.parameters(), lr=PEER_DEFAULTS["lr"], foreach=True,
                                  weight_decay=PEER_DEFAULTS["weight_decay"], momentum=PEER_DEFAULTS["momentum"])
        sc = make_scaler(policy)
        steps[name] = (lambda m=model, o=opt, g=sc: _peer_step(m, o, g, dice_loss, images, target, k, policy))
    return steps, policy


def bench_peer(cfg: dict[str, Any], device: torch.device, peer_dir: str | Path,
               verbose: bool = False) -> dict[str, Any]:
    """Time :data:`PEER_VARIANTS` in one alternating run. 在一次运行中轮流计时各变体

    Args:
        cfg: the benchmark config (``image_size``, ``batch_size``, ``warmup``, ``steps``, ``seed``,
            ``in_channels``, ``n_classes``; the model must be the classic one: ``base_channels`` 64, ``depth`` 4,
            not ``bilinear``). 配置
        device: where to run. 设备
        peer_dir: a checkout of Pytorch-UNet. 外部仓库检出目录
        verbose: one progress line per variant on stderr. 进度输出

    Returns:
        ``{"peer_dir", "amp", "channels_last", "variants": {name: {"seconds_per_step", "img_per_s",
        "step_times_s"}}, "engine_vs_peer", "ours_in_peer_loop_vs_peer"}``.

    Raises:
        ConfigError: another model size was asked for, or ``peer_dir`` is not a usable checkout.
    """
    peer_unet, dice_loss = check_peer(cfg, peer_dir)
    steps, policy = _steps(cfg, device, peer_unet, dice_loss)
    medians, times = alternate(steps, cfg["warmup"], cfg["steps"], device)
    variants = {}
    for name in PEER_VARIANTS:
        variants[name] = {"seconds_per_step": round(medians[name], 4),
                          "img_per_s": round(cfg["batch_size"] / medians[name], 3),
                          "step_times_s": [round(t, 4) for t in times[name]]}
        say(verbose, f"[bench] peer {name:>17} {medians[name]:8.3f} s/step")
    return {"peer_dir": str(peer_dir), "amp": policy.name, "channels_last": True, "variants": variants,
            "engine_vs_peer": round(medians["peer"] / medians["engine"], 3),
            "ours_in_peer_loop_vs_peer": round(medians["peer"] / medians["ours_in_peer_loop"], 3)}


__all__ = ["PEER_DEFAULTS", "PEER_VARIANTS", "bench_peer", "check_peer", "load_peer"]
