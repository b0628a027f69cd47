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

What gets logged (by :func:`unet_course.training.fit`): the config, train loss and learning rate per step,
validation metrics per epoch, an image / ground truth / prediction panel, and weight and gradient histograms
(skipped when a tensor holds NaN/Inf, which wandb cannot bin).
记录内容：配置、每步训练损失与学习率、每轮验证指标、图像/真值/预测面板，以及权重和梯度直方图（含 NaN/Inf 时跳过）

Whatever the mode, every :meth:`Tracker.log` call is also appended as one JSON line to ``<dir>/metrics.jsonl``
(beside the checkpoints), so tests and notebooks read the scalars back with :func:`read_metrics_jsonl` without
looking inside wandb's files. Only wandb's public API (``wandb.init``, ``run.log``, ``run.finish``) is used.
无论哪种模式，每次 log 调用都会追加一行 JSON 到 <dir>/metrics.jsonl（与检查点同目录），
测试与 notebook 用 read_metrics_jsonl 读回；只使用 wandb 的公开 API
"""

from __future__ import annotations

import json
import logging
import netrc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import WANDB_MODES
from .errors import ConfigError
from .files import disk_error, to_plain

logger = logging.getLogger("unet_course")

#: The scalar log the tracker writes in its ``dir`` (one JSON object per ``log`` call). 标量记录文件名
METRICS_FILE = "metrics.jsonl"

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
    try:  # kaggle_secrets exists only inside a Kaggle kernel Kaggle 内核中才有 kaggle_secrets 模块
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


def _histogram(wandb: Any, values: torch.Tensor, bins: int = 64) -> Any:
    """A ``wandb.Histogram`` of finite values, counted in float64. 以 float64 统计的直方图

    Counted in float32 (as ``wandb.Histogram(array)`` does), values that all lie within a few float32 steps
    (batch-norm weights after one step: 1.0 ± 1e-7) cannot be cut into 64 distinct bins and numpy raises, which
    stopped training at the end of the epoch. In float64 they can; a range below a billionth of the values' size
    is widened to one unit, as numpy does for a constant. 以 float32 统计时极窄的取值范围会让 numpy 报错并中断训练
    """
    v = values.numpy().ravel()                                            # float64
    lo, hi = float(v.min()), float(v.max())
    if not hi - lo > 1e-9 * max(1.0, abs(lo), abs(hi)):                 # (near-)constant 近乎常数
        lo, hi = lo - 0.5, hi + 0.5
    return wandb.Histogram(np_histogram=np.histogram(v, bins=bins, range=(lo, hi)))


class Tracker:
    """A wandb run that can be switched off, and that always finishes.
    可关闭、并且总会正常结束的 wandb 运行

    Args:
        mode: ``"disabled"`` | ``"offline"`` | ``"online"``. 模式
        project: wandb project name. 项目名
        run_name: display name of the run (None lets wandb choose). 运行名称
        config: dict logged as the run config (e.g. ``TrainConfig.to_dict()``). 运行配置
        dir: parent folder of the ``wandb/`` run folder and home of ``metrics.jsonl`` (None: ``$WANDB_DIR`` or
            the current folder for wandb, and no ``metrics.jsonl``). 运行目录的父目录，也是 metrics.jsonl 所在目录
        resume_id: id of an earlier run to continue (stored in checkpoints as ``wandb_run_id``). 要续写的运行 id
        main_process: False on ranks other than 0 (then the tracker is disabled). 非 0 号进程传 False
        new_log: start ``metrics.jsonl`` afresh at the first ``log`` (a new run in a folder an earlier run used);
            False appends (a resumed run). 首次记录时重新开始 metrics.jsonl（新运行），False 则追加（续训）

    Use it as a context manager so that ``finish()`` runs even when training fails. Every ``log`` call is
    appended to ``<dir>/metrics.jsonl`` in all modes (rank 0 only); a resumed run appends to the same file, a new
    one (``new_log=True``) replaces it.
    作为上下文管理器使用，训练失败时也会调用 finish()；每次 log 都追加到 <dir>/metrics.jsonl

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with Tracker("disabled", dir=folder) as tracker:
    ...     tracker.log({"train/loss": 0.25, "bad": float("nan")}, step=10)
    >>> read_metrics_jsonl(folder / "metrics.jsonl")
    [{'step': 10, 'train/loss': 0.25}]

    Raises:
        ConfigError: unknown ``mode``.
    """

    def __init__(self, mode: str = "disabled", project: str = "unet-course", run_name: str | None = None,
                 config: dict[str, Any] | None = None, dir: str | os.PathLike | None = None,
                 resume_id: str | None = None, main_process: bool = True, new_log: bool = False) -> None:
        if mode not in WANDB_MODES:
            raise ConfigError(f"Unknown wandb_mode {mode!r}; choose one of: {', '.join(WANDB_MODES)}.")
        self.requested_mode = mode
        self.mode = mode if main_process else "disabled"
        self.run: Any = None
        self._wandb: Any = None
        self.metrics_path = Path(dir) / METRICS_FILE if (dir is not None and main_process) else None
        self._log_mode = "w" if new_log else "a"          # 新运行：第一次写入时清空旧记录
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
            import wandb  # optional and slow to import: only when tracking is on 可选依赖，只在启用时导入
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
        """Log scalars to ``metrics.jsonl`` and, when on, to wandb (non-finite floats are dropped).
        记录标量到 metrics.jsonl，启用时也记录到 wandb（丢弃非有限值）
        """
        clean = {}
        for key, value in metrics.items():
            if isinstance(value, torch.Tensor):
                value = value.item() if value.numel() == 1 else value.tolist()
            if isinstance(value, float) and not np.isfinite(value):
                logger.debug("tracking: dropping non-finite %s=%r", key, value)
                continue
            clean[key] = value
        if self.metrics_path is not None:
            self._append_jsonl({"step": step, **clean})
        if self.run is not None:
            self.run.log(clean, step=step)

    def _append_jsonl(self, row: dict[str, Any]) -> None:
        """Append one JSON line (the file and its folder are created on first use). 追加一行 JSON"""
        path = self.metrics_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, self._log_mode, encoding="utf-8") as handle:
                handle.write(json.dumps(to_plain(row)) + "\n")
            self._log_mode = "a"
        except OSError as exc:
            raise disk_error(path, exc, "metrics log") from None

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
            values = param.detach().double().cpu()
            if torch.isfinite(values).all():
                data[f"weights/{name}"] = _histogram(wandb, values)
            if param.grad is not None:
                grad = param.grad.detach().double().cpu()
                if torch.isfinite(grad).all():
                    data[f"gradients/{name}"] = _histogram(wandb, grad)
        if data:
            self.run.log(data, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        """Set run summary values (final / best metrics). 设置运行摘要"""
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        """Close the wandb run (idempotent; ``metrics.jsonl`` needs no closing). 结束运行（可重复调用）"""
        if self.run is None:
            return
        try:
            self.run.finish(exit_code=exit_code)
        finally:
            self.run = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)


def read_metrics_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows a :class:`Tracker` logged, read back from its ``metrics.jsonl`` (one dict per ``log`` call).
    读回 Tracker 写出的 metrics.jsonl（每次 log 调用一个字典）

    Args:
        path: the ``metrics.jsonl`` file, or the run folder that holds it. 文件或其所在目录

    Returns:
        A list of dicts, each with ``step`` and the logged keys, in logging order. 按记录顺序的字典列表

    Raises:
        FileNotFoundError: no such file. 文件不存在
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
