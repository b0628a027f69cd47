"""Getting a run ready: output folder, resume path, per-epoch seeds, data facts, the default U-Net.
训练前的准备：输出目录、续训路径、每轮的随机种子、数据信息与默认的 U-Net

Each helper here is one step (or part of one) of :func:`unet_course.training.fit`.
这里的每个函数对应 fit 的一个步骤（或其中一部分）
"""

from __future__ import annotations

import random
import zipfile
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from .. import distributed
from ..checkpoint import checkpoints_in
from ..config import TrainConfig
from ..data import build_loaders
from ..data.workers import WorkerSetup
from ..distributed import epoch_seed
from ..env import default_out_dir, is_interactive
from ..errors import CheckpointError, ConfigError, OutputError
from ..files import ensure_writable_dir, is_json_report, remove_stale_temporaries
from ..metrics import logits_to_labels
from ..model import UNet
from ..precision import AmpPolicy, autocast
from .loop import batch_to

#: Files a run writes in its ``out_dir``; stale temporaries of these are removed when it starts. 运行写出的文件
RUN_FILES = ("last.pt", "best.pt", "history.json", "metrics.json")

#: Keys that mark a JSON file as a run's own: an earlier run's files are replaced, anyone else's refused.
#: 标记 JSON 文件属于训练运行的键：较早运行的文件被替换，其他文件拒绝覆盖
RUN_JSON_KEYS = {"history.json": ("epoch", "train_loss", "best_metric"), "metrics.json": ("config", "hardware"),
                 "metrics.jsonl": ("step",)}


# ----------------------------------------------------------------------------------------------------------------
# Output folder and resume 输出目录与续训
# ----------------------------------------------------------------------------------------------------------------
def resolve_resume(resume: str | None, out_dir: Path) -> Path | None:
    """``"last"`` -> ``<out_dir>/last.pt``, ``"best"`` -> ``<out_dir>/best.pt``; other strings are paths.
    解析续训路径

    Raises:
        CheckpointError: the file does not exist, or is a folder (a run's out_dir).

    >>> resolve_resume(None, Path("runs/train")) is None
    True
    """
    if not resume:
        return None
    path = out_dir / f"{resume}.pt" if resume in ("last", "best") else Path(resume).expanduser()
    if path.is_dir():                                                  # a run folder instead of its checkpoint
        raise CheckpointError(f"Cannot resume: {str(path)!r} is a folder, not a checkpoint; pass the one to continue "
                              f"from, e.g. --resume {str(path / 'last.pt')!r} (.pt files there: "
                              f"{checkpoints_in(path)}).")
    if not path.is_file():
        nearby = sorted(out_dir.parent.glob(f"*/{path.name}"))[:3] if resume in ("last", "best") else []
        found = f" Found: {', '.join(str(p) for p in nearby)} (pass one of them, or its --out-dir)." if nearby else ""
        raise CheckpointError(
            f"Cannot resume: checkpoint {str(path)!r} does not exist. Pass the path of a last.pt/best.pt written by "
            f"an earlier run (resume='last' looks in out_dir={str(out_dir)!r}), or drop --resume to start fresh."
            + found
        )
    return path


def prepare_output(cfg: TrainConfig, main: bool) -> tuple[Path, Path | None]:
    """The run's output folder (checked writable, stale temporaries removed) and the checkpoint to resume from.
    输出目录（检查可写并删除遗留的临时文件）以及续训的检查点

    Raises:
        ConfigError: the folder cannot be written. 目录不可写
        CheckpointError: ``cfg.resume`` names a missing file. 续训文件不存在
    """
    out_dir = Path(cfg.out_dir).expanduser() if cfg.out_dir else default_out_dir()
    if main:                                          # 只有 0 号进程写文件
        ensure_writable_dir(out_dir)
        check_run_files(out_dir)
        for name in RUN_FILES:
            remove_stale_temporaries(out_dir, name)   # kill -9 留下的 .last.pt.*.tmp
    return out_dir, resolve_resume(cfg.resume, out_dir)


def check_run_files(out_dir: Path) -> None:
    """Refuse an ``out_dir`` holding a file with one of a run's names that no run wrote (say a project's own
    ``metrics.json``): an earlier run's files are replaced, anything else would be lost.
    输出目录中与运行文件同名、但不是训练写出的文件会被拒绝（否则会被覆盖）；较早运行的文件照常替换

    A checkpoint counts as a run's when it is a ``torch.save`` archive (a zip file); a JSON file when it holds
    the keys in :data:`RUN_JSON_KEYS` (``metrics.jsonl`` in every row); an empty file has nothing to lose.

    Raises:
        OutputError: naming the files and the fix.
    """
    foreign = []
    for name in (*RUN_FILES, "metrics.jsonl"):
        path = out_dir / name
        if not path.is_file() or path.stat().st_size == 0:      # 空文件没有可丢失的内容
            continue
        if name.endswith(".pt"):
            ours = zipfile.is_zipfile(path)
        else:
            ours = is_json_report(path, RUN_JSON_KEYS[name], lines=name.endswith(".jsonl"))
        if not ours:
            foreign.append(str(path))
    if foreign:
        raise OutputError(f"The output folder {str(out_dir)!r} holds {', '.join(repr(f) for f in foreign)}, which "
                          "no training run wrote (or which is damaged), and training would overwrite it. Choose "
                          "another --out-dir (out_dir=) for this run, or move that file away.")


# ----------------------------------------------------------------------------------------------------------------
# Determinism 确定性
# ----------------------------------------------------------------------------------------------------------------
def reseed_epoch(loader: DataLoader | None, seed: int, epoch: int, rank: int = 0) -> int:
    """Reseed Python, NumPy, torch and the loader's shuffle generator at the start of an epoch.
    每轮开始时重设 Python、NumPy、torch 以及数据加载器打乱顺序所用的随机数发生器

    The shuffle order, the augmentations and the worker seeds of epoch ``e`` then depend only on
    ``(seed, e)``, not on what ran before, so a run resumed at epoch ``e`` replays it exactly. Persistent
    DataLoader workers get the seed through their :class:`~unet_course.data.workers.WorkerSetup`.
    第 e 轮的打乱顺序、数据增强与工作进程种子只取决于 (seed, e)，因此从第 e 轮续训能精确重现；
    常驻工作进程通过 WorkerSetup 得到种子
    """
    s = epoch_seed(seed, epoch, rank)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)                      # 同时设置所有 CUDA 设备
    if loader is not None:
        generators = {id(g): g for g in (getattr(loader, "generator", None),
                                         getattr(getattr(loader, "sampler", None), "generator", None))
                      if isinstance(g, torch.Generator)}
        for g in generators.values():
            g.manual_seed(s)
        distributed.set_epoch(loader, epoch)  # 分布式采样器按 (seed, epoch) 抽取本轮索引
        setup = getattr(loader, "worker_init_fn", None)
        if isinstance(setup, WorkerSetup):    # 常驻工作进程在本轮第一个样本前据此重设随机状态
            setup.start_epoch(s)
    return s


# ----------------------------------------------------------------------------------------------------------------
# Data and model 数据与模型
# ----------------------------------------------------------------------------------------------------------------
def info_from_dataset(loader: DataLoader, val_loader: DataLoader | None) -> Any:
    """A DataInfo-like namespace read from the dataset attributes (when ``fit`` gets loaders but no info).
    从数据集属性推断数据信息（fit 只收到 loader 而没有 info 时）
    """
    ds = loader.dataset
    mask_values = list(getattr(ds, "mask_values", [0, 1]))
    return SimpleNamespace(
        in_channels=int(getattr(ds, "in_channels", 1)),
        n_classes=len(mask_values),
        mask_values=mask_values,
        class_names=list(getattr(ds, "class_names", [f"class {i}" for i in range(len(mask_values))])),
        mean=list(getattr(ds, "mean", [0.0])),
        std=list(getattr(ds, "std", [1.0])),
        ignore_index=int(getattr(ds, "ignore_index", 255)),
        n_train=len(ds),
        n_val=len(val_loader.dataset) if val_loader is not None else 0,
        dataset=type(ds).__name__,
    )


def resolve_data(cfg: TrainConfig, device: torch.device, train_loader: DataLoader | None,
                 val_loader: DataLoader | None, info: Any) -> tuple[DataLoader, DataLoader | None, Any]:
    """The loaders and their ``DataInfo``: the given ones, or :func:`unet_course.data.build_loaders` from ``cfg``.
    数据加载器及其数据信息：使用传入的，或按 cfg 构建
    """
    if train_loader is None:
        train_loader, val_loader, built = build_loaders(cfg, device)
        return train_loader, val_loader, info if info is not None else built
    return train_loader, val_loader, info if info is not None else info_from_dataset(train_loader, val_loader)


def class_and_channel_counts(cfg: TrainConfig, info: Any) -> tuple[int, int]:
    """``(n_classes, in_channels)`` of the run, checked against the data.
    本次运行的类别数与输入通道数（与数据核对）

    Raises:
        ConfigError: fewer than 2 classes, ``cfg.n_classes`` disagrees with the masks, binary mode on data
            without 2 classes, or a threshold other than the default on data with more (it would be ignored).
    """
    n_classes = int(cfg.n_classes or info.n_classes)
    in_channels = int(cfg.in_channels or info.in_channels)
    if cfg.n_classes and int(cfg.n_classes) != int(info.n_classes):
        raise ConfigError(
            f"n_classes={cfg.n_classes} but the data have {info.n_classes} classes (mask_values "
            f"{list(info.mask_values)}); drop --n-classes or fix the masks."
        )
    if n_classes < 2:
        raise ConfigError(
            f"The data have {n_classes} class (mask_values {list(info.mask_values)}): segmentation needs at least "
            "2 (background and foreground). Pass every value the masks use, e.g. mask_values=[0, 255]."
        )
    if cfg.mode == "binary" and n_classes != 2:
        raise ConfigError(
            f"mode='binary' needs exactly 2 classes, but the data have {n_classes} (mask_values "
            f"{list(info.mask_values)}); use mode='multiclass'."
        )
    if n_classes > 2 and cfg.threshold != cfg.default_of("threshold"):
        raise ConfigError(
            f"threshold={cfg.threshold:g} applies to two classes, but the data have {n_classes} (mask_values "
            f"{list(info.mask_values)}), whose labels are the most probable class, so it would be ignored in "
            "silence. Leave --threshold out."
        )
    return n_classes, in_channels


def build_unet(cfg: TrainConfig, n_classes: int, in_channels: int) -> UNet:
    """The :class:`~unet_course.model.UNet` of ``cfg``: ``K`` output channels, or 1 in binary mode.
    按 cfg 构建 U-Net：多分类输出 K 个通道，二分类输出 1 个

    >>> build_unet(TrainConfig(mode="binary", base_channels=4, depth=2), 2, 3).config["n_classes"]
    1
    """
    out_channels = 1 if cfg.mode == "binary" else n_classes
    return UNet(in_channels=in_channels, n_classes=out_channels, base_channels=cfg.base_channels, depth=cfg.depth,
                bilinear=cfg.bilinear, gradient_checkpointing=cfg.gradient_checkpointing)


# ----------------------------------------------------------------------------------------------------------------
# During the epochs 训练过程中
# ----------------------------------------------------------------------------------------------------------------
def progress_mode(progress: str, main: bool) -> str:
    """``"bar"``, ``"line"`` or ``"none"``: ``"auto"`` is a bar in a terminal or notebook, else a line per epoch.
    进度显示方式：auto 在交互环境中为进度条，否则每轮一行；非 0 号进程不显示
    """
    if not main:
        return "none"
    if progress == "auto":
        return "bar" if is_interactive() else "line"
    return progress


@torch.inference_mode()
def example_batch(model: nn.Module, loader: DataLoader, device: torch.device, policy: AmpPolicy, mode: str,
                  threshold: float, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """First validation batch ``(images, masks, predictions)`` on the CPU, for the wandb image panel.
    取第一批验证数据及预测（在 CPU 上），用于 wandb 图像面板
    """
    net = model.module if isinstance(model, DistributedDataParallel) else model
    was_training = net.training
    net.eval()
    try:
        batch = next(iter(loader))
        images, targets = batch_to(batch, device, channels_last)          # (B, C, H, W), (B, H, W)
        with autocast(policy):
            logits = net(images)
        preds = logits_to_labels(logits.float(), mode=mode, threshold=threshold)   # (B, H, W)
        return images.cpu(), targets.cpu(), preds.cpu()
    except StopIteration:
        return None
    finally:
        net.train(was_training)


def call_callbacks(callbacks: Sequence[Any], state: dict[str, Any]) -> bool:
    """Call each callback with the epoch state; True if one asks to stop. 调用回调；若有回调要求停止则返回 True

    >>> call_callbacks([lambda s: None, lambda s: True], {"stop": False})
    True
    """
    stop = False
    for cb in callbacks:
        hook = getattr(cb, "on_epoch_end", None) or (cb if callable(cb) else None)
        if hook is not None and hook(state) is True:
            stop = True
    return stop or bool(state.get("stop"))
