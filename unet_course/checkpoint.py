"""Checkpoints: one file that is enough to resume training or to predict. This module owns the whole format.
检查点：一个文件既能续训也能用于预测；检查点格式的全部规则都在本模块

A checkpoint is a plain ``dict`` of Python scalars, lists, dicts and tensors (the keys are listed in
``docs/ARCHITECTURE.md`` and built in one place, :func:`build_state`). Nothing in it needs pickled classes, so
:func:`load_checkpoint` always uses ``torch.load(..., weights_only=True)``, which cannot run code hidden in a
downloaded file. 检查点是只含基本类型与张量的字典（由 build_state 统一构建），因此总能用 weights_only=True 安全加载

The life of a checkpoint, one function each: 检查点的一生，每步一个函数：

- :func:`build_state` -> :func:`save_checkpoint` (atomic) -> :func:`load_checkpoint` (clear errors);
- :func:`restore_training_state` puts weights, optimiser, scheduler, loss scaler and RNG back for ``--resume``
  after :func:`check_compatible` has compared classes and channels with the data; 续训时恢复全部训练状态
- :func:`load_model` rebuilds the network for inference. 为推理重建网络

Three habits keep checkpoints trustworthy:
三个习惯让检查点可靠：

1. **Atomic writes.** :func:`save_checkpoint` goes through :func:`unet_course.files.write_bytes`: a temporary file
   beside the target is fsync-ed and renamed over it, so a crash or Ctrl-C mid-write leaves the previous
   ``last.pt`` intact. Temporaries left by ``kill -9`` are removed at the next save.
   原子写入：先写同目录临时文件再重命名；被强制终止时遗留的临时文件在下次保存时删除
2. **No NaN weights.** A state with non-finite weights is refused, so the last good checkpoint survives a
   diverged run. 拒绝保存含 NaN/Inf 的权重，发散的训练不会覆盖上一个好的检查点
3. **Self-describing.** ``model_config``, ``mask_values``, ``normalization`` and ``preprocess`` travel with the
   weights; :func:`load_model` rebuilds the network without the caller knowing its width or depth.
   自描述：模型结构、掩码取值与归一化参数随权重一起保存，load_model 可直接重建网络

RNG states are stored too (Python, NumPy as lists, torch CPU and CUDA as uint8 tensors) for exact resume.
随机数状态也一并保存（NumPy 状态转为列表），以便精确续训
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .config import TrainConfig
from .errors import CheckpointError
from .files import remove_stale_temporaries, to_plain, write_bytes
from .model import build_model, unwrap_model

#: Bumped when the layout of the checkpoint dict changes. 检查点结构改变时递增
FORMAT_VERSION = 1

#: Keys copied into the ``meta`` dict returned by :func:`load_model`. load_model 返回的元信息字段
META_KEYS = (
    "format_version",
    "model_config",
    "mask_values",
    "class_names",
    "normalization",
    "preprocess",
    "train_config",
    "versions",
    "epoch",
    "global_step",
    "best_metric",
    "wandb_run_id",
)

#: Per-epoch lists of the stored ``history``, cut back to the checkpoint's epoch on resume. 按轮记录的历史字段
HISTORY_LISTS = ("epoch", "train_loss", "val_loss", "val_dice", "val_metrics", "lr", "epoch_time")


# ----------------------------------------------------------------------------------------------------------------
# RNG state 随机数状态
# ----------------------------------------------------------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    """Snapshot every random generator as plain types and tensors.
    以基本类型和张量的形式保存所有随机数发生器的状态

    Returns:
        ``{"python": [version, [ints], gauss], "numpy": [name, [ints], pos, has_gauss, cached], "torch": uint8
        tensor, "cuda": [uint8 tensors] (empty without CUDA)}``; safe for ``torch.load(weights_only=True)``.
    """
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        # NumPy 的状态数组转为 Python 列表，避免 weights_only 加载时出现 ndarray
        "numpy": [str(np_name), [int(k) for k in np_keys], int(np_pos), int(np_has_gauss), float(np_cached)],
        "torch": torch.get_rng_state(),
        "cuda": [s.cpu() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any] | None) -> None:
    """Put back the generators saved by :func:`capture_rng_state` (missing parts are skipped).
    恢复 capture_rng_state 保存的随机数状态（缺失的部分跳过）
    """
    if not state:
        return
    if state.get("python") is not None:
        version, values, gauss = state["python"]
        random.setstate((version, tuple(values), gauss))
    if state.get("numpy") is not None:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if state.get("torch") is not None:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    cuda_states = state.get("cuda") or []
    # 只在设备数量一致时恢复 CUDA 状态（换机器续训时跳过）
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in cuda_states])


# ----------------------------------------------------------------------------------------------------------------
# Building the state 构建检查点字典
# ----------------------------------------------------------------------------------------------------------------
def info_dict(info: Any) -> dict[str, Any]:
    """A JSON-safe dict of the loaders' ``DataInfo`` (a dataclass or a namespace; ``{}`` for None).
    把数据信息（DataInfo 或命名空间）转为基本类型字典

    >>> from types import SimpleNamespace
    >>> info_dict(SimpleNamespace(n_classes=2, mean=(0.5,), _private=1))
    {'n_classes': 2, 'mean': [0.5]}
    """
    if info is None:
        return {}
    if dataclasses.is_dataclass(info):
        return to_plain(dataclasses.asdict(info))
    return to_plain({k: v for k, v in vars(info).items() if not k.startswith("_")})


def build_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                scaler: torch.amp.GradScaler | None, *, cfg: TrainConfig, info: Any, n_classes: int,
                in_channels: int, epoch: int, global_step: int, history: dict[str, Any],
                run_id: str | None) -> dict[str, Any]:
    """The checkpoint dict of a training run (the format of ``docs/ARCHITECTURE.md``).
    构建训练检查点字典（格式见 docs/ARCHITECTURE.md）

    Args:
        model: the network (DDP / compiled wrappers are removed; weights are copied to the CPU). 网络
        optimizer, scheduler, scaler: their ``state_dict()`` is stored (None for no scheduler / a disabled
            scaler). 优化器、调度器与损失缩放器
        cfg: the run's :class:`~unet_course.config.TrainConfig`. 训练配置
        info: the loaders' ``DataInfo`` (``mask_values``, ``class_names``, ``mean``, ``std``, ``enhance``). 数据信息
        n_classes, in_channels: classes in the data and image channels. 类别数与输入通道数
        epoch, global_step: epochs and optimiser steps done. 已完成的轮数与优化步数
        history: ``History.to_dict()``. 训练历史
        run_id: the wandb run id, or None. wandb 运行 id
    """
    net = unwrap_model(model)
    scaler_on = scaler is not None and scaler.is_enabled()
    return {
        "format_version": FORMAT_VERSION,
        "model_config": dict(getattr(net, "config", {}) or {}) or None,
        "model_state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "mask_values": [int(v) for v in info.mask_values],
        "class_names": [str(c) for c in info.class_names],
        "normalization": {"mean": [float(m) for m in info.mean], "std": [float(s) for s in info.std]},
        "preprocess": {"scale": float(cfg.scale), "in_channels": in_channels, "mode": cfg.mode,
                       "threshold": float(cfg.threshold), "n_classes": n_classes,
                       "ignore_index": int(cfg.ignore_index), "enhance": getattr(info, "enhance", "none")},
        "train_config": cfg.to_dict(),
        "versions": {"unet_course": str(__version__), "torch": str(torch.__version__)},
        "epoch": epoch,
        "global_step": global_step,
        "optimizer_state": optimizer.state_dict(),
        "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
        "scaler_state": scaler.state_dict() if scaler_on else None,
        "rng_state": capture_rng_state(),
        "best_metric": history.get("best_metric"),
        "wandb_run_id": run_id,
        "history": history,
        "data_info": info_dict(info),
    }


# ----------------------------------------------------------------------------------------------------------------
# Saving 保存
# ----------------------------------------------------------------------------------------------------------------
def non_finite_tensors(state_dict: dict[str, Any]) -> list[str]:
    """Names of floating-point tensors that hold NaN or Inf. 含 NaN/Inf 的浮点张量名称

    >>> non_finite_tensors({"w": torch.tensor([1.0, float("nan")]), "n": torch.tensor([3])})
    ['w']
    """
    bad = []
    for name, value in state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad.append(name)
    return bad


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (through :func:`unet_course.files.write_bytes`).
    原子地把 state 写入 path

    Temporaries that a killed run left beside ``path`` (``.last.pt.*.tmp``) are removed first. The new file
    follows the user's umask. 先删除被强制终止的运行遗留的临时文件；新文件权限遵循 umask

    Args:
        path: destination, e.g. ``runs/train/last.pt``. 目标路径
        state: the checkpoint dict (plain types and tensors, see :func:`build_state`). 检查点字典

    Returns:
        ``Path(path)``.

    Raises:
        CheckpointError: ``state["model_state"]`` holds NaN/Inf weights (nothing is written).
        OutputError: the disk is full or the folder is not writable (the old file is kept).
    """
    path = Path(path).expanduser()
    model_state = state.get("model_state")
    if isinstance(model_state, dict):
        bad = non_finite_tensors(model_state)
        if bad:
            raise CheckpointError(
                f"Refusing to write {str(path)!r}: weights {', '.join(bad[:5])} hold NaN/Inf. "
                "The previous checkpoint is kept; lower the learning rate or turn AMP off and resume from it."
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    # torch.save wraps a failed write (a full disk) in a RuntimeError, so the state is serialised in memory first
    # and the file is written by files.write_bytes, whose OSError becomes an OutputError naming the folder.
    # 先在内存中序列化：torch.save 会把写失败包装成 RuntimeError；写文件交给 write_bytes，磁盘满时给出清楚的错误
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return write_bytes(path, buffer.getvalue(), what="checkpoint")


# ----------------------------------------------------------------------------------------------------------------
# Loading 加载
# ----------------------------------------------------------------------------------------------------------------
def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``.
    用 weights_only=True 读取检查点

    Args:
        path: a ``.pt`` file written by :func:`save_checkpoint`. 检查点文件
        map_location: where tensors land (``"cpu"`` by default). 张量加载到的设备

    Returns:
        The checkpoint dict.

    Raises:
        CheckpointError: the path is missing or a folder; the file is empty, truncated, corrupt or not a
            ``torch.save`` file; it holds pickled objects; or it is not a unet-course checkpoint. The message
            names the file and what to do. 路径缺失或是目录、文件为空/截断/损坏、含 pickle 对象或不是本项目的检查点
    """
    path = _checked_file(Path(path).expanduser())
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
            raise CheckpointError(
                f"Checkpoint {str(path)!r} holds pickled Python objects, which are not loaded for safety "
                "(weights_only=True). Re-save it with unet_course.checkpoint.save_checkpoint."
            ) from None
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - torch.load 对损坏文件可能抛出各种异常
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(ckpt, dict) or "model_state" not in ckpt:
        kind = type(ckpt).__name__
        bare = isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values())
        hint = (" It holds weights only (a bare state_dict, as torch.save(model.state_dict(), ...) writes), "
                "without the model settings, mask values and normalisation needed to use them.") if bare else ""
        raise CheckpointError(
            f"{str(path)!r} is not a unet-course checkpoint (got a {kind} without 'model_state').{hint} "
            "Use a last.pt/best.pt written by `unet-course train` (or by checkpoint.build_state + save_checkpoint)."
        )
    return ckpt


def checkpoints_in(folder: Path) -> str:
    """The ``.pt`` files of ``folder`` for an error message (a run folder given where a checkpoint belongs).
    列出目录中的 .pt 文件，供错误信息使用

    >>> checkpoints_in(Path("/nowhere"))
    'none'
    """
    return ", ".join(sorted(p.name for p in folder.glob("*.pt"))[:5]) or "none"


def _checked_file(path: Path) -> Path:
    """``path`` if it is a non-empty zip file as ``torch.save`` writes; a clear CheckpointError otherwise.
    检查路径存在、不是目录、非空，且是 torch.save 写出的 zip 文件
    """
    if not path.exists():
        raise CheckpointError(
            f"Checkpoint {str(path)!r} does not exist. Check the path; a training run writes last.pt and best.pt "
            "in its out_dir (default runs/train)."
        )
    if path.is_dir():
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is a folder, not a file; pass a checkpoint inside it, e.g. "
            f"{str(path / 'last.pt')!r} (.pt files there: {checkpoints_in(path)})."
        )
    size = path.stat().st_size
    if size == 0:
        raise _corrupt(path, "the file is empty, 0 bytes")
    if not zipfile.is_zipfile(path):      # torch.save 写出的是 zip；截断的文件缺少 zip 目录
        raise _corrupt(path, f"{size} bytes that are not the zip archive torch.save writes")
    return path


def _corrupt(path: Path, reason: str) -> CheckpointError:
    siblings = [p.name for p in (path.with_name("last.pt"), path.with_name("best.pt")) if p != path and p.exists()]
    other = f" Other checkpoints in that folder: {', '.join(siblings)}." if siblings else ""
    return CheckpointError(
        f"Checkpoint {str(path)!r} is truncated or corrupt ({reason.splitlines()[0][:120]}). Checkpoints are"
        " written atomically, so this file was probably cut short by a copy or download, or is not a checkpoint;"
        f" the last good one is never overwritten by a failed save.{other} Pass a good checkpoint instead (to"
        " continue training from one: `unet-course train --resume FILE`)."
    )


def check_compatible(ckpt: dict[str, Any], path: str | os.PathLike, n_classes: int, in_channels: int,
                     mask_values: list[int]) -> None:
    """Raise :class:`CheckpointError` if the checkpoint was made for other classes or input channels.
    检查点的类别数或输入通道与数据不一致时报错

    Args:
        ckpt: a dict from :func:`load_checkpoint`. 检查点字典
        path: its file (named in the message). 文件路径
        n_classes, in_channels, mask_values: what the data have. 数据的类别数、通道数与掩码取值
    """
    mc = ckpt.get("model_config") or {}
    ck_values = ckpt.get("mask_values")
    pre = ckpt.get("preprocess") or {}
    ck_classes = len(ck_values) if ck_values else pre.get("n_classes", mc.get("n_classes"))
    ck_channels = mc.get("in_channels", pre.get("in_channels"))
    if ck_classes is not None and int(ck_classes) != n_classes:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} was trained for {ck_classes} classes (mask_values {ck_values}), but the "
            f"data have {n_classes} classes (mask_values {list(mask_values)}). Resume only on the same "
            "dataset, or start a fresh run without --resume."
        )
    if ck_channels is not None and int(ck_channels) != in_channels:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} expects {ck_channels} input channel(s), but the data have {in_channels}. "
            "Resume only on the same dataset, or start a fresh run without --resume."
        )


def load_weights(model: torch.nn.Module, ckpt: dict[str, Any], path: str | os.PathLike, hint: str) -> None:
    """Load ``ckpt["model_state"]`` into ``model`` (a ``module.`` prefix from DDP is dropped).
    把检查点权重载入模型（去掉 DDP 的 module. 前缀）

    Raises:
        CheckpointError: the weights do not fit ``model``; ``hint`` says what to change. 权重与模型不匹配
    """
    state = {k.removeprefix("module."): v for k, v in ckpt["model_state"].items()}
    try:
        unwrap_model(model).load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"Weights in {str(path)!r} do not fit this model ({str(exc).splitlines()[0]}). It was saved with "
            f"model_config {ckpt.get('model_config')}; {hint}"
        ) from None


# ----------------------------------------------------------------------------------------------------------------
# Resuming 续训
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class ResumeState:
    """What a resumed run continues from. 续训的起点

    Attributes:
        epoch: epochs already done. 已完成的轮数
        global_step: optimiser steps already taken. 已执行的优化步数
        run_id: the wandb run to continue (or None). 要续写的 wandb 运行
        history: the stored history dict, its per-epoch lists cut back to ``epoch``. 截断到该轮的历史
        wall_time: seconds spent by the earlier runs. 之前运行的总耗时
    """

    epoch: int
    global_step: int
    run_id: str | None
    history: dict[str, Any]
    wall_time: float


def restore_training_state(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                           scheduler: Any, scaler: torch.amp.GradScaler | None, *, n_classes: int,
                           in_channels: int, mask_values: list[int],
                           ckpt: dict[str, Any] | None = None) -> ResumeState:
    """Load ``path`` and put back weights, optimiser, scheduler, loss scaler and RNG for ``--resume``.
    读取检查点并恢复权重、优化器、调度器、损失缩放器与随机数状态

    Args:
        ckpt: the dict already read from ``path`` by :func:`load_checkpoint` (read again when None).
            已读取的检查点字典

    Raises:
        CheckpointError: unreadable file, other classes/channels than the data, or weights that do not fit.
    """
    ckpt = ckpt if ckpt is not None else load_checkpoint(path, map_location="cpu")
    check_compatible(ckpt, path, n_classes, in_channels, mask_values)
    load_weights(model, ckpt, path, "use the same base_channels/depth/bilinear.")
    optimizer.load_state_dict(ckpt["optimizer_state"])
    if scheduler is not None and ckpt.get("scheduler_state") is not None:
        scheduler.load_state_dict(ckpt["scheduler_state"])
    if scaler is not None and scaler.is_enabled() and ckpt.get("scaler_state"):
        scaler.load_state_dict(ckpt["scaler_state"])
    restore_rng_state(ckpt.get("rng_state"))
    epoch = int(ckpt.get("epoch", 0))
    history = dict(ckpt.get("history") or {})
    for name in HISTORY_LISTS:        # best.pt 之后的记录不属于这次续训
        history[name] = list(history.get(name) or [])[:epoch]
    return ResumeState(epoch=epoch, global_step=int(ckpt.get("global_step", 0)), run_id=ckpt.get("wandb_run_id"),
                       history=history, wall_time=float(history.get("wall_time") or 0.0))


def saved_train_config(ckpt: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """The ``train_config`` a checkpoint was trained with, the base of a resumed run. 检查点保存的训练配置

    Raises:
        CheckpointError: the checkpoint has no ``train_config`` (it was not written by ``unet-course train``).
    """
    saved = ckpt.get("train_config")
    if not isinstance(saved, dict):
        raise CheckpointError(
            f"Checkpoint {str(path)!r} has no train_config, so a run cannot continue from it. Resume from a "
            "last.pt/best.pt written by `unet-course train`, or start a new run without --resume."
        )
    return dict(saved)


# ----------------------------------------------------------------------------------------------------------------
# Inference 推理
# ----------------------------------------------------------------------------------------------------------------
def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the network stored in a checkpoint, ready for inference.
    根据检查点重建网络，直接用于推理

    Args:
        path: checkpoint file. 检查点文件
        device: where to put the model. 模型所在设备

    Returns:
        ``(model, meta)``: the model in eval mode on ``device``, and a dict with ``mask_values``, ``class_names``,
        ``normalization``, ``preprocess``, ``train_config``, ``model_config``, ``epoch``, ``best_metric``, ...

    Raises:
        CheckpointError: the file cannot be read, or its weights do not fit its own ``model_config``.

    Example::

        model, meta = load_model("runs/train/best.pt")
        mean, std = meta["normalization"]["mean"], meta["normalization"]["std"]
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    config = ckpt.get("model_config")
    if not isinstance(config, dict):
        raise CheckpointError(f"Checkpoint {str(path)!r} has no 'model_config'; it cannot be rebuilt.")
    try:
        model = build_model(dict(config))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"Checkpoint {str(path)!r} has an unusable model_config {config!r}: {exc}") from None
    load_weights(model, ckpt, path, "the file does not match its own model_config.")
    model.to(device).eval()
    meta = {key: ckpt.get(key) for key in META_KEYS}
    return model, meta


def describe_checkpoint(path: str | os.PathLike) -> str:
    """One-line summary: epoch, best metric, classes. 检查点的一行摘要"""
    ckpt = load_checkpoint(path)
    cfg = ckpt.get("model_config") or {}
    best = ckpt.get("best_metric")
    best_txt = f"{best:.4f}" if isinstance(best, float) else "n/a"
    return (
        f"{Path(path).name}: epoch {ckpt.get('epoch')}, best val Dice {best_txt}, "
        f"in_channels={cfg.get('in_channels')}, n_classes={cfg.get('n_classes')}, mask_values={ckpt.get('mask_values')}"
    )
