"""The ``unet-course`` command line: help everywhere, config layering, train -> evaluate, clear errors.
命令行：每个子命令都有帮助、配置叠加、训练后评估、清晰的错误
"""

from __future__ import annotations

import json

import pytest
from cli_helpers import toy_sample
from PIL import Image

from unet_course import cli
from unet_course.checkpoint import load_checkpoint
from unet_course.cli import options
from unet_course.config import TrainConfig
from unet_course.errors import ConfigError

TINY = ["--image-size", "32", "--train-samples", "8", "--val-samples", "4", "--base-channels", "4", "--depth", "2",
        "--batch-size", "4", "--amp", "off", "--device", "cpu", "--progress", "none"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["bench"], ["inspect"], ["course"]])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: unet-course" in out
    if command == ["train"]:
        assert "--batch-size" in out and "--resume" in out and "--recipe" in out and "--wandb-mode" in out


def test_every_train_config_field_is_a_flag(capsys):
    """Each field is a flag, with its metadata help text and its choices. 每个字段都是带帮助与选项的参数"""
    import dataclasses

    from unet_course.config import OPTIMIZERS, TrainConfig

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    missing = [f.name for f in dataclasses.fields(TrainConfig) if "--" + f.name.replace("_", "-") not in text]
    assert not missing
    assert "{" + ",".join(OPTIMIZERS) + "}" in text                   # 选项来自 config.py
    assert "trade compute for memory" in text                          # 帮助来自字段 metadata


def test_flag_types_come_from_the_field_types(capsys):
    args = cli.build_parser().parse_args(["train", "--crop-size", "none", "--num-workers", "auto", "--lr", "1e-3",
                                          "--channels-last", "--extras", '{"a": 1}', "--max-steps", "3"])
    assert args.crop_size is None and args.num_workers == "auto" and args.lr == 1e-3
    assert args.channels_last is True and args.extras == {"a": 1} and args.max_steps == 3
    assert cli.build_parser().parse_args(["train", "--num-workers", "2"]).num_workers == 2


def test_evaluate_and_predict_share_the_inference_flags():
    parser = cli.build_parser()
    shared = ["--tile", "32", "--overlap", "0.5", "--tta", "--threshold", "0.4", "--blend", "linear",
              "--tile-batch", "2", "--amp", "off", "--scale", "0.5", "--device", "cpu"]
    evaluate = parser.parse_args(["evaluate", "ckpt.pt", *shared])
    predict = parser.parse_args(["predict", "-m", "ckpt.pt", "-i", "x.png", *shared])
    for args in (evaluate, predict):
        assert (args.tile, args.overlap, args.tta, args.threshold, args.blend, args.tile_batch, args.amp,
                args.scale, args.device) == (32, 0.5, True, 0.4, "linear", 2, "off", 0.5, "cpu")
    for command in (["evaluate", "c.pt"], ["inspect", "drive"], ["train"]):
        assert parser.parse_args([*command, "--data-root", "/data"]).data_root == "/data"


def test_config_layering(tmp_path, monkeypatch, capsys):
    recipes = tmp_path / "pkg" / "recipes"
    recipes.mkdir(parents=True)
    (recipes / "demo.json").write_text(json.dumps({"description": "a test recipe", "epochs": 9, "lr": 0.1,
                                                   "batch_size": 2}))
    monkeypatch.setattr(options.importlib.resources, "files", lambda package: tmp_path / "pkg")
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"lr": 0.05, "depth": 3}))
    code = cli.main(["train", "--recipe", "demo", "--config", str(config), "--lr", "0.01", "--no-augment",
                     "--grad-clip", "none", "--class-weights", "1", "2", "--print-config"])
    assert code == 0
    cfg = json.loads(capsys.readouterr().out)
    # 默认值 < 配方 < 配置文件 < 命令行参数
    assert cfg["epochs"] == 9 and cfg["batch_size"] == 2           # 来自配方
    assert cfg["depth"] == 3                                        # 来自配置文件
    assert cfg["lr"] == 0.01                                        # 命令行参数优先
    assert cfg["augment"] is False and cfg["grad_clip"] is None and cfg["class_weights"] == [1.0, 2.0]
    assert cli.available_recipes() == ["demo"]
    with pytest.raises(ConfigError, match="Unknown recipe 'nope'; available recipes: demo"):
        cli.load_recipe("nope")


def test_config_file_with_a_byte_order_mark_or_a_recipe_key(tmp_path, capsys):
    """A config saved by Windows Notepad starts with a UTF-8 BOM and was refused as invalid JSON; a ``"recipe"``
    key got only the list of every field. 带 BOM 的配置文件以前被拒绝；"recipe" 键只得到全部字段的列表"""
    config = tmp_path / "notepad.json"
    config.write_bytes(b"\xef\xbb\xbf" + json.dumps({"epochs": 3}).encode())
    assert cli.main(["train", "--config", str(config), "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 3
    assert TrainConfig.from_json(config).epochs == 3                   # the Python API reads it the same way
    config.write_text(json.dumps({"recipe": "drive", "epochs": 3}))
    assert cli.main(["train", "--config", str(config), "--print-config"]) == 2
    assert (f"names a recipe, which is not a TrainConfig field; give it on the command line (--recipe drive "
            f"--config {config})") in capsys.readouterr().err


def test_train_then_evaluate_round_trip(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--epochs", "2", "--out-dir", str(out)]) == 0
    assert "best val Dice" in capsys.readouterr().out
    best = load_checkpoint(out / "best.pt")
    assert cli.main(["evaluate", str(out / "best.pt"), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)                               # stdout 只有 JSON
    assert result["split"] == "val" and result["n_images"] == 4
    assert result["metrics"]["dice"] == pytest.approx(best["best_metric"], abs=1e-3)
    assert "pixel_accuracy" in captured.err and "structure" in captured.err   # 表格写到 stderr
    report = tmp_path / "metrics.json"
    assert cli.main(["evaluate", str(out / "best.pt"), "--device", "cpu", "-o", str(report)]) == 0
    assert json.loads(report.read_text())["metrics"]["dice"] == result["metrics"]["dice"]
    assert cli.main(["evaluate", str(out / "best.pt"), "--device", "cpu", "-o", str(report)]) == 0  # its own
    # -o onto a file evaluate did not write (the checkpoint, the run's metrics.json) is refused, both kept
    kept = {name: (out / name).read_bytes() for name in ("best.pt", "metrics.json")}
    for name in kept:
        assert cli.main(["evaluate", str(out / "best.pt"), "--device", "cpu", "-o", str(out / name)]) == 2
        assert "is an existing file that this command did not write" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in kept} == kept
    # 续训到第 3 轮
    assert cli.main(["train", *TINY, "--epochs", "3", "--out-dir", str(out), "--resume", "last"]) == 0
    assert load_checkpoint(out / "last.pt")["epoch"] == 3


def test_user_errors_exit_2_without_traceback(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.pt" in err and "does not exist" in err
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"optimizer": "adagrad"}))
    assert cli.main(["train", "--config", str(config)]) == 2
    assert "Unknown optimizer 'adagrad'; choose one of: adam, adamw, rmsprop, sgd" in capsys.readouterr().err
    config.write_text(json.dumps({"epochz": 3}))
    assert cli.main(["train", "--config", str(config)]) == 2
    assert "epochz" in capsys.readouterr().err


def test_wrong_arguments_are_argparse_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--optimizer", "adagrad"])
    assert exc.value.code == 2
    assert "invalid choice: 'adagrad'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--epochs", "many"])


def test_keyboard_interrupt_message_fits_the_command(monkeypatch, capsys, tmp_path):
    """Every command used to answer Ctrl-C with train's resume advice. 以前每个命令被中断时都给出训练的续训建议"""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("unet_course.cli.train.fit", interrupted)        # Ctrl-C during set-up 准备阶段被中断
    assert cli.main(["train", *TINY]) == 130
    err = capsys.readouterr().err
    assert "interrupted outside the epochs" in err and "--resume last" in err
    monkeypatch.setattr("unet_course.cli.evaluate.load_model", interrupted)
    assert cli.main(["evaluate", str(tmp_path / "model.pt")]) == 130
    err = capsys.readouterr().err
    assert err == "\ninterrupted: nothing was written (-o/--output is written only when scoring ends).\n"
    monkeypatch.setattr("unet_course.cli.course.run_course", interrupted)
    assert cli.main(["course", "--out-dir", str(tmp_path / "course")]) == 130
    assert "the notebooks already run are saved in the run folder" in capsys.readouterr().err


def test_inspect_names_a_missing_path_as_a_path(tmp_path, capsys):
    """A missing folder was reported as an unknown data set name. 不存在的目录以前被当作未知的数据集名"""
    missing = tmp_path / "masks"
    assert cli.main(["inspect", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"error: {str(missing)!r} does not exist. inspect takes a folder or file of masks, or a data set name "
        "(synthetic, synthetic-multiclass, drive, isbi2012, carvana, folder).\n")
    assert cli.main(["inspect", "drivee"]) == 2                        # a name stays a name 名称仍按名称处理
    assert "'drivee' is neither a file or folder here nor a data set name" in (err := capsys.readouterr().err)
    assert "Did you mean 'drive'?" in err                               # it said only "Unknown dataset 'drivee'"


def test_inspect_reads_a_zip_of_masks_as_carvana_ships_them(tmp_path, capsys):
    """``inspect train_masks.zip`` said the zip was a corrupt image to re-download. zip 以前被当作损坏的图像"""
    import zipfile

    from conftest import write_carvana_fixture

    root = write_carvana_fixture(tmp_path / "carvana", n=3)
    archive = tmp_path / "train_masks.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for mask in sorted((root / "train_masks").iterdir()):
            zf.write(mask, f"train_masks/{mask.name}")
    assert cli.main(["inspect", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "Masks scanned: 3" in out and "      1      1" in out           # Carvana's 0/1 values, as class 0 and 1
    (tmp_path / "empty.zip").write_bytes(b"not a zip")
    assert cli.main(["inspect", str(tmp_path / "empty.zip")]) == 2
    assert "Cannot open" in capsys.readouterr().err


def test_inspect_synthetic(capsys):
    assert cli.main(["inspect", "synthetic", "--max-files", "3"]) == 0
    out = capsys.readouterr().out
    assert "Masks scanned: 3" in out and "255" in out


def test_a_relative_data_folder_from_the_checkpoint_is_explained_elsewhere(tmp_path, monkeypatch, capsys):
    """evaluate or ``train --resume`` run from another folder said only "Images folder 'data/images' does not
    exist". 在其他目录中评估或续训时，检查点记录的相对数据目录以前只报"目录不存在"
    """
    work = tmp_path / "project"
    for sub in ("data/images", "data/masks"):
        (work / sub).mkdir(parents=True)
    for k in range(6):
        image, mask = toy_sample(32, 32, seed=k)
        Image.fromarray(image).save(work / "data" / "images" / f"c{k}.png")
        Image.fromarray(mask).save(work / "data" / "masks" / f"c{k}_mask.png")
    monkeypatch.chdir(work)
    tiny = ["--base-channels", "4", "--depth", "2", "--batch-size", "2", "--amp", "off", "--num-workers", "0",
            "--progress", "none"]
    assert cli.main(["train", "--dataset", "folder", "--data-dir", "data", "--epochs", "1", *tiny,
                     "--out-dir", str(tmp_path / "run")]) == 0
    monkeypatch.chdir(tmp_path)                                      # elsewhere: 'data' is not here
    checkpoint = str(tmp_path / "run" / "last.pt")
    for argv in (["evaluate", checkpoint], ["train", "--resume", checkpoint, "--epochs", "2"]):
        capsys.readouterr()
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "The data folder 'data' recorded in the checkpoint" in err and "relative to the folder training" in err
        assert "--data-dir" in err
    data = str(work / "data")
    assert cli.main(["evaluate", checkpoint, "--data-dir", data]) == 0                     # the fix it names
    assert cli.main(["train", "--resume", checkpoint, "--epochs", "2", "--data-dir", data]) == 0
