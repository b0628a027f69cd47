"""Issue #14: prediction defaults from the checkpoint, flip TTA in one batch, automatic tiling, ISBI-2012 instance
metrics, dataset_options, and the bench sections (schema only; speed targets live in the benchmark).
第 14 号问题：检查点中的预测方式、TTA 合批、自动切片、ISBI-2012 分割指标、dataset_options 与基准测试字段
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from cli_helpers import predict_cli, toy_sample, write_checkpoint

from unet_course.bench import LEVERS, PEER_VARIANTS, PREDICT_VARIANTS, lean_loss, run_benchmark
from unet_course.bench.peer import load_peer
from unet_course.cli.evaluate import configure_parser as evaluate_parser
from unet_course.cli.options import add_train_config_arguments
from unet_course.config import TrainConfig
from unet_course.data import build_dataset, build_loaders, split_kwargs
from unet_course.errors import ConfigError
from unet_course.inference import estimate_forward_mb, evaluate_dataset, predict_probs, settings_from_meta
from unet_course.inference import memory as memory_module
from unet_course.inference.predict import TTA_FLIPS
from unet_course.losses import SegmentationLoss
from unet_course.metrics import instance_scores
from unet_course.model import UNet

META = {"normalization": {"mean": [0.5], "std": [0.2]}, "mask_values": [0, 255]}


# ---------------------------------------------------------------------------------------------- prediction defaults
def test_settings_from_meta_reads_prediction_defaults_and_survives_old_checkpoints():
    assert settings_from_meta(META)["tile"] is None and settings_from_meta(META)["tta"] is False   # 旧检查点
    cfg = TrainConfig(predict_tta=True, predict_tile=128).to_dict()
    new = settings_from_meta({**META, "train_config": cfg})
    assert new["tile"] == 128 and new["tta"] is True
    with pytest.raises(ConfigError, match="predict_tile"):
        TrainConfig(predict_tile=4)


def _flip_loop(model, x):
    total = 0
    for dims in TTA_FLIPS:
        p = predict_probs(model, x.flip(dims) if dims else x, amp="off", max_memory_mb=None)
        total = total + (p.flip(dims) if dims else p)
    return total / len(TTA_FLIPS)


def test_tta_in_one_batch_equals_four_passes():
    torch.manual_seed(0)
    model = UNet(1, 2, base_channels=4, depth=2).eval()
    x = torch.randn(1, 1, 21, 30)
    batched = predict_probs(model, x, tta=True, amp="off")
    assert torch.allclose(batched, _flip_loop(model, x), atol=1e-5)
    assert torch.allclose(batched.sum(1), torch.ones(1, 21, 30), atol=1e-5)


def test_memory_estimate_grows_with_size_batch_and_precision():
    model = UNet(1, 2, base_channels=8, depth=3)
    small, big = estimate_forward_mb(model, 1, 64, 64), estimate_forward_mb(model, 1, 128, 128)
    assert big > 3 * (small - estimate_forward_mb(model, 0, 64, 64))
    assert estimate_forward_mb(model, 4, 64, 64, 4) > estimate_forward_mb(model, 4, 64, 64, 2)
    assert estimate_forward_mb(torch.nn.Conv2d(1, 2, 1), 1, 64, 64) is None       # 非 U-Net：不估计


def test_whole_image_above_the_cap_is_tiled_and_said_once(monkeypatch):
    monkeypatch.setattr(memory_module, "_SAID", set())
    monkeypatch.setattr(memory_module, "AUTO_TILE", 64)
    torch.manual_seed(0)
    model = UNet(1, 2, base_channels=4, depth=2).eval()
    x = torch.randn(1, 1, 100, 90)
    cap = estimate_forward_mb(model, 1, 100, 90, 4) * 0.9                     # 整图放不下，64 的切片放得下
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiled = predict_probs(model, x, amp="off", max_memory_mb=cap)
        predict_probs(model, x, amp="off", max_memory_mb=cap)
    said = [w for w in caught if "tiles instead" in str(w.message)]
    assert len(said) == 1                                                      # 只提示一次
    whole = predict_probs(model, x, amp="off", max_memory_mb=None)
    assert tiled.shape == whole.shape and not torch.allclose(tiled, whole)    # 确实走了切片
    assert torch.allclose(tiled, predict_probs(model, x, tile=64, amp="off"), atol=1e-6)


def _checkpoint_with_defaults(tmp_path: Path, **fields) -> Path:
    torch.manual_seed(0)
    path = write_checkpoint(tmp_path / "m.pt", UNet(3, 2, base_channels=4, depth=2), [0, 255], in_channels=3)
    state = torch.load(path, weights_only=True)
    state["train_config"] = TrainConfig(**fields).to_dict()
    torch.save(state, path)
    return path


def test_predict_cli_uses_the_checkpoint_defaults_and_flags_override(tmp_path: Path, capsys):
    ckpt = _checkpoint_with_defaults(tmp_path, predict_tta=True, predict_tile=32)
    img, _ = toy_sample(40, 44, seed=1)
    tifffile.imwrite(tmp_path / "a.tif", img)
    assert predict_cli("-m", str(ckpt), "-i", str(tmp_path / "a.tif"), "-o", str(tmp_path / "o1")) == 0
    assert "32x32 tiles, flip TTA" in capsys.readouterr().out
    assert predict_cli("-m", str(ckpt), "-i", str(tmp_path / "a.tif"), "-o", str(tmp_path / "o2"), "--whole-image",
                       "--no-tta") == 0
    assert "whole image (tiles above 2048 MiB), no TTA" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="contradict"):
        predict_cli("-m", str(ckpt), "-i", str(tmp_path / "a.tif"), "-o", str(tmp_path / "o3"), "--whole-image",
                    "--tile", "32")


# ---------------------------------------------------------------------------------------------- ISBI metrics
def test_instance_scores_known_values():
    truth = np.zeros((6, 7), int)
    truth[:, 3] = 1                                             # 两个 6x3 的细胞，中间一列膜
    perfect = instance_scores(truth, truth)
    assert perfect["adapted_rand_error"] == 0.0 and perfect["variation_of_information"] == 0.0
    assert perfect["n_cells_true"] == 2 and perfect["n_cells_pred"] == 2
    merged = instance_scores(np.zeros_like(truth), truth)       # 预测没有膜：两个细胞合并
    n = 18                                                      # 每个细胞的像素数
    recall = (n - 1) / (2 * n - 1)                              # 成对计数：sum n_ij^2 - N 除以 sum b_j^2 - N
    assert merged["adapted_rand_error"] == pytest.approx(1 - 2 * recall / (1 + recall))
    assert merged["vi_merge"] == pytest.approx(1.0) and merged["vi_split"] == pytest.approx(0.0)   # 1 比特
    split = truth.copy()
    split[3, :3] = 1                                            # 左边细胞被一条假膜分成两块
    scores = instance_scores(split, truth)
    assert scores["vi_split"] > 0 and scores["vi_merge"] == pytest.approx(0.0) and scores["n_cells_pred"] == 3


def _tiny_isbi(root: Path) -> Path:
    rng = np.random.default_rng(0)
    labels = np.full((30, 24, 24), 255, np.uint8)
    labels[:, 11:13, :] = 0                                     # 一条水平膜
    labels[:, :, 11:13] = 0                                     # 一条垂直膜：4 个细胞
    volume = np.clip(200 - 0.6 * (255 - labels) + rng.normal(0, 5, labels.shape), 0, 255).astype(np.uint8)
    root.mkdir(parents=True)
    tifffile.imwrite(root / "train-volume.tif", volume)
    tifffile.imwrite(root / "train-labels.tif", labels)
    return root


def test_evaluate_reports_isbi_metrics_on_the_holdout_split(tmp_path: Path):
    root = _tiny_isbi(tmp_path / "isbi2012")
    ds = build_dataset("isbi2012", root=root, split="holdout", n_val=3, n_holdout=3)
    assert ds.names == ["slice_27", "slice_28", "slice_29"] and ds.instance_metrics
    torch.manual_seed(0)
    model = UNet(1, 2, base_channels=4, depth=2)
    meta = {"normalization": {"mean": [0.5], "std": [0.2]}, "mask_values": [255, 0], "preprocess": {}}
    result = evaluate_dataset(model, meta, ds, amp="off")
    for key in ("adapted_rand_error", "variation_of_information", "vi_split", "vi_merge", "pixel_error"):
        assert key in result["metrics"] and np.isfinite(result["metrics"][key]), key
    assert result["per_image"][0]["n_cells_true"] == 4
    synthetic = build_dataset("synthetic", split="val", n_samples=1, image_size=32)
    rgb = {**meta, "mask_values": [0, 255], "normalization": {"mean": [0.5] * 3, "std": [0.2] * 3}}
    plain = evaluate_dataset(UNet(3, 2, base_channels=4, depth=2), rgb, synthetic, amp="off")
    assert "adapted_rand_error" not in plain["metrics"]          # 只有声明了 instance_metrics 的数据集


def test_evaluate_holdout_of_a_model_trained_without_one_says_how_and_warns_on_changed_options(tmp_path, capsys):
    """A held-out split asked of a model trained without one used to advise "Pass a positive n_holdout", which
    evaluate then took from slices the model had trained on, without a word. 以前的建议会让模型在训练过的切片上评分
    """
    from unet_course import cli

    root = _tiny_isbi(tmp_path / "isbi2012")
    train = ["train", "--dataset", "isbi2012", "--data-dir", str(root), "--epochs", "1", "--max-steps", "1",
             "--base-channels", "4", "--depth", "2", "--batch-size", "2", "--crop-size", "32", "--amp", "off",
             "--device", "cpu", "--progress", "none"]
    assert cli.main([*train, "--out-dir", str(tmp_path / "plain")]) == 0
    checkpoint = str(tmp_path / "plain" / "best.pt")
    capsys.readouterr()
    assert cli.main(["evaluate", checkpoint, "--split", "holdout", "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        "error: The 'holdout' split of ISBI-2012 is empty (n_val=6, n_holdout=0). Train with a positive n_holdout in "
        "the dataset options, e.g. --dataset-options '{\"n_val\": 3, \"n_holdout\": 3}' (the 24/3/3 split), so "
        "those slices are never trained on; evaluate reads the split from the checkpoint.\n")
    options = ["--dataset-options", '{"n_val": 3, "n_holdout": 3}']
    assert cli.main(["evaluate", checkpoint, "--split", "holdout", "--device", "cpu", *options]) == 0
    assert (f'note: --dataset-options {{"n_val": 3, "n_holdout": 3}} differ from the options {checkpoint} was '
            "trained with ({}), so the 'holdout' images may include images it was trained on.") in \
        capsys.readouterr().err
    assert cli.main([*train, *options, "--out-dir", str(tmp_path / "held")]) == 0    # trained with the split 有留出集
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "held" / "best.pt"), "--split", "holdout", "--device", "cpu",
                     *options]) == 0
    assert "note:" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- dataset_options
def test_dataset_options_reach_the_dataset_and_unknown_keys_are_listed(tmp_path: Path):
    root = _tiny_isbi(tmp_path / "isbi2012")
    cfg = TrainConfig(dataset="isbi2012", data_dir=str(root), batch_size=2, dataset_options={"n_val": 3,
                                                                                             "n_holdout": 3})
    _, _, info = build_loaders(cfg)
    assert (info.n_train, info.n_val) == (24, 3)                 # 种子笔记的 24/3/3 划分
    with pytest.raises(ConfigError, match="accepts: .*n_holdout"):
        build_loaders(cfg.replace(dataset_options={"n_vall": 3}))
    with pytest.raises(ConfigError, match="crop_size"):
        build_loaders(cfg.replace(dataset_options={"crop_size": 64}))
    # A key with its own setting overrode it silently ({"seed": 1} moved the split whatever --data-seed said).
    # 与专门设置重复的键以前会静默覆盖它
    with pytest.raises(ConfigError, match="seed has its own setting, data_seed; train is chosen by the loaders"):
        build_loaders(cfg.replace(dataset_options={"seed": 1, "train": False}))
    # A value of the wrong type ended in a bare TypeError. 类型错误的取值以前直接抛出 TypeError
    with pytest.raises(ConfigError, match=r'could not use dataset_options \{"std": -1\}: .*not iterable'):
        build_loaders(cfg.replace(dataset_options={"std": -1}))
    kwargs = split_kwargs("isbi2012", "holdout", cfg.to_dict())
    assert kwargs["n_val"] == 3 and kwargs["n_holdout"] == 3
    args = evaluate_parser_args(["ck.pt", "--split", "holdout", "--dataset-options", '{"n_holdout": 2}'])
    assert args.split == "holdout" and args.dataset_options == {"n_holdout": 2}


def evaluate_parser_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate_parser(parser)
    return parser.parse_args(argv)


def test_dataset_options_flag_is_generated_for_train():
    parser = argparse.ArgumentParser()
    add_train_config_arguments(parser)
    args = parser.parse_args(["--dataset-options", '{"n_val": 3, "n_holdout": 3}'])
    assert args.dataset_options == {"n_val": 3, "n_holdout": 3}


# ---------------------------------------------------------------------------------------------- bench
def test_lean_loss_matches_the_segmentation_loss_with_ignored_pixels():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 9, 7), torch.randint(0, 3, (2, 9, 7))
    target[0, :2] = 255
    assert torch.isclose(lean_loss(logits, target), SegmentationLoss()(logits, target), atol=1e-5)


def test_bench_predict_and_levers_sections_have_their_fields():
    levers = [n for n in LEVERS if n != "compile"]              # torch.compile 需要数分钟，留给真正的基准测试
    report = run_benchmark(base_channels=4, depth=2, image_size=32, batch_size=2, steps=1, warmup=0, device="cpu",
                           train=False, infer=False, predict=True, predict_size=(40, 36), predict_tile=16,
                           levers=True, lever_names=levers)
    json.dumps(report)
    pred = report["predict"]
    assert set(pred["variants"]) == set(PREDICT_VARIANTS) and pred["size"] == [40, 36] and pred["tile"] == 16
    for res in pred["variants"].values():
        assert res["seconds_per_image"] > 0 and res["cpu_seconds_per_image"] >= 0 and len(res["times_s"]) == 1
    for key in ("tta_vs_whole", "tta_batch_speedup", "tiled_vs_whole"):
        assert pred[key] > 0, key
    lev = report["levers"]
    assert set(lev["levers"]) == set(levers) and lev["engine_vs_model_alone"] > 0
    assert lev["levers"]["model_alone"]["speedup_vs_model_alone"] == 1.0
    for res in lev["levers"].values():
        assert res["seconds_per_step"] > 0
    with pytest.raises(ConfigError, match="lever"):
        run_benchmark(levers=True, lever_names=["warp_drive"], device="cpu")


def _fake_peer(root):
    """A folder shaped like a Pytorch-UNet checkout: a ``unet`` package with a relative import, and a Dice loss."""
    (root / "unet").mkdir(parents=True)
    (root / "utils").mkdir()
    (root / "unet" / "__init__.py").write_text("from .unet_model import UNet\n")
    (root / "unet" / "unet_model.py").write_text(
        "from unet_course.model import UNet as _Base\n\n"
        "class UNet(_Base):\n"
        "    def __init__(self, n_channels, n_classes, bilinear=False):\n"
        "        super().__init__(n_channels, n_classes, 64, 4, bilinear)\n"
        "        self.n_classes = n_classes\n")
    (root / "utils" / "dice_score.py").write_text(
        "def dice_loss(input, target, multiclass=False):\n"
        "    inter = 2 * (input * target).sum()\n"
        "    return 1 - (inter + 1e-6) / (input.sum() + target.sum() + 1e-6)\n")
    return root


def test_bench_peer_section_times_three_variants_from_a_checkout(tmp_path, one_thread):
    peer = _fake_peer(tmp_path / "Pytorch-UNet")
    report = run_benchmark(image_size=32, batch_size=1, steps=1, warmup=0, device="cpu", train=False, infer=False,
                           peer_dir=str(peer))
    json.dumps(report)
    sec = report["peer"]
    assert set(sec["variants"]) == set(PEER_VARIANTS) and report["config"]["peer"] is True
    for res in sec["variants"].values():
        assert res["seconds_per_step"] > 0 and len(res["step_times_s"]) == 1
    # The ratio comes from the unrounded medians, the seconds shown are rounded to 0.1 ms, so the ratio recomputed
    # from them is only known inside that rounding (plus the ratio's own): with one cold step each, a ratio near 7
    # moves by more than 0.001 once the engine's step is under about 0.4 s.
    # 比值由未舍入的中位数算出，显示的秒数舍入到 0.1 毫秒，因此只能在舍入区间内核对
    peer_s, engine_s = sec["variants"]["peer"]["seconds_per_step"], sec["variants"]["engine"]["seconds_per_step"]
    half = 0.5e-4
    low, high = (peer_s - half) / (engine_s + half), (peer_s + half) / (engine_s - half)
    assert low - 5e-4 <= sec["engine_vs_peer"] <= high + 5e-4, (sec["engine_vs_peer"], peer_s, engine_s)
    # The ceiling: the machine's matmul rate in the step's precision, and each variant's share of it.
    # 上限：本机在该精度下的矩阵乘法速度，以及各变体所占的比例
    peak = report["matmul_peak"]
    assert peak["dtype"] == {"bf16": "bfloat16", "fp32": "float32"}[sec["amp"]] and peak["gflop_per_s"] > 0
    step_gflop = report["gflop_per_image"]["train_step"] * report["config"]["batch_size"]
    for res in sec["variants"].values():
        assert res["gflop_per_s"] == pytest.approx(step_gflop / res["seconds_per_step"], abs=0.051)
        assert res["fraction_of_matmul_peak"] == pytest.approx(res["gflop_per_s"] / peak["gflop_per_s"], abs=2e-3)
        assert 0 < res["fraction_of_matmul_peak"] < 1      # a 32x32 step is far from the kernel's steady rate
    # The classic U-Net has 23 convolution layers (2 + 4 x 2 down, 4 x (up-convolution + 2) up, 1 out); alone they
    # take less than the peer's whole step, which also runs batch norm, ReLU, the loss and the optimiser.
    # 经典 U-Net 有 23 个卷积层；单独运行它们比外部循环完整的一步更快
    convs = sec["convolutions_alone"]
    assert convs["layers"] == 23 and 0 < convs["seconds_per_step"]
    assert sec["ceiling_vs_peer"] == pytest.approx(sec["variants"]["peer"]["seconds_per_step"] /
                                                   convs["seconds_per_step"], rel=2e-3)
    assert sec["ceiling_vs_peer"] > 1


def test_bench_peer_refuses_a_folder_that_is_not_a_checkout_and_another_model(tmp_path):
    with pytest.raises(ConfigError, match=r"not a checkout of Pytorch-UNet.*git clone"):
        run_benchmark(device="cpu", train=False, infer=False, peer_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="fixed at base 64"):
        run_benchmark(base_channels=8, device="cpu", train=False, infer=False,
                      peer_dir=str(_fake_peer(tmp_path / "p")))


def test_bench_peer_names_the_folder_when_its_code_fails_to_import(tmp_path):
    peer = _fake_peer(tmp_path / "p")
    (peer / "unet" / "unet_model.py").write_text("raise RuntimeError('broken checkout')\n")
    with pytest.raises(ConfigError, match=r"Could not import the peer's code from .*broken checkout"):
        load_peer(peer)
    (peer / "unet" / "unet_model.py").write_text("class UNet:\n    def __init__(self, channels):\n        pass\n")
    with pytest.raises(ConfigError, match=r"could not be built: TypeError"):
        run_benchmark(image_size=32, batch_size=1, steps=1, warmup=0, device="cpu", train=False, infer=False,
                      peer_dir=str(peer))


def test_every_field_of_a_full_bench_report_is_documented(tmp_path, one_thread):
    """The module docstring of ``unet_course.bench`` is the JSON's documentation: every key of a report with all
    sections appears there (names of modes, variants and levers, and the contents of ``config`` and ``cpu``, are
    values rather than fields). 报告中的每个字段都在 unet_course.bench 的模块文档中说明"""
    import unet_course.bench as bench

    report = run_benchmark(image_size=32, batch_size=1, steps=1, warmup=0, device="cpu", modes=["fp32"],
                           predict=True, predict_size=(40, 40), predict_tile=32, levers=True,
                           lever_names=["engine", "model_alone"], peer_dir=str(_fake_peer(tmp_path / "p")))
    names = set(PEER_VARIANTS) | set(PREDICT_VARIANTS) | set(LEVERS) | {"fp32"}
    fields: set[str] = set()

    def walk(node):
        for key, value in node.items():
            if key not in names:
                fields.add(key)
            if isinstance(value, dict) and key not in ("config", "cpu"):
                walk(value)

    walk(report)
    table = bench.__doc__.split("The JSON report")[1]
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", table))
    undocumented = sorted(fields - words)
    assert not undocumented, undocumented
