"""Tests for ``unet-course bench`` on a tiny model. 在极小模型上测试基准测试"""

from __future__ import annotations

import argparse
import json

import pytest

from unet_course.bench import count_flops, default_mode, parse_mode, run_benchmark
from unet_course.cli.bench import configure_parser, run_cli
from unet_course.errors import ConfigError, OutputError
from unet_course.model.describe import conv_output_size


def tiny(**kw):
    args = {"base_channels": 4, "depth": 2, "image_size": 32, "batch_size": 2, "steps": 1, "warmup": 0,
            "device": "cpu"}
    args.update(kw)
    return run_benchmark(**args)


def test_tiny_benchmark_json_fields():
    report = tiny(modes=("fp32", "bf16+cl"))
    json.dumps(report)                                             # 必须可序列化为 JSON
    for key in ("config", "device", "torch_version", "cpu", "params", "gflop_per_image", "default_mode", "modes",
                "memory_note"):
        assert key in report, key
    assert report["device"] == "cpu" and report["default_mode"] == default_mode("cpu")
    assert isinstance(report["cpu"]["native_bf16"], bool)
    assert report["cpu"]["torch_threads"] >= 1 and report["cpu"]["logical_cores"] >= 1
    assert report["config"]["image_size"] == 32 and report["config"]["modes"] == ["fp32", "bf16+cl"]
    assert set(report["modes"]) == {"fp32", "bf16+cl"}
    for name, res in report["modes"].items():
        for phase in ("train", "infer"):
            assert res[phase]["img_per_s"] > 0
            assert res[phase]["peak_memory_mb"] >= 0
            assert len(res[phase]["step_times_s"]) == 1
            assert res[f"{phase}_speedup_vs_fp32"] > 0
        assert res["train"]["loss_finite"], name
    assert report["modes"]["fp32"]["train_speedup_vs_fp32"] == 1.0
    assert report["modes"]["bf16+cl"]["amp"] == "bf16" and report["modes"]["bf16+cl"]["channels_last"]
    assert report["modes"]["fp32"]["amp"] == "fp32"


def test_flops_match_hand_count_for_first_conv():
    # 第一层 3x3 卷积的乘加数：H*W*C_in*C_out*9，FLOPs 为其 2 倍
    flops = count_flops(base_channels=4, depth=2, image_size=32)
    first_conv = 2 * 32 * 32 * 3 * 4 * 9 / 1e9
    assert flops["forward"] > first_conv
    assert flops["train_step"] == pytest.approx(3 * flops["forward"], rel=0.2)  # 反向约为前向的两倍
    assert conv_output_size(32, kernel=3, padding=1) == 32


def test_sizes_batch_norm_cannot_train_on_are_refused_before_measuring(monkeypatch):
    """``bench --image-size 10`` (and 16 with batch 1) ended in torch's bare ValueError from batch norm.
    以前这些尺寸会以批归一化的 ValueError 直接崩溃
    """
    monkeypatch.setattr("unet_course.bench._bench_mode", _refuse_to_measure)
    with pytest.raises(ConfigError, match=r"image_size 10 is smaller than 16 pixels"):
        run_benchmark(base_channels=4, depth=4, image_size=10, batch_size=2, modes=("fp32",))
    with pytest.raises(ConfigError, match=r"batch_size 1 with image_size 16 leaves one value per channel"):
        run_benchmark(base_channels=4, depth=4, image_size=16, batch_size=1, modes=("fp32",))
    # FLOPs are counted on two images, so a 1x1 bottom counts too; per image, as before 按每张图像计
    one, two = count_flops(4, 4, 16), count_flops(4, 4, 32)
    assert 3.9 < two["forward"] / one["forward"] < 4.1


def _refuse_to_measure(*args, **kwargs):
    raise AssertionError("the bench measured before refusing its sizes")


def test_infer_only_and_skipped_mode():
    report = tiny(modes=("fp32", "fp16"), train=False)
    assert "train" not in report["modes"]["fp32"] and "infer" in report["modes"]["fp32"]
    assert "skipped" in report["modes"]["fp16"]                    # CPU 上不支持 fp16
    with pytest.raises(ConfigError, match="Unknown precision"):
        tiny(modes=("fp64",))
    with pytest.raises(ConfigError, match="flag"):
        tiny(modes=("fp32+fast",))
    with pytest.raises(ConfigError, match="Nothing to measure"):
        tiny(train=False, infer=False)
    with pytest.raises(ConfigError, match="predict_tile 8 is smaller than 16 pixels"):
        run_benchmark(depth=4, predict=True, predict_tile=8, modes=("fp32",))   # refused before anything is timed


def test_parse_and_default_mode():
    assert parse_mode("bf16+cl") == ("bf16", True, False)
    assert parse_mode("fp32") == ("off", False, False)
    assert parse_mode("fp16+ckpt") == ("fp16", False, True)



def test_default_mode_follows_the_cpu(monkeypatch):
    import unet_course.precision as precision

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert default_mode("cpu") == "bf16+cl"                       # AVX-512-BF16 / AMX
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert default_mode("cpu") == "fp32"                          # 仅 AVX2：fp32、NCHW 更快
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(precision.torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert default_mode("cuda") == "fp16+cl"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unet-course bench")
    configure_parser(parser)
    return parser


def test_cli_help_lists_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--base-channels", "--depth", "--image-size", "--batch-size", "--steps", "--warmup", "--modes",
                 "--device", "--output", "--no-infer", "--no-train"):
        assert flag in text, flag


def test_cli_run_writes_output(tmp_path, capsys):
    out = tmp_path / "sub" / "bench.json"
    args = _parser().parse_args(["--base-channels", "4", "--depth", "2", "--image-size", "32", "--steps", "1",
                                 "--warmup", "0", "--modes", "fp32+cl", "--device", "cpu", "--no-train",
                                 "--output", str(out)])
    assert args.train is False and args.infer is True
    assert run_cli(args) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed["config"] == saved["config"]
    assert list(saved["modes"]) == ["fp32+cl"] and "infer" in saved["modes"]["fp32+cl"]
    assert saved["modes"]["fp32+cl"]["infer_speedup_vs_fp32"] is None   # 本次未测 fp32
    assert run_cli(args) == 0                                # its own earlier report is replaced
    other = tmp_path / "notes.json"
    other.write_text('{"mine": 1}')
    args.output = str(other)                                 # a file bench did not write is refused and kept
    with pytest.raises(OutputError, match="is an existing file that this command did not write"):
        run_cli(args)
    assert other.read_text() == '{"mine": 1}'
