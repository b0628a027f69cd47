"""k-fold cross-validation: disjoint folds that cover every item once, and `unet-course cv` end to end.
k 折交叉验证：各折互不相交且每个样本恰好验证一次；以及 unet-course cv 的端到端测试
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import toy_sample
from PIL import Image

from unet_course.checkpoint import load_checkpoint
from unet_course.cli import main
from unet_course.cli.cv import _fold_dataset
from unet_course.config import TrainConfig
from unet_course.data import build_dataset, build_loaders, split_indices, split_kwargs
from unet_course.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n,k", [(20, 5), (7, 3), (4, 4)])
def test_folds_are_disjoint_and_cover_every_item_once(n: int, k: int) -> None:
    seen = []
    for fold in range(k):
        train, val = split_indices(n, 0.0, seed=3, folds=k, fold=fold)
        assert set(train).isdisjoint(val) and sorted(train + val) == list(range(n))
        seen += val
    assert sorted(seen) == list(range(n))
    assert split_indices(n, 0.0, seed=3, folds=k, fold=0) == split_indices(n, 0.5, seed=3, folds=k, fold=0)


def test_bad_fold_settings_are_refused_clearly() -> None:
    with pytest.raises(ConfigError, match="fold=5 must be in 0 .. 4"):
        split_indices(20, 0.0, folds=5, fold=5)
    # The message once ended "or 0 for no cross-validation", which `cv` refuses. 曾建议 cv 不接受的 0
    with pytest.raises(ConfigError, match=r"^folds=30 needs 2 <= folds <= 20 .*: give at most 20 folds\.$"):
        split_indices(20, 0.0, folds=30)
    with pytest.raises(ConfigError, match="folds=1, fold=0"):
        TrainConfig(folds=1)



def test_folds_on_a_data_set_without_a_k_fold_split_are_refused_before_training(tmp_path: Path, capsys) -> None:
    # synthetic data used to train fold 0 on its own split, ignoring folds, and fail only when scoring it
    # 合成数据过去会忽略 folds 训练第 0 折，到评分时才失败
    out = tmp_path / "cv"
    assert main(["cv", "--dataset", "synthetic", "--folds", "2", "--epochs", "1", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Dataset 'synthetic' has no k-fold split, so folds=2 cannot be used" in err and "drive" in err
    assert not list(out.rglob("*.pt"))                                  # nothing was trained
    with pytest.raises(ConfigError, match="'isbi2012' has no k-fold split"):
        build_loaders(TrainConfig(dataset="isbi2012", folds=5, fold=1))

def _folder(root: Path, n: int = 6, suffix: str = "_mask") -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(n):
        img, mask = toy_sample(32, 32, seed=k)
        Image.fromarray(img).save(root / "images" / f"case_{k}.png")
        Image.fromarray(mask).save(root / "masks" / f"case_{k}{suffix}.png")
    return root


def test_folder_dataset_takes_the_fold(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    vals = [build_dataset("folder", root=root, split="val", folds=3, fold=f).names for f in range(3)]
    assert sorted(sum(vals, [])) == [f"case_{k}" for k in range(6)]


def test_data_seed_keeps_the_folds_while_seed_changes_the_training(tmp_path: Path) -> None:
    """``--seed 1 --data-seed 0`` validates on the folds of ``--seed 0`` (run-to-run noise on the same folds).
    固定 data_seed 时，改变 seed 不会改变各折的划分"""
    root = _folder(tmp_path / "data", n=9)

    def fold_names(**seeds) -> tuple[list[str], list[str], list[str]]:
        cfg = TrainConfig(dataset="folder", data_dir=str(root), folds=3, fold=1, crop_size=16, batch_size=2,
                          num_workers=0, **seeds)
        train_loader, val_loader, _ = build_loaders(cfg)
        return train_loader.dataset.names, val_loader.dataset.names, _fold_dataset(cfg).names

    base = fold_names(seed=0)
    assert base[1] == base[2] and set(base[0]).isdisjoint(base[1])   # cv scores the fold it validated on
    assert fold_names(seed=1, data_seed=0) == base                    # same folds, other training draws
    moved = [fold_names(seed=s) for s in range(1, 6)]
    assert any(m[1] != base[1] for m in moved)                        # without it, the seed moves the folds
    assert fold_names(seed=0, data_seed=1) == moved[0]                # data_seed alone decides the split
    checkpoint_cfg = TrainConfig(seed=1, data_seed=0).to_dict()       # evaluate rebuilds the same split
    assert split_kwargs("folder", "val", checkpoint_cfg)["seed"] == 0
    assert split_kwargs("folder", "val", TrainConfig(seed=3).to_dict())["seed"] == 3
    for bad in ({"seed": -1}, {"data_seed": -2}):
        with pytest.raises(ConfigError, match=f"{next(iter(bad))} must be a whole number >= 0"):
            TrainConfig(**bad)


def _tiny_cv(root: Path, out: Path, *extra: str) -> list[str]:
    """``unet-course cv`` arguments: 2 folds of a tiny model for one epoch on the folder ``root``. 微型交叉验证参数"""
    return ["cv", "--dataset", "folder", "--data-dir", str(root), "--folds", "2", "--epochs", "1",
            "--batch-size", "2", "--base-channels", "4", "--depth", "2", "--num-workers", "0", "--amp", "off",
            "--progress", "none", "--out-dir", str(out), *extra]


def test_cv_command_trains_each_fold_scores_thresholds_and_resumes(tmp_path: Path, capsys) -> None:
    root = _folder(tmp_path / "data")
    out = tmp_path / "cv"
    argv = _tiny_cv(root, out, "--thresholds", "0.4,0.5,0.6")
    assert main(argv) == 0
    summary = json.loads((out / "cv.json").read_text())
    assert summary["n_folds"] == 2 and [f["fold"] for f in summary["folds"]] == [0, 1]
    assert [row["threshold"] for row in summary["by_threshold"]] == [0.4, 0.5, 0.6]
    for fold in summary["folds"]:
        assert fold["n_images"] == 3 and all(0.0 <= f <= 1.0 for f in fold["f1"])
        assert fold["f1_at_recipe_threshold"] == fold["f1"][1]           # recipe threshold 0.5
        assert fold["f1_tta_at_recipe_threshold"] == fold["f1_tta"][1]   # the flip-TTA pass, same threshold
        assert len(fold["f1_tta"]) == 3 and all(0.0 <= f <= 1.0 for f in fold["f1_tta"])
    assert {"f1_tta_mean", "f1_tta_sd"} <= set(summary["by_threshold"][0])
    assert "2-fold CV: F1" in capsys.readouterr().out
    stamp = (out / "fold_0" / "last.pt").stat().st_mtime_ns
    assert main(argv) == 0                                              # finished folds are not trained again
    assert (out / "fold_0" / "last.pt").stat().st_mtime_ns == stamp     # 已完成的折不会重新训练
    other = tmp_path / "mine"
    other.mkdir()
    (other / "cv.json").write_text('{"mine": 1}')                       # a cv.json no cv run wrote: kept
    assert main(_tiny_cv(root, other)) == 2
    assert "no cv run wrote it" in capsys.readouterr().err and (other / "cv.json").read_text() == '{"mine": 1}'


def test_cv_refuses_data_with_more_than_two_classes_before_training(tmp_path: Path, capsys) -> None:
    # it trained fold 0 and then failed in the threshold sweep ("needs a two-class model") 过去先训练第 0 折才失败
    root = _folder(tmp_path / "data")
    for mask_file in (root / "masks").iterdir():
        mask = np.array(Image.open(mask_file))
        mask[:4] = 7                                                    # a third class in every mask 每个掩码都有第三类
        Image.fromarray(mask).save(mask_file)
    out = tmp_path / "cv"
    assert main(_tiny_cv(root, out)) == 2
    err = capsys.readouterr().err
    assert "needs two classes" in err and "has 3" in err and "unet-course evaluate" in err
    assert not out.exists()                                             # nothing trained, nothing written


def test_cv_refuses_finished_folds_trained_with_other_settings(tmp_path: Path, capsys) -> None:
    """A rerun into the same --out-dir with another --lr or --folds used to report the old folds as its own.
    以前在同一输出目录中换用其他 --lr 或 --folds 重跑时，会把旧的折结果当作本次结果
    """
    root = _folder(tmp_path / "data")
    out = tmp_path / "cv"
    assert main(_tiny_cv(root, out)) == 0
    report = (out / "cv.json").read_bytes()
    stamp = (out / "fold_0" / "last.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(_tiny_cv(root, out, "--lr", "0.01")) == 2
    assert capsys.readouterr().err == (
        f"error: {str(out / 'fold_0')!r} holds fold 0 of an earlier cv run with other settings (lr 0.003 there, "
        "0.01 now), and cv would report its result as this run's. Use another --out-dir for these settings, or "
        "delete the fold_* folders there to train them again.\n")
    assert main([*_tiny_cv(root, out), "--folds", "3"]) == 2                # the later --folds wins 后给出的优先
    assert "(folds 2 there, 3 now)" in capsys.readouterr().err
    assert (out / "cv.json").read_bytes() == report                     # the earlier report is kept 原报告保留
    assert main(_tiny_cv(root, out, "--progress", "line")) == 0         # plumbing may differ 无关设置可以不同
    # a fold.json from before it held the settings: they are read from the fold's last.pt 旧版 fold.json
    fold_json = out / "fold_0" / "fold.json"
    fold_json.write_text(json.dumps({k: v for k, v in json.loads(fold_json.read_text()).items() if k != "config"}))
    assert main(_tiny_cv(root, out, "--lr", "0.01")) == 2
    assert "fold_0' holds fold 0" in capsys.readouterr().err             # (fold 1 would be refused otherwise)
    assert main(_tiny_cv(root, out)) == 0                               # unset settings resolved there pass
    assert (out / "fold_0" / "last.pt").stat().st_mtime_ns == stamp     # nothing was trained again 没有重新训练


def test_cv_refuses_the_train_flags_it_cannot_use(tmp_path: Path, capsys) -> None:
    """``cv --fold 1`` trained every fold anyway, in silence; ``cv --resume`` gave train's resume advice;
    ``cv --folds 0`` ran 5 folds. cv --fold 以前被悄悄忽略；cv --resume 给出的是 train 的续训建议
    """
    out = tmp_path / "cv"
    assert main(_tiny_cv(tmp_path / "data", out, "--fold", "1")) == 2
    assert capsys.readouterr().err == ("error: cv trains every fold in turn, so --fold is not used; train one fold "
                                       "with `unet-course train --folds K --fold I`.\n")
    assert main(_tiny_cv(tmp_path / "data", out, "--resume", "last")) == 2
    assert capsys.readouterr().err == ("error: cv has no --resume: it reuses every finished fold in its --out-dir, "
                                       "so run the same command again to continue.\n")
    argv = _tiny_cv(tmp_path / "data", out)
    argv[argv.index("--folds") + 1] = "0"                               # train's "no cross-validation"
    assert main(argv) == 2                                              # ran 5 folds before 以前静默地跑 5 折
    assert "error: cv needs at least 2 folds, and --folds 0" in capsys.readouterr().err
    assert not out.exists()


def test_cv_scores_each_fold_with_the_dataset_options_it_trained_with(tmp_path: Path) -> None:
    """Masks named ``*_seg.png``: training and the fold's scoring both take ``mask_suffix`` from the options.
    掩码后缀由 dataset_options 给出时，训练与评分都使用它"""
    root = _folder(tmp_path / "data", suffix="_seg")
    out = tmp_path / "cv"
    assert main(_tiny_cv(root, out, "--dataset-options", '{"mask_suffix": "_seg"}')) == 0
    summary = json.loads((out / "cv.json").read_text())
    assert [f["n_images"] for f in summary["folds"]] == [3, 3]
    cfg = TrainConfig(dataset="folder", data_dir=str(root), folds=2, fold=1, dataset_options={"mask_suffix": "_seg"})
    _, val_loader, _ = build_loaders(cfg.replace(crop_size=16, batch_size=2, num_workers=0))
    assert _fold_dataset(cfg).names == val_loader.dataset.names       # the images it validated on


def test_evaluate_scores_a_fold_checkpoint_on_the_fold_it_validated_on(tmp_path: Path) -> None:
    """``evaluate fold_1/best.pt`` scored the ``val_fraction`` split instead of the fold (here 1 of the 6 images
    instead of the fold's 3), which can hold images the fold trained on. 以前 evaluate 忽略 k 折，评分可能混入训练图像"""
    root = _folder(tmp_path / "data")
    out = tmp_path / "cv"
    assert main(_tiny_cv(root, out)) == 0
    for fold in (0, 1):
        report = tmp_path / f"fold{fold}.json"
        assert main(["evaluate", str(out / f"fold_{fold}" / "best.pt"), "--split", "val", "-o", str(report)]) == 0
        scored = [row["name"] for row in json.loads(report.read_text())["per_image"]]
        fold_cfg = TrainConfig(dataset="folder", data_dir=str(root), folds=2, fold=fold)
        assert sorted(scored) == sorted(_fold_dataset(fold_cfg).names) and len(scored) == 3
        trained = build_dataset("folder", root=root, split="train", folds=2, fold=fold).names
        assert set(scored).isdisjoint(trained)                          # none of its training images 不含训练图像


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_cv_stopped_in_a_fold_says_what_is_kept_and_the_rerun_continues(tmp_path: Path, monkeypatch, capsys,
                                                                       stop: str) -> None:
    """A SIGTERM in a fold printed train's advice (``train --resume fold_1/last.pt``), which a later ``cv`` would
    not use, and exited 2; Ctrl-C said the same. 以前 cv 被停止时给出 train 的续训建议，而 cv 重跑并不会用它
    """
    import signal

    import unet_course.cli.cv as cv_module
    from unet_course.training import TrainingStopped

    real_fit, calls = cv_module.fit, []

    def stopped_in_fold_1(cfg, **kwargs):
        calls.append(cfg.fold)
        if cfg.fold == 1:
            if stop == "ctrl-c":
                raise KeyboardInterrupt
            raise TrainingStopped("Training was stopped by SIGTERM ...", signal.SIGTERM)
        return real_fit(cfg, **kwargs)

    root = _folder(tmp_path / "data")
    out = tmp_path / "cv"
    monkeypatch.setattr(cv_module, "fit", stopped_in_fold_1)
    assert main(_tiny_cv(root, out)) == (130 if stop == "ctrl-c" else 143)
    how = "Ctrl-C (SIGINT)" if stop == "ctrl-c" else "SIGTERM"
    assert capsys.readouterr().err == (
        f"error: cv was stopped by {how} in fold 1. Fold 0 is finished and kept (fold.json in each fold_* folder of "
        f"{str(out)!r}). Run the same cv command again: it reuses them and trains fold 1 from its start, then the "
        "rest.\n")
    assert (out / "fold_0" / "fold.json").is_file() and not (out / "cv.json").exists()
    monkeypatch.setattr(cv_module, "fit", real_fit)
    calls.clear()
    stamp = (out / "fold_0" / "last.pt").stat().st_mtime_ns
    assert main(_tiny_cv(root, out)) == 0                                  # as the message says 按消息重跑
    assert (out / "fold_0" / "last.pt").stat().st_mtime_ns == stamp and (out / "cv.json").is_file()


def test_cv_under_torchrun_trains_every_fold_data_parallel(tmp_path: Path):
    """Under torchrun, cv ended fold 0 by destroying the process group, and fold 1 failed to make a new one (gloo
    connection errors and a traceback on every rank). torchrun 下 cv 以前在第 1 折重建进程组时失败
    """
    root, out = _folder(tmp_path / "data", n=8), tmp_path / "cv"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNET_COURSE_QUIET": "1", "WANDB_MODE": "disabled",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "unet_course",
           *_tiny_cv(root, out, "--device", "cpu", "--max-steps", "2")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.count("fold 0: F1") == 1 and proc.stdout.count("fold 1: F1") == 1   # rank 0 prints
    summary = json.loads((out / "cv.json").read_text())
    assert summary["n_folds"] == 2 and [f["fold"] for f in summary["folds"]] == [0, 1]
    for k in (0, 1):
        assert load_checkpoint(out / f"fold_{k}" / "last.pt")["train_config"]["folds"] == 2
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=200)
    assert again.returncode == 0 and json.loads((out / "cv.json").read_text())["folds"] == summary["folds"]
