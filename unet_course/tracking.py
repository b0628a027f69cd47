"""Experiment tracking with Weights & Biases, made safe for courses, CI and Kaggle.
用 Weights & Biases 记录实验；在课程、CI 与 Kaggle 中都能安全使用

:class:`Tracker` is a thin wrapper around ``wandb`` with three modes:
Tracker 是 wandb 的薄封装，有三种模式：

- ``"disabled"`` (default, and always in tests/CI/papermill): nothing is imported or written.
  默认模式（测试、CI、papermill 中始终如此）：不导入也不写任何东西
- ``"offline"``: a local run folder ``<dir>/wandb/offline-run-*``; upload it later with ``wandb sync <folder>``.
  离线模式：写本地运行目录，之后可用 wandb sync 上传
- ``"online"``: streams to wandb.ai. The API key comes from Kaggle Secrets (``WANDB_API_KEY``), the environment or
  ``~/.netrc``. With no key the run falls back to offline and a warning says how to add one; there is never an
  interactive login prompt and never an anonymous run.
  在线模式：密钥来自 Kaggle Secrets、环境变量或 ~/.netrc；没有密钥时退回离线模式并提示如何设置，不会弹出交互式登录

Only rank 0 of a distributed job talks to wandb; the other ranks get a disabled tracker.
分布式训练中只有 0 号进程与 wandb 通信

What gets logged (by :mod:`unet_course.engine`): the config, train loss and learning rate per step, validation
metrics per epoch, an image / ground truth / prediction panel, and weight and gradient histograms (skipped when a
tensor holds NaN/Inf, which wandb cannot bin).
记录内容：配置、每步训练损失与学习率、每轮验证指标、图像/真值/预测面板，以及权重和梯度直方图（含 NaN/Inf 时跳过）
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import WANDB_MODES
from .errors import ConfigError

logger = logging.getLogger("unet_course")

KEY_HELP = (
    "To log online, set the WANDB_API_KEY environment variable (on Kaggle: Add-ons > Secrets > add a secret named "
    "WANDB_API_KEY and attach it to the notebook), or run `wandb login` once in a terminal."
)


def resolve_wandb_key() -> str | None:
    """Find a wandb API key without prompting: Kaggle Secrets, then ``$WANDB_API_KEY``, then ``~/.netrc``.
    不经交互地查找 wandb 密钥：依次查 Kaggle Secrets、环境变量、~/.netrc

    Returns:
        The key, or None when there is none.
    """
    try:  # Kaggle 内核中才有 kaggle_secrets 模块
        from kaggle_secrets import UserSecretsClient  # type: ignore[import-not-found]

        key = UserSecretsClient().get_secret("WANDB_API_KEY")
        if key:
            return str(key)
    except Exception:  # noqa: BLE001 - 不在 Kaggle 或未添加该 secret
        pass
    key = os.environ.get("WANDB_API_KEY")
    if key:
        return key
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (OSError, netrc.NetrcParseError):
        auth = None
    if auth and auth[2]:
        return auth[2]
    return None


def _to_uint8_image(image: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> np.ndarray:
    """Undo normalisation: ``(C, H, W)`` float -> ``(H, W, 3)`` uint8 for display. 反归一化为可显示的图像"""
    img = image.detach().float().cpu()                          # (C, H, W)
    if mean is not None and std is not None:
        m = torch.as_tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        s = torch.as_tensor(list(std), dtype=torch.float32).view(-1, 1, 1)
        img = img * s + m                                       # 恢复到 [0, 1] 量级
    else:
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo + 1e-8)
    img = img.clamp(0, 1)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)                             # (3, H, W) 灰度转三通道
    return (img[:3].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (H, W, 3)


class Tracker:
    """A wandb run that can be switched off, and that always finishes.
    可关闭、并且总会正常结束的 wandb 运行

    Args:
        mode: ``"disabled"`` | ``"offline"`` | ``"online"``. 模式
        project: wandb project name. 项目名
        run_name: display name of the run (None lets wandb choose). 运行名称
        config: dict logged as the run config (e.g. ``TrainConfig.to_dict()``). 运行配置
        dir: parent folder of the ``wandb/`` run folder (None: ``$WANDB_DIR`` or the current folder). 运行目录的父目录
        resume_id: id of an earlier run to continue (stored in checkpoints as ``wandb_run_id``). 要续写的运行 id
        main_process: False on ranks other than 0 (then the tracker is disabled). 非 0 号进程传 False

    Use it as a context manager so that ``finish()`` runs even when training fails::

        with Tracker("offline", config=cfg.to_dict(), dir="runs/train") as tracker:
            tracker.log({"train/loss": 0.3}, step=10)

    Raises:
        ConfigError: unknown ``mode``.
    """

    def __init__(self, mode: str = "disabled", project: str = "unet-course", run_name: str | None = None,
                 config: dict[str, Any] | None = None, dir: str | os.PathLike | None = None,
                 resume_id: str | None = None, main_process: bool = True) -> None:
        if mode not in WANDB_MODES:
            raise ConfigError(f"Unknown wandb_mode {mode!r}; choose one of: {', '.join(WANDB_MODES)}.")
        self.requested_mode = mode
        self.mode = mode if main_process else "disabled"
        self.run: Any = None
        self._wandb: Any = None
        if self.mode == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")          # 不打印 wandb 的横幅，也不提示登录
        if self.mode == "online":
            key = resolve_wandb_key()
            if key is None:
                logger.warning("wandb_mode='online' but no wandb API key was found; logging offline instead. %s",
                               KEY_HELP)
                self.mode = "offline"
            else:
                os.environ["WANDB_API_KEY"] = key
        try:
            import wandb
        except ImportError:
            logger.warning("wandb is not installed; tracking is disabled (pip install wandb).")
            self.mode = "disabled"
            return
        self._wandb = wandb
        if dir is not None:
            Path(dir).mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = dict(project=project, name=run_name, config=config or {},
                                      dir=str(dir) if dir is not None else None, reinit="finish_previous")
        if resume_id:
            kwargs.update(id=resume_id, resume="allow")
        settings = dict(console="off", silent=True, init_timeout=60.0)
        try:
            self.run = wandb.init(mode=self.mode, settings=wandb.Settings(**settings), **kwargs)
        except Exception as exc:  # noqa: BLE001 - 网络或认证问题不应中断训练
            if self.mode != "online":
                logger.warning("wandb could not start (%s); tracking is disabled.", exc)
                self.mode = "disabled"
                return
            logger.warning("wandb could not reach the server (%s); logging offline instead.", exc)
            self.mode = "offline"
            try:
                self.run = wandb.init(mode="offline", settings=wandb.Settings(**settings), **kwargs)
            except Exception as exc2:  # noqa: BLE001
                logger.warning("wandb offline start failed too (%s); tracking is disabled.", exc2)
                self.mode = "disabled"
                return
        if self.mode == "offline":
            logger.info("wandb offline run in %s; upload it later with `wandb sync %s`", self.run_dir, self.run_dir)

    # ------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """True while a wandb run is open. 是否有打开的 wandb 运行"""
        return self.run is not None

    @property
    def run_id(self) -> str | None:
        """The wandb run id (saved in checkpoints so a resumed run continues it). 运行 id"""
        return self.run.id if self.run is not None else None

    @property
    def run_dir(self) -> Path | None:
        """The local run folder (``.../wandb/offline-run-*`` or ``run-*``). 本地运行目录"""
        if self.run is None:
            return None
        return Path(self.run.dir).parent   # run.dir 是其中的 files/ 子目录

    # ------------------------------------------------------------------
    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Log scalars (non-finite floats are dropped with a debug message). 记录标量（丢弃非有限值）"""
        if self.run is None:
            return
        clean = {}
        for key, value in metrics.items():
            if isinstance(value, torch.Tensor):
                value = value.item() if value.numel() == 1 else value.tolist()
            if isinstance(value, float) and not np.isfinite(value):
                logger.debug("wandb: dropping non-finite %s=%r", key, value)
                continue
            clean[key] = value
        self.run.log(clean, step=step)

    def update_config(self, values: dict[str, Any]) -> None:
        """Add values to the run config (e.g. dataset sizes found after start). 向运行配置追加取值"""
        if self.run is not None:
            self.run.config.update(values, allow_val_change=True)

    def log_segmentation(self, images: torch.Tensor, masks: torch.Tensor | None, preds: torch.Tensor, *,
                         step: int | None = None, mean: Sequence[float] | None = None,
                         std: Sequence[float] | None = None, class_names: Sequence[str] | None = None,
                         ignore_index: int = 255, max_items: int = 4, key: str = "val/examples") -> None:
        """Log image / ground truth / prediction panels as ``wandb.Image`` with mask overlays.
        以带掩码叠加的 wandb.Image 记录图像/真值/预测

        Args:
            images: ``(B, C, H, W)`` normalised images. 归一化后的图像
            masks: ``(B, H, W)`` class indices (``ignore_index`` allowed) or None. 真值类别索引
            preds: ``(B, H, W)`` predicted class indices. 预测类别索引
            step: global step. 全局步数
            mean, std: normalisation to undo for display. 用于反归一化
            class_names: label of each class index. 每个类别的名称
            ignore_index: label value shown as "ignore". 忽略标签的取值
            max_items: at most this many samples. 最多记录的样本数
            key: wandb key. 记录键名
        """
        if self.run is None:
            return
        wandb = self._wandb
        n_classes = len(class_names) if class_names else int(preds.max().item()) + 1
        labels = {i: (class_names[i] if class_names else f"class {i}") for i in range(n_classes)}
        labels[ignore_index] = "ignore"
        panels = []
        for i in range(min(max_items, images.shape[0])):
            overlay = {"prediction": {"mask_data": preds[i].detach().cpu().numpy().astype(np.uint8),
                                      "class_labels": labels}}
            if masks is not None:
                overlay["ground_truth"] = {"mask_data": masks[i].detach().cpu().numpy().astype(np.uint8),
                                           "class_labels": labels}
            panels.append(wandb.Image(_to_uint8_image(images[i], mean, std), masks=overlay))
        self.run.log({key: panels}, step=step)

    def log_histograms(self, model: torch.nn.Module, step: int | None = None, max_tensors: int = 64) -> None:
        """Histograms of weights and gradients, skipping tensors with NaN/Inf. 权重与梯度直方图（跳过含非有限值的张量）"""
        if self.run is None:
            return
        wandb = self._wandb
        data: dict[str, Any] = {}
        for name, param in list(model.named_parameters())[:max_tensors]:
            name = name.removeprefix("module.")
            values = param.detach().float().cpu()
            if torch.isfinite(values).all():
                data[f"weights/{name}"] = wandb.Histogram(values.numpy())
            if param.grad is not None:
                grad = param.grad.detach().float().cpu()
                if torch.isfinite(grad).all():
                    data[f"gradients/{name}"] = wandb.Histogram(grad.numpy())
        if data:
            self.run.log(data, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        """Set run summary values (final / best metrics). 设置运行摘要"""
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = value

    def finish(self, exit_code: int = 0, flush_timeout: float = 15.0) -> None:
        """Close the run (idempotent). 结束运行（可重复调用）

        wandb writes the offline ``.wandb`` file from a background service, which may still be writing when
        ``run.finish()`` returns; for offline runs we wait (up to ``flush_timeout`` seconds) until the file holds
        its final record, so ``wandb sync`` and :func:`read_offline_history` see every row.
        离线模式下等待后台服务写完 .wandb 文件（最多 flush_timeout 秒），以便之后同步或读取
        """
        if self.run is None:
            return
        run_dir = self.run_dir
        try:
            self.run.finish(exit_code=exit_code)
        finally:
            self.run = None
        if self.mode == "offline" and run_dir is not None:
            _wait_for_exit_record(run_dir, flush_timeout)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)


# ----------------------------------------------------------------------------------------------------------------
# Reading an offline run back 读取离线运行
# ----------------------------------------------------------------------------------------------------------------
_HEADER_LEN = 7          # b":W&B" + 2-byte magic + 1-byte version 文件头
_BLOCK = 32768           # records are packed into 32 KiB blocks 记录按 32 KiB 分块
_RECORD_HEADER = 7       # crc32 (4) + length (2) + type (1) 记录头


def _iter_record_bytes(path: Path):
    """Yield the raw protobuf payloads of a ``.wandb`` file (a LevelDB-style log). 逐条读出 .wandb 文件中的记录"""
    data = path.read_bytes()
    if not data.startswith(b":W&B"):
        raise ValueError(f"{path} is not a wandb run file")
    pos, chunks = _HEADER_LEN, []
    while pos + _RECORD_HEADER <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _RECORD_HEADER:        # 块尾剩余空间不足一个记录头时为填充字节
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _RECORD_HEADER])
        pos += _RECORD_HEADER
        payload = data[pos:pos + length]
        pos += length
        if kind == 0 and length == 0:
            break
        if kind == 1:                    # FULL 完整记录
            yield payload
        elif kind == 2:                  # FIRST
            chunks = [payload]
        elif kind == 3:                  # MIDDLE
            chunks.append(payload)
        elif kind == 4:                  # LAST
            chunks.append(payload)
            yield b"".join(chunks)
            chunks = []


def _record_types(path: Path) -> list[str]:
    from wandb.proto import wandb_internal_pb2 as pb

    kinds = []
    for payload in _iter_record_bytes(path):
        record = pb.Record()
        record.ParseFromString(payload)
        kinds.append(record.WhichOneof("record_type"))
    return kinds


def _wait_for_exit_record(run_dir: Path, timeout: float) -> bool:
    """Poll the run file until its ``exit`` record is written. 轮询直到运行文件写入 exit 记录"""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(Path(run_dir).glob("run-*.wandb"))
        try:
            if files and "exit" in _record_types(files[0]):
                return True
        except (OSError, ValueError, struct.error):
            pass
        if time.monotonic() >= deadline:
            logger.debug("wandb run file in %s is still incomplete after %.0f s", run_dir, timeout)
            return False
        time.sleep(0.1)


def read_offline_history(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows logged to an offline run, read back from its ``run-<id>.wandb`` file (for tests and notebooks).
    从离线运行的 .wandb 文件读回记录的每一行（供测试与 notebook 使用）

    Args:
        run_dir: the ``offline-run-*`` folder. 离线运行目录

    Returns:
        One dict per ``log`` call, mapping keys to decoded JSON values (``_step`` included).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    rows: list[dict[str, Any]] = []
    for payload in _iter_record_bytes(files[0]):
        record = pb.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") != "history":
            continue
        row = {}
        for item in record.history.item:
            key = item.key or "/".join(item.nested_key)
            try:
                row[key] = json.loads(item.value_json)
            except json.JSONDecodeError:
                row[key] = item.value_json
        rows.append(row)
    return rows
