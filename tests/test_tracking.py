"""Tracking: metrics.jsonl in every mode, wandb disabled by default, offline runs through the public API only,
no key -> offline.
实验记录：任何模式都写 metrics.jsonl；wandb 默认关闭；离线运行只用公开 API；没有密钥时退回离线模式
"""

from __future__ import annotations

import logging
import sys

import pytest
import torch

from unet_course.errors import ConfigError
from unet_course.tracking import METRICS_FILE, Tracker, read_metrics_jsonl, resolve_wandb_key


def test_disabled_does_not_import_wandb_but_writes_jsonl(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    with Tracker("disabled", config={"a": 1}, dir=tmp_path) as tracker:
        tracker.log({"x": 1.0, "t": torch.tensor(2.5), "bad": float("inf")}, step=1)
        tracker.log({"x": 0.5}, step=2)
        assert not tracker.enabled and tracker.run_id is None
    assert "wandb" not in sys.modules
    assert [p.name for p in tmp_path.iterdir()] == [METRICS_FILE]          # 只有 metrics.jsonl，没有 wandb 目录
    assert read_metrics_jsonl(tmp_path) == [{"step": 1, "x": 1.0, "t": 2.5}, {"step": 2, "x": 0.5}]
    with Tracker("disabled", dir=tmp_path) as tracker:                      # 续训：追加而不是覆盖
        tracker.log({"x": 0.25}, step=3)
    assert [row["step"] for row in read_metrics_jsonl(tmp_path / METRICS_FILE)] == [1, 2, 3]
    with pytest.raises(ConfigError, match="disabled, offline, online"):
        Tracker("cloud")


def test_no_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Tracker("disabled").log({"x": 1.0}, step=1)
    assert not any(tmp_path.iterdir())


def test_non_main_rank_is_disabled_and_writes_nothing(tmp_path):
    tracker = Tracker("offline", dir=tmp_path, main_process=False)
    assert tracker.mode == "disabled" and not tracker.enabled
    tracker.log({"x": 1.0}, step=1)
    assert not any(tmp_path.iterdir())


def test_online_without_key_falls_back_to_offline(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))             # 没有 ~/.netrc
    monkeypatch.setitem(sys.modules, "wandb", None)       # 不真正启动 wandb，只检查模式选择
    assert resolve_wandb_key() is None
    with caplog.at_level(logging.WARNING, logger="unet_course"):
        tracker = Tracker("online", dir=tmp_path)
    assert tracker.mode == "disabled"                     # wandb 不可导入 -> 关闭
    text = caplog.text
    assert "no wandb API key" in text and "WANDB_API_KEY" in text and "offline" in text


def test_offline_run_records_metrics(tmp_path, monkeypatch):
    """One offline run: scalars in metrics.jsonl, panels and histograms handed to wandb (no network).
    一次离线运行：标量写入 metrics.jsonl，图像面板与直方图交给 wandb
    """
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    images = torch.randn(2, 3, 16, 16)
    masks = torch.randint(0, 2, (2, 16, 16))
    model = torch.nn.Conv2d(3, 2, 1)
    model(images).sum().backward()
    with Tracker("offline", project="unet-course-test", run_name="t", config={"lr": 0.01}, dir=tmp_path) as tracker:
        assert tracker.enabled and tracker.mode == "offline"
        sent: list[dict] = []
        real_log = tracker.run.log

        def spy(data, step=None):                               # 记录交给 wandb 的内容，再照常转交
            sent.append(dict(data))
            return real_log(data, step=step)

        monkeypatch.setattr(tracker.run, "log", spy)
        tracker.log({"train/loss": 0.75, "skip/nan": float("nan")}, step=1)
        tracker.log({"val/dice": 0.625}, step=2)
        tracker.log_segmentation(images, masks, masks, step=2, mean=[0.5] * 3, std=[0.2] * 3,
                                 class_names=["background", "structure"])
        tracker.log_histograms(model, step=2)
        run_dir = tracker.run_dir
    assert tracker.run is None                               # finish() 已运行
    assert run_dir is not None and run_dir.name.startswith("offline-run-")
    assert run_dir.is_relative_to(tmp_path)
    assert read_metrics_jsonl(tmp_path) == [{"step": 1, "train/loss": 0.75}, {"step": 2, "val/dice": 0.625}]
    keys = {k for row in sent for k in row}
    assert {"train/loss", "val/dice", "val/examples"} <= keys and "skip/nan" not in keys
    assert any(k.startswith("weights/weight") for k in keys)            # 权重直方图
    assert any(k.startswith("gradients/weight") for k in keys)          # 梯度直方图
    assert list((run_dir / "files" / "media").rglob("*.png"))           # 图像面板已写成 PNG


def test_histograms_of_values_a_float32_step_apart(tmp_path, monkeypatch):
    """Batch-norm weights after one step (1.0 ± 1e-7) made numpy raise "Too many bins for data range" inside
    ``wandb.Histogram``, which ended ``train --wandb-mode offline`` with a traceback. 以前会让训练以 traceback 结束
    """
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    model = torch.nn.BatchNorm2d(64)
    with torch.no_grad():
        model.weight.copy_(1.0 + 1e-7 * torch.arange(64))                 # float32: a few steps apart
        model.bias.zero_()                                               # a constant 常数
    with Tracker("offline", project="unet-course-test", run_name="h", dir=tmp_path) as tracker:
        sent: list[dict] = []
        monkeypatch.setattr(tracker.run, "log", lambda data, step=None: sent.append(dict(data)))
        tracker.log_histograms(model, step=1)
    weights, bias = sent[0]["weights/weight"], sent[0]["weights/bias"]
    assert sum(weights.histogram) == 64 and len(weights.histogram) == 64
    assert weights.bins[0] <= 1.0 and weights.bins[-1] >= 1.0 + 63e-7    # the values' own range 取值本身的范围
    assert sum(bias.histogram) == 64 and bias.bins[0] == -0.5 and bias.bins[-1] == 0.5


def test_fit_logs_to_offline_run_and_stores_run_id(tmp_path, monkeypatch):
    """``fit`` with wandb_mode="offline": metrics.jsonl beside the checkpoints, run id in the checkpoint.
    fit 的离线记录：metrics.jsonl 与检查点同目录，检查点中保存运行 id
    """
    pytest.importorskip("wandb")
    from unet_course.checkpoint import load_checkpoint
    from unet_course.config import TrainConfig
    from unet_course.training import fit

    monkeypatch.setenv("WANDB_MODE", "offline")
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=1, image_size=32, train_samples=8, val_samples=4, base_channels=4, depth=2,
                      batch_size=4, amp="off", progress="none", num_workers=0, wandb_mode="offline",
                      out_dir=str(tmp_path / "run"))
    history = fit(cfg)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    run_dirs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1 and ckpt["wandb_run_id"] and run_dirs[0].name.endswith(ckpt["wandb_run_id"])
    rows = read_metrics_jsonl(tmp_path / "run" / METRICS_FILE)
    assert rows[0]["step"] == 1 and rows[0]["train/loss"] > 0                # 第 1 步的训练损失
    last = rows[-1]
    assert last["step"] == history.global_step == 2 and last["epoch"] == 1
    assert last["train/epoch_loss"] == pytest.approx(history.train_loss[0])
    assert last["val/dice"] == pytest.approx(history.val_dice[0])
