"""Resuming with changed settings: the saved run is the base, what the user changed wins (or is refused).
带修改的续训：以保存的运行为基础，用户的修改优先（或被拒绝）
"""

from __future__ import annotations

import logging

import pytest
import torch

from unet_course.checkpoint import load_checkpoint
from unet_course.cli import main
from unet_course.config import TrainConfig
from unet_course.training import fit, lr_factor

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(tmp_path, **kw) -> TrainConfig:
    values = dict(epochs=1, image_size=32, train_samples=8, val_samples=4, base_channels=4, depth=2, batch_size=4,
                  amp="off", progress="none", device="cpu", num_workers=0, out_dir=str(tmp_path / "run"), seed=0)
    values.update(kw)
    return TrainConfig(**values)


#: The flags of a tiny CLI run (all different from the TrainConfig defaults). 小规模命令行运行的参数
FLAGS = ["--image-size", "32", "--train-samples", "8", "--val-samples", "4", "--base-channels", "4", "--depth", "2",
         "--batch-size", "4", "--amp", "off", "--device", "cpu", "--num-workers", "0", "--progress", "none"]


def test_new_lr_is_used_after_resume(tmp_path, caplog):
    fit(tiny(tmp_path, lr=0.003))
    ckpt = tmp_path / "run" / "last.pt"
    with caplog.at_level(logging.INFO, logger="unet_course"):
        history = fit(tiny(tmp_path, lr=0.0003, epochs=2, resume=str(ckpt)))
    assert history.epoch == [1, 2] and history.lr == pytest.approx([0.003, 0.0003])   # 第 2 轮用新的学习率
    assert "resume: lr 0.003 -> 0.0003 (from the config)" in caplog.text
    assert "resume: epochs 1 -> 2 (from the config)" in caplog.text
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["optimizer_state"]["param_groups"][0]["lr"] == pytest.approx(0.0003)
    assert saved["train_config"]["lr"] == pytest.approx(0.0003)


def test_resume_updates_the_cosine_schedule(tmp_path):
    """A new lr becomes the scheduler's base LR, and more epochs stretch the cosine over the new length.
    新学习率成为调度器的基础学习率，更多的轮数把余弦曲线拉长到新的长度
    """
    fit(tiny(tmp_path, scheduler="cosine", lr=0.01, epochs=2))
    history = fit(tiny(tmp_path, scheduler="cosine", lr=0.001, epochs=4, resume=str(tmp_path / "run" / "last.pt")))
    expected = [0.01 * lr_factor(e, 2, "cosine") for e in range(2)] + [0.001 * lr_factor(e, 4, "cosine")
                                                                       for e in (2, 3)]
    assert history.lr == pytest.approx(expected)
    sched = load_checkpoint(tmp_path / "run" / "last.pt")["scheduler_state"]
    assert sched["base_lrs"] == pytest.approx([0.001]) and sched["last_epoch"] == 4


def test_weight_decay_momentum_and_plateau_settings_reach_the_restored_state(tmp_path):
    fit(tiny(tmp_path, optimizer="sgd", momentum=0.9, weight_decay=1e-4, plateau_patience=2))
    fit(tiny(tmp_path, optimizer="sgd", momentum=0.5, weight_decay=0.0, plateau_patience=7, plateau_factor=0.25,
             epochs=2, resume=str(tmp_path / "run" / "last.pt")))
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    group = ckpt["optimizer_state"]["param_groups"][0]
    assert group["momentum"] == 0.5 and group["weight_decay"] == 0.0 and group["nesterov"] is True
    assert ckpt["scheduler_state"]["patience"] == 7 and ckpt["scheduler_state"]["factor"] == 0.25


def test_cli_resume_alone_keeps_every_saved_setting(tmp_path, caplog):
    """Only the flags given with --resume override: the tiny run's non-default flags are not needed again.
    只有显式给出的参数覆盖保存的设置：原来的非默认参数不必重复
    """
    out = tmp_path / "run"
    assert main(["train", *FLAGS, "--epochs", "1", "--lr", "0.003", "--out-dir", str(out)]) == 0
    with caplog.at_level(logging.INFO, logger="unet_course"):
        assert main(["train", "--resume", str(out / "last.pt"), "--epochs", "2", "--lr", "0.0003"]) == 0
    lines = [line for line in caplog.messages if line.startswith("resume:")]
    assert lines == ["resume: epochs 1 -> 2 (from the command line)",
                     "resume: lr 0.003 -> 0.0003 (from the command line)"]
    ckpt = load_checkpoint(out / "last.pt")                              # 输出目录仍是检查点所在目录
    assert ckpt["epoch"] == 2 and ckpt["model_config"]["base_channels"] == 4
    assert ckpt["train_config"]["image_size"] == 32 and ckpt["history"]["lr"] == pytest.approx([0.003, 0.0003])


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One finished 1-epoch CLI run that the refusal tests try to resume. 供拒绝测试续训的一次命令行运行"""
    out = tmp_path_factory.mktemp("resume") / "run"
    torch.set_num_threads(1)
    assert main(["train", *FLAGS, "--epochs", "1", "--out-dir", str(out)]) == 0
    return out


def test_cli_resume_refuses_a_new_model_shape(cli_run, capsys):
    before = (cli_run / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", "last", "--out-dir", str(cli_run), "--base-channels", "16", "--depth", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: Cannot resume")
    assert "--base-channels 16 (the checkpoint has 4)" in err and "--depth 3 (the checkpoint has 2)" in err
    assert "the model shape cannot change on resume" in err
    assert "Drop --base-channels --depth" in err and "--out-dir NEW_DIR, without --resume" in err
    assert (cli_run / "last.pt").read_bytes() == before                      # 检查点原样保留


def test_cli_resume_from_a_run_folder_names_its_checkpoints(cli_run, capsys):
    """``--resume runs/x`` (the folder) said the checkpoint 'does not exist'. 以前传入运行目录时提示“不存在”"""
    capsys.readouterr()
    assert main(["train", "--resume", str(cli_run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert f"error: Cannot resume: {str(cli_run)!r} is a folder, not a checkpoint" in err
    assert f"--resume {str(cli_run / 'last.pt')!r} (.pt files there: best.pt, last.pt)" in err


@pytest.mark.parametrize("flags, named", [(["--optimizer", "sgd"], "the optimizer type"),
                                          (["--scheduler", "cosine"], "the scheduler type"),
                                          (["--mode", "binary"], "the loss mode"),
                                          (["--dataset", "synthetic-multiclass"],
                                           "the data set and its train/validation split"),
                                          (["--seed", "1"], "the data set and its train/validation split"),
                                          # a run trained on fold 2 went on on fold 1 in silence 以前可悄悄换折
                                          (["--folds", "2"], "the data set and its train/validation split"),
                                          (["--dataset-options", '{"task": "multiclass"}'],
                                           "the data set and its train/validation split")])
def test_cli_resume_refuses_every_fixed_setting(cli_run, capsys, flags, named):
    capsys.readouterr()
    assert main(["train", "--resume", str(cli_run / "last.pt"), *flags]) == 2
    err = capsys.readouterr().err
    shown = flags[1] if flags[0] != "--dataset-options" else "{'task': 'multiclass'}"   # the parsed value
    assert f"{flags[0]} {shown}" in err and f"{named} cannot change on resume" in err


def test_api_resume_counts_every_differing_field(cli_run):
    """fit(cfg): the defaults of a fresh TrainConfig differ from the tiny run, and each difference counts.
    fit(cfg) 中与保存值不同的每个字段都算修改（默认值也算）
    """
    with pytest.raises(Exception) as err:
        fit(TrainConfig(resume=str(cli_run / "last.pt"), out_dir=str(cli_run), device="cpu", progress="none"))
    assert "--base-channels 8 (the checkpoint has 4)" in str(err.value)


def test_resume_last_in_the_wrong_folder_points_to_the_runs_nearby(cli_run, capsys):
    """A recipe run writes to its own out_dir (runs/drive); `--resume last` in runs/train names what it found.
    配方运行写在自己的输出目录中；在别的目录找 last.pt 时，消息列出附近找到的检查点
    """
    other = cli_run.parent / "train"
    assert main(["train", "--resume", "last", "--out-dir", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"Found: {cli_run / 'last.pt'} (pass one of them, or its --out-dir)." in err
