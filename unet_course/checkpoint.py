"""Checkpoints: one file that is enough to resume training or to predict.
检查点：一个文件既能续训也能用于预测

A checkpoint is a plain ``dict`` of Python scalars, lists, dicts and tensors (the format is listed in
``docs/ARCHITECTURE.md``). Nothing in it needs pickled classes, so :func:`load_checkpoint` can always use
``torch.load(..., weights_only=True)``, which cannot run code hidden in a downloaded file.
检查点是只含基本类型与张量的字典，因此总能用 weights_only=True 安全加载

Three habits keep checkpoints trustworthy:
三个习惯让检查点可靠：

1. **Atomic writes.** :func:`save_checkpoint` writes a temporary file in the same folder, flushes and ``fsync``\\ s it,
   then ``os.replace``\\ s it over the target. A crash or Ctrl-C mid-write leaves the previous ``last.pt`` intact.
   原子写入：先写同目录下的临时文件并 fsync，再用 os.replace 覆盖；中途崩溃不会损坏旧文件
2. **No NaN weights.** A state with non-finite weights is refused, so the last good checkpoint survives a
   diverged run. 拒绝保存含 NaN/Inf 的权重，发散的训练不会覆盖上一个好的检查点
3. **Self-describing.** ``model_config``, ``mask_values``, ``normalization`` and ``preprocess`` travel with the
   weights; :func:`load_model` rebuilds the network without the caller knowing its width or depth.
   自描述：模型结构、掩码取值与归一化参数随权重一起保存，load_model 可直接重建网络

RNG states are stored too (Python, NumPy as lists, torch CPU and CUDA as uint8 tensors) for exact resume.
随机数状态也一并保存（NumPy 状态转为列表），以便精确续训
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError

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
# Saving 保存
# ----------------------------------------------------------------------------------------------------------------
def non_finite_tensors(state_dict: dict[str, Any]) -> list[str]:
    """Names of floating-point tensors that hold NaN or Inf. 含 NaN/Inf 的浮点张量名称"""
    bad = []
    for name, value in state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad.append(name)
    return bad


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside ``DistributedDataParallel`` / ``torch.compile`` wrappers.
    取出被 DDP 或 torch.compile 包装的原始模块
    """
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically.
    原子地把 state 写入 path

    The bytes go to a temporary file in the same folder, which is flushed, ``fsync``-ed and renamed over ``path``
    with ``os.replace`` (atomic on POSIX and Windows). If anything fails, the temporary file is removed and the old
    ``path`` is untouched.
    先写同目录临时文件，fsync 后 os.replace；失败时删除临时文件，旧文件保持不变

    Args:
        path: destination, e.g. ``runs/train/last.pt``. 目标路径
        state: the checkpoint dict (plain types and tensors). 检查点字典

    Returns:
        ``Path(path)``.

    Raises:
        CheckpointError: ``state["model_state"]`` holds NaN/Inf weights (nothing is written), or the folder is
            not writable.
    """
    path = Path(path)
    model_state = state.get("model_state")
    if isinstance(model_state, dict):
        bad = non_finite_tensors(model_state)
        if bad:
            raise CheckpointError(
                f"Refusing to write {str(path)!r}: weights {', '.join(bad[:5])} hold NaN/Inf. "
                "The previous checkpoint is kept; lower the learning rate or turn AMP off and resume from it."
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())   # 确保数据落盘后再替换
        os.replace(tmp_name, path)
    except BaseException:
        # 任何失败（包括 Ctrl-C）都删除临时文件，旧检查点不受影响
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX only; a no-op elsewhere). 让重命名本身也落盘"""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


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
        CheckpointError: the file is missing, truncated/corrupt, holds pickled objects, or is not a unet-course
            checkpoint. The message names the file and what to do.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"Checkpoint {str(path)!r} does not exist. Check the path; a training run writes last.pt and best.pt "
            "in its out_dir (default runs/train)."
        )
    if path.is_dir():
        raise CheckpointError(f"Checkpoint {str(path)!r} is a folder; pass the .pt file inside it (e.g. last.pt).")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
            raise CheckpointError(
                f"Checkpoint {str(path)!r} holds pickled Python objects, which are not loaded for safety "
                "(weights_only=True). Re-save it with unet_course.checkpoint.save_checkpoint."
            ) from None
        raise _corrupt(path, exc) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise _corrupt(path, exc) from None
    if not isinstance(ckpt, dict) or "model_state" not in ckpt:
        kind = type(ckpt).__name__
        hint = " It looks like a bare state_dict;" if isinstance(ckpt, dict) else ""
        raise CheckpointError(
            f"{str(path)!r} is not a unet-course checkpoint (got a {kind} without 'model_state').{hint} "
            "Use a last.pt/best.pt written by `unet-course train`."
        )
    return ckpt


def _corrupt(path: Path, exc: BaseException) -> CheckpointError:
    siblings = [p.name for p in (path.with_name("last.pt"), path.with_name("best.pt")) if p != path and p.exists()]
    other = f" Other checkpoints in that folder: {', '.join(siblings)}" if siblings else ""
    return CheckpointError(
        f"Checkpoint {str(path)!r} is truncated or corrupt ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})."
        " Checkpoints are written atomically, so this file was probably cut short by a copy or download; the last"
        f" good one is never overwritten by a failed save.{other} Resume from the good file, e.g."
        " `unet-course train --resume runs/train/best.pt`."
    )


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
    from .model import build_model

    ckpt = load_checkpoint(path, map_location="cpu")
    config = ckpt.get("model_config")
    if not isinstance(config, dict):
        raise CheckpointError(f"Checkpoint {str(path)!r} has no 'model_config'; it cannot be rebuilt.")
    try:
        model = build_model(dict(config))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"Checkpoint {str(path)!r} has an unusable model_config {config!r}: {exc}") from None
    state = {k.removeprefix("module."): v for k, v in ckpt["model_state"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"Weights in {str(path)!r} do not match its model_config {config!r}: {str(exc).splitlines()[0]}"
        ) from None
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
