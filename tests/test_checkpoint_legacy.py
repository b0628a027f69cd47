"""A checkpoint written by main before the redesign still loads, evaluates and resumes.
重构前 main 写出的检查点仍能加载、评估并续训

``tests/fixtures/checkpoint_v1_main-adfbd07.pt`` was written by commit adfbd07 (the command is in the JSON beside
it, together with the logits and metrics that code produced). The checkpoint format is a contract: if this test
fails, the format changed and old runs of users would stop loading.
该检查点由重构前的提交写出；此测试失败说明检查点格式被破坏
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from unet_course.checkpoint import load_model
from unet_course.config import TrainConfig
from unet_course.data.synthetic import SyntheticSegmentation
from unet_course.inference import evaluate_dataset
from unet_course.training import fit

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint_v1_main-adfbd07.pt"
EXPECTED = json.loads(FIXTURE.with_suffix(".json").read_text())


def test_legacy_checkpoint_loads_with_the_same_weights():
    model, meta = load_model(FIXTURE)
    assert meta["epoch"] == EXPECTED["epoch"] and meta["global_step"] == EXPECTED["global_step"]
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        y = model(x).double()
    assert y.sum().item() == pytest.approx(EXPECTED["logits_sum"], rel=1e-6)
    assert y.abs().sum().item() == pytest.approx(EXPECTED["logits_abs_sum"], rel=1e-6)


def test_legacy_checkpoint_evaluates_to_the_same_metrics():
    model, meta = load_model(FIXTURE)
    result = evaluate_dataset(model, meta, SyntheticSegmentation(8, 32, seed=0, split="val"), amp="off")  # fp32, as then
    metrics = result["metrics"]
    want = EXPECTED["eval_metrics"]
    assert metrics["confusion_matrix"] == want["confusion_matrix"]
    for key in ("dice", "mean_iou", "pixel_error", "auc"):
        assert metrics[key] == pytest.approx(want[key], abs=1e-9), key


def test_legacy_checkpoint_resumes(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FIXTURE, run / "last.pt")
    cfg = TrainConfig(dataset="synthetic", image_size=32, train_samples=32, val_samples=8, epochs=4,
                      base_channels=4, depth=2, batch_size=4, amp="off", progress="none", seed=0,
                      num_workers=0, lr=1e-2, out_dir=str(run), resume="last")
    history = fit(cfg)
    resumed = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 4 and resumed["global_step"] == EXPECTED["global_step"] + 8
    assert len(history.val_metrics) == 4            # 3 restored epochs + 1 new one 恢复的 3 轮加新训练的 1 轮
