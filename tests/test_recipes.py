"""Smoke runs of the shipped recipes (seconds each), so CI guards them.
内置配方的冒烟测试（每个数秒），让 CI 持续检查它们

Each recipe is loaded through the CLI exactly as a user runs it (``unet-course train --recipe NAME``); only the
size knobs are shrunk (epochs, steps, width, crop). The run must write a loadable checkpoint and ``metrics.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_carvana_fixture

from unet_course import cli
from unet_course.checkpoint import load_model

SMOKE = ["--epochs", "1", "--max-steps", "2", "--batch-size", "2", "--samples-per-epoch", "4",
         "--base-channels", "4", "--depth", "2", "--crop-size", "32", "--amp", "off",
         "--warmup-epochs", "0"]   # one epoch: no warm-up (a longer one is warned about)


def _train(recipe: str, data_dir: Path, out_dir: Path, *extra: str) -> dict:
    code = cli.main(["train", "--recipe", recipe, "--data-dir", str(data_dir), "--out-dir", str(out_dir),
                     *SMOKE, *extra])
    assert code == 0
    metrics = json.loads((out_dir / "metrics.json").read_text())
    model, meta = load_model(out_dir / "last.pt")
    assert model.config["base_channels"] == 4
    return {"metrics": metrics, "meta": meta}


def test_recipes_are_valid_configs():
    for name in ("drive", "isbi2012", "carvana"):
        assert name in cli.available_recipes()
        cfg = cli.config_from_args(cli.build_parser().parse_args(["train", "--recipe", name]))
        assert cfg.dataset == name


def test_drive_recipe_caps_training_at_its_budget_unless_told_otherwise():
    """The DRIVE recipe trains 40 epochs or as many as fit in 840 s (the 15-minute promise on slower CPUs);
    ``--time-budget none`` removes the cap and ``--epochs`` stays the upper bound.
    DRIVE 配方最多训练 840 秒；--time-budget none 取消上限
    """
    def cfg(*extra):
        return cli.config_from_args(cli.build_parser().parse_args(["train", "--recipe", "drive", *extra]))
    assert (cfg().epochs, cfg().time_budget, cfg().base_channels) == (40, 840.0, 16)
    assert (cfg("--epochs", "50", "--time-budget", "none").epochs, cfg("--time-budget", "none").time_budget) == (50, None)
    assert cfg("--time-budget", "600").time_budget == 600.0


@pytest.mark.slow
def test_drive_recipe_smoke(drive_root: Path, tmp_path: Path):
    run = _train("drive", drive_root, tmp_path / "drive")
    assert run["meta"]["mask_values"] == [0, 255]
    metrics = run["metrics"]
    assert metrics["config"]["dataset"] == "drive" and metrics["config"]["crop_size"] == 32
    assert {"data", "hardware", "wall_time_s", "best", "final"} <= set(metrics)


@pytest.mark.slow
def test_isbi_recipe_smoke(isbi_root: Path, tmp_path: Path):
    run = _train("isbi2012", isbi_root, tmp_path / "isbi")
    assert run["meta"]["mask_values"] == [255, 0]          # membrane (stored as 0) is class 1


def test_carvana_recipe_smoke_on_fixture(tmp_path: Path):
    root = write_carvana_fixture(tmp_path / "carvana")
    run = _train("carvana", root, tmp_path / "out", "--crop-size", "16")
    assert run["meta"]["mask_values"] == [0, 1]
