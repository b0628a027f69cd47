"""wandb tracking: disabled by default, offline runs hold what was logged, no key -> offline.
wandb 记录：默认关闭；离线运行中保存了记录的内容；没有密钥时退回离线模式
"""

from __future__ import annotations

import logging
import sys

import pytest
import torch

from unet_course.errors import ConfigError
from unet_course.tracking import Tracker, read_offline_history, resolve_wandb_key


def test_disabled_does_not_import_wandb(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    with Tracker("disabled", config={"a": 1}, dir=tmp_path) as tracker:
        tracker.log({"x": 1.0}, step=1)
        assert not tracker.enabled and tracker.run_id is None
    assert "wandb" not in sys.modules
    assert not any(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="disabled, offline, online"):
        Tracker("cloud")


def test_non_main_rank_is_disabled(tmp_path):
    tracker = Tracker("offline", dir=tmp_path, main_process=False)
    assert tracker.mode == "disabled" and not tracker.enabled


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
    """One offline run, read back from its .wandb file (no network). 一次离线运行，从 .wandb 文件读回"""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    images = torch.randn(2, 3, 16, 16)
    masks = torch.randint(0, 2, (2, 16, 16))
    model = torch.nn.Conv2d(3, 2, 1)
    model(images).sum().backward()
    with Tracker("offline", project="unet-course-test", run_name="t", config={"lr": 0.01}, dir=tmp_path) as tracker:
        assert tracker.enabled and tracker.mode == "offline"
        tracker.log({"train/loss": 0.75, "skip/nan": float("nan")}, step=1)
        tracker.log({"val/dice": 0.625}, step=2)
        tracker.log_segmentation(images, masks, masks, step=2, mean=[0.5] * 3, std=[0.2] * 3,
                                 class_names=["background", "structure"])
        tracker.log_histograms(model, step=2)
        run_dir = tracker.run_dir
    assert tracker.run is None                               # finish() 已运行
    assert run_dir is not None and run_dir.name.startswith("offline-run-")
    assert run_dir.is_relative_to(tmp_path)
    rows = read_offline_history(run_dir)
    merged = {k: v for row in rows for k, v in row.items()}
    assert "train/loss" in merged, rows
    assert merged["train/loss"] == 0.75 and merged["val/dice"] == 0.625
    assert "skip/nan" not in merged
    assert any(k.startswith("val/examples") for k in merged)           # 图像面板
    assert any(k.startswith("weights/weight") for k in merged)          # 权重直方图
    assert any(k.startswith("gradients/weight") for k in merged)        # 梯度直方图
    assert list((run_dir / "files" / "media").rglob("*.png"))


def test_fit_logs_to_offline_run_and_stores_run_id(tmp_path, monkeypatch):
    """``fit`` with wandb_mode="offline": metrics, panel and run id in the checkpoint. fit 的离线记录"""
    pytest.importorskip("wandb")
    from unet_course.checkpoint import load_checkpoint
    from unet_course.config import TrainConfig
    from unet_course.engine import fit

    monkeypatch.setenv("WANDB_MODE", "offline")
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=1, image_size=32, train_samples=8, val_samples=4, base_channels=4, depth=2,
                      batch_size=4, amp="off", progress="none", num_workers=0, wandb_mode="offline",
                      out_dir=str(tmp_path / "run"))
    history = fit(cfg)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    run_dirs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1 and ckpt["wandb_run_id"] and run_dirs[0].name.endswith(ckpt["wandb_run_id"])
    merged = {k: v for row in read_offline_history(run_dirs[0]) for k, v in row.items()}
    assert merged["train/loss"] == pytest.approx(history.train_loss[0], rel=0.5)
    assert merged["val/dice"] == pytest.approx(history.val_dice[0])
    assert any(k.startswith("val/examples") for k in merged)
