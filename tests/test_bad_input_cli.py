"""Bad input at the command line (issue #12 items 4, 7, 11, 14): clear messages, nothing lost or overwritten.
命令行的错误输入（问题 12 第 4、7、11、14 项）：消息清楚，输入不丢失、不被覆盖
"""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import rgb_checkpoint, toy_sample, write_checkpoint
from PIL import Image

from unet_course import cli
from unet_course.model import UNet


def _digest(folder: Path) -> dict[str, str]:
    """Name -> sha256 of every file in ``folder``. 目录中每个文件的哈希"""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _images(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        Image.fromarray(toy_sample(20, 24, seed=k)[0]).save(folder / name)
    return folder


def _boom(*args, **kwargs):
    raise AssertionError("the work started before the output was checked")


def _blocked(tmp_path: Path) -> Path:
    """A path below a regular file: never writable, even for root. 位于普通文件之下的路径，永远不可写"""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    return blocker / "out"


# ---------------------------------------------------------------------------------------------------------------
# Item 4: predict never overwrites 第 4 项：predict 不覆盖文件
# ---------------------------------------------------------------------------------------------------------------
def test_predict_refuses_the_input_folder_as_output(tmp_path, capsys):
    inputs = _images(tmp_path / "images", "x.png", "y.png")
    before = _digest(inputs)
    checkpoint = rgb_checkpoint(tmp_path)
    assert cli.main(["predict", "-m", str(checkpoint), "--input-dir", str(inputs), "-o", str(inputs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: -o/--output") and "is the folder of the input(s)" in err and "x.png" in err
    assert _digest(inputs) == before                                     # 输入原样保留，也没有新文件


def test_predict_refuses_two_inputs_with_the_same_stem(tmp_path, capsys):
    inputs = _images(tmp_path / "images", "x.png", "x.jpg")
    before = _digest(inputs)
    out = tmp_path / "masks"
    code = cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "--input-dir", str(inputs), "-o", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "x.jpg" in err and "x.png" in err and "would both write" in err and "-o/--output" in err
    assert not out.exists() and _digest(inputs) == before               # 拒绝发生在任何工作之前


def test_predict_input_dir_skips_hidden_files_as_the_data_sets_do(tmp_path, capsys):
    """macOS leaves ``._x.png`` (AppleDouble) beside ``x.png`` on other disks; the data sets skip hidden files,
    predict read it as an input and failed. 以前 predict 会读取 macOS 的 ._x.png 并报错"""
    inputs = _images(tmp_path / "images", "x.png")
    (inputs / "._x.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    out = tmp_path / "masks"
    assert cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "--input-dir", str(inputs), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x.png"]
    assert "._x.png" not in capsys.readouterr().err


def test_predict_refuses_two_inputs_whose_outputs_differ_only_in_case(tmp_path, capsys):
    """``X.PNG`` and ``x.png`` wrote ``X.png`` and ``x.png``: on macOS and Windows one file, so the second mask
    replaced the first. 仅大小写不同的输出在 macOS 与 Windows 上是同一个文件"""
    inputs = _images(tmp_path / "images", "x.png", "X.PNG")
    out = tmp_path / "masks"
    code = cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "--input-dir", str(inputs), "-o", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "'X.png' and 'x.png' are one file on macOS and Windows" in err and "would both write" in err
    assert not out.exists()


def test_predict_refuses_an_output_file_name_for_its_output_folder(tmp_path, capsys):
    """``-o mask.png`` made a folder called mask.png holding x.png. 以前 -o mask.png 会建出名为 mask.png 的目录"""
    inputs = _images(tmp_path / "images", "x.png")
    checkpoint = rgb_checkpoint(tmp_path)
    out = tmp_path / "mask.png"
    assert cli.main(["predict", "-m", str(checkpoint), "-i", str(inputs / "x.png"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "looks like a file name" in err and "mask.png/x.png" in err and f"{str(tmp_path / 'mask')!r}" in err
    assert not out.exists()
    out.mkdir()                                          # a folder that is already there is a folder: used
    assert cli.main(["predict", "-m", str(checkpoint), "-i", str(inputs / "x.png"), "-o", str(out)]) == 0
    assert (out / "x.png").is_file()


def test_predict_replaces_its_own_outputs_but_never_a_file_it_did_not_write(tmp_path, capsys):
    """``--input-dir data/images -o data/masks`` wrote the predictions over the label masks of the same names.
    以前输出目录中与输入同名的标签掩码会被预测结果覆盖
    """
    import tifffile

    inputs = _images(tmp_path / "data" / "images", "x.png", "y.png")
    tifffile.imwrite(inputs / "z.tif", np.random.default_rng(0).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8),
                     photometric="rgb")
    checkpoint = rgb_checkpoint(tmp_path)
    labels = tmp_path / "data" / "masks"
    labels.mkdir()
    (labels / "x.png").write_bytes((inputs / "x.png").read_bytes())      # a label named like its image
    before = (_digest(inputs), _digest(labels))
    args = ["predict", "-m", str(checkpoint), "--input-dir", str(inputs), "--viz", "--save-probs"]
    assert cli.main([*args, "-o", str(labels)]) == 2
    err = capsys.readouterr().err
    assert "already holds" in err and "masks/x.png'" in err and "did not write" in err and "another" in err
    assert (_digest(inputs), _digest(labels)) == before                  # refused before any work: nothing new
    out = tmp_path / "pred"
    assert cli.main([*args, "-o", str(out)]) == 0
    first = _digest(out)
    assert len(first) == 9                                               # mask, overlay, probs for 3 inputs
    assert cli.main([*args, "-o", str(out)]) == 0                        # a re-run replaces its own outputs
    assert set(_digest(out)) == set(first)
    capsys.readouterr()
    (out / "y_prob.npy").unlink()
    (out / "y.png").write_bytes((inputs / "y.png").read_bytes())         # now someone else's y.png
    np.save(out / "y_prob.npy", np.zeros(3))                             # and a .npy beside it
    foreign = {name: (out / name).read_bytes() for name in ("y.png", "y_prob.npy")}
    assert cli.main([*args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pred/y.png'" in err and "pred/y_prob.npy'" in err and "x.png" not in err
    assert {name: (out / name).read_bytes() for name in foreign} == foreign


def test_predict_on_a_full_disk_leaves_no_partial_mask(tmp_path, monkeypatch, capsys):
    inputs = _images(tmp_path / "images", "x.png")
    before = _digest(inputs)
    out = tmp_path / "masks"
    real_save = Image.Image.save

    def full_disk(self, fp, *args, **kwargs):
        if isinstance(fp, (str, Path)):                                  # 只让掩码写入失败
            return real_save(self, fp, *args, **kwargs)
        fp.write(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    assert cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "-i", str(inputs / "x.png"),
                     "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"the disk holding {str(out)!r} is full" in err and "free" in err and "x.png" in err
    assert list(out.iterdir()) == []                                     # 没有 0 字节文件，也没有临时文件
    assert _digest(inputs) == before


# ---------------------------------------------------------------------------------------------------------------
# Item 11: outputs are checked before the work 第 11 项：开始工作前检查输出
# ---------------------------------------------------------------------------------------------------------------
def test_evaluate_checks_its_output_before_loading_anything(tmp_path, capsys):
    code = cli.main(["evaluate", str(tmp_path / "missing.pt"), "-o", str(_blocked(tmp_path) / "m.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert "not writable" in err and "-o/--output" in err and "missing.pt" not in err   # 先于检查点报错


@pytest.mark.parametrize("command,target", [
    (["train", "--out-dir"], "unet_course.cli.train.fit"),
    (["bench", "--output"], "unet_course.cli.bench.run_benchmark"),
    (["course", "--out-dir"], "unet_course.cli.course.run_course"),
])
def test_train_bench_course_check_outputs_first(tmp_path, monkeypatch, capsys, command, target):
    monkeypatch.setattr(target, _boom)
    assert cli.main([*command, str(_blocked(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and command[-1] in err and str(tmp_path / "a_file") in err


def test_bench_checks_the_peer_folder_before_timing_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("unet_course.bench._bench_mode", _boom)
    assert cli.main(["bench", "--peer-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --peer-dir") and "nowhere" in err and "git clone" in err


def test_predict_points_a_folder_given_as_input_to_input_dir(tmp_path, monkeypatch, capsys):
    inputs = _images(tmp_path / "images", "x.png")
    monkeypatch.setattr("unet_course.cli.predict.load_model", _boom)
    code = cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "-i", str(inputs), "-o", str(tmp_path / "o")])
    assert code == 2
    assert capsys.readouterr().err == (f"error: -i/--input {inputs}: a folder, not an image file; predict every image "
                                       f"in it with --input-dir {inputs}.\n")


def test_predict_checks_its_output_before_loading_the_model(tmp_path, monkeypatch, capsys):
    inputs = _images(tmp_path / "images", "x.png")
    monkeypatch.setattr("unet_course.cli.predict.load_model", _boom)
    code = cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "-i", str(inputs / "x.png"),
                     "-o", str(_blocked(tmp_path))])
    assert code == 2
    err = capsys.readouterr().err
    assert "not writable" in err and "Choose another -o/--output" in err   # 第 14 项：写出真实的参数名
    assert "--out-dir" not in err


# ---------------------------------------------------------------------------------------------------------------
# Items 7 and 14: wrong types and values 第 7、14 项：错误的类型与取值
# ---------------------------------------------------------------------------------------------------------------
def test_evaluate_refuses_max_images_zero(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["evaluate", str(tmp_path / "best.pt"), "--max-images", "0"])
    assert exc.value.code == 2
    assert "--max-images: must be >= 1, got 0" in capsys.readouterr().err


def test_train_reports_a_wrong_type_and_a_non_finite_lr(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("unet_course.cli.train.fit", _boom)
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"epochs": "abc"}))
    assert cli.main(["train", "--config", str(config)]) == 2
    assert "'epochs' must be an integer, got 'abc' (str)" in capsys.readouterr().err
    assert cli.main(["train", "--lr", "inf"]) == 2
    assert "'lr' must be a finite number, got inf" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, message", [
    ("--scale", "5", "--scale must be in (0, 4], got 5.0"),
    ("--threshold", "1.5", "--threshold must be in (0, 1), got 1.5"),
    ("--threshold", "nan", "--threshold must be in (0, 1), got nan"),
    ("--overlap", "1", "--overlap must be in [0, 1), got 1.0"),      # no --tile: still refused, never ignored
    ("--max-memory-mb", "-1", "--max-memory-mb must be a number of MiB > 0, got -1.0"),
    ("--max-memory-mb", "nan", "--max-memory-mb must be a number of MiB > 0, got nan"),
])
def test_predict_refuses_a_bad_setting_before_loading_the_model(tmp_path, monkeypatch, capsys, flag, value, message):
    inputs = _images(tmp_path / "images", "x.png")
    monkeypatch.setattr("unet_course.cli.predict.load_model", _boom)
    out = tmp_path / "o"
    code = cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "-i", str(inputs / "x.png"),
                     "-o", str(out), flag, value])
    assert code == 2
    assert capsys.readouterr().err == f"error: {message}.\n"
    assert not out.exists()                                          # 出错时不留下空的输出目录


def test_predict_refuses_a_tile_smaller_than_the_model_can_halve(tmp_path, capsys):
    inputs = _images(tmp_path / "images", "x.png")
    out = tmp_path / "o"
    code = cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "-i", str(inputs / "x.png"), "-o", str(out),
                     "--tile", "3"])                                      # depth 2: at least 4 pixels
    assert code == 2
    assert capsys.readouterr().err == ("error: --tile 3 is smaller than 4 pixels, the least a depth-2 U-Net halves 2 "
                                       "times; give --tile 4 or more.\n")
    assert not out.exists()                                              # not even the output folder
    assert cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "-i", str(inputs / "x.png"), "-o", str(out),
                     "--tile", "4"]) == 0 and [p.name for p in out.iterdir()] == ["x.png"]


def test_predict_skips_an_unreadable_input_writes_the_others_and_lists_it(tmp_path, capsys):
    inputs = _images(tmp_path / "images", "a.png", "c.png")
    (inputs / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short by a copy")     # 损坏的输入
    before = _digest(inputs)
    out = tmp_path / "o"
    code = cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "--input-dir", str(inputs), "-o", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    bad = str(inputs / "b.png")
    assert f"skipped {bad}: " in err                                     # the reason, as it happened 当场给出原因
    assert err.splitlines()[-1] == (
        f"error: 1 of 3 input(s) could not be read and have no mask: {bad} (the reason is printed above each). "
        f"The other 2 mask(s) are in {str(out)!r}. Replace the file(s), then predict only them: -i {bad}")
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]   # the others are all written 其余都已写出
    assert _digest(inputs) == before


def test_predict_stopped_by_an_error_says_which_masks_it_kept(tmp_path, capsys):
    inputs = _images(tmp_path / "images", "a.png", "b.png")
    fov = tmp_path / "fov"
    fov.mkdir()
    Image.fromarray(np.full((20, 24), 255, np.uint8)).save(fov / "a_mask.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(fov / "b_mask.png")    # 尺寸不符
    out = tmp_path / "o"
    code = cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "--input-dir", str(inputs), "-o", str(out),
                     "--fov-dir", str(fov)])
    assert code == 2
    err = capsys.readouterr().err
    assert "10x10 but the image is 24x20" in err
    assert err.rstrip().endswith(f"(1 of 2 input(s) were predicted into {str(out)!r} before this one; their "
                                 "masks are kept.)")
    assert [p.name for p in out.iterdir()] == ["a.png"]


def test_predict_reads_a_file_given_twice_once(tmp_path, capsys):
    """Overlapping globs (``-i in/*.png in/x*.png``) gave the same file twice, which was refused as a name clash.
    重叠的通配符会把同一文件给两次，以前被当作重名而拒绝
    """
    inputs = _images(tmp_path / "images", "x.png", "y.png")
    out = tmp_path / "o"
    assert cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "-i", str(inputs / "x.png"),
                     str(inputs / "y.png"), str(inputs / "." / "x.png"), "-o", str(out)]) == 0
    assert "predicting 2 input(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["x.png", "y.png"]


def test_threshold_for_a_model_of_more_than_two_classes_is_refused(tmp_path, capsys):
    """Such a model labels by the arg-max, so ``--threshold`` used to be ignored in silence. 多类模型以前悄悄忽略阈值"""
    torch.manual_seed(0)
    three = write_checkpoint(tmp_path / "three.pt", UNet(3, 3, base_channels=4, depth=2), [0, 1, 2], in_channels=3)
    inputs = _images(tmp_path / "images", "x.png")
    out = tmp_path / "o"
    message = ("error: --threshold applies to two-class models; this checkpoint has 3 classes, whose labels are the "
               "most probable class. Leave --threshold out.\n")
    assert cli.main(["predict", "-m", str(three), "-i", str(inputs / "x.png"), "-o", str(out), "--threshold",
                     "0.3"]) == 2
    assert capsys.readouterr().err == message and not out.exists()
    assert cli.main(["evaluate", str(three), "--threshold", "0.3"]) == 2
    assert capsys.readouterr().err == message
    assert cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "-i", str(inputs / "x.png"), "-o", str(out),
                     "--threshold", "0.3"]) == 0                        # two classes: used 两类模型照常使用


def test_the_package_warnings_show_as_one_line_at_the_command_line(tmp_path, capsys):
    """Auto-tiling's warning came with the file, line and source line of the call. 以前带有文件名、行号与源代码行"""
    inputs = _images(tmp_path / "images", "x.png")
    assert cli.main(["predict", "-m", str(rgb_checkpoint(tmp_path)), "-i", str(inputs / "x.png"), "-o",
                     str(tmp_path / "o"), "--max-memory-mb", "0.001"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: A whole 24x20 image needs about ") and "UserWarning" not in err
    assert len(err.splitlines()) == 1


def test_predict_says_when_tiling_flags_do_not_apply(tmp_path, capsys):
    """``--overlap`` / ``--blend`` / ``--tile-batch`` with whole-image prediction used to be ignored in silence.
    整图推理时设置切片参数以前会被悄悄忽略
    """
    inputs = _images(tmp_path / "images", "x.png")
    args = ["predict", "-m", str(rgb_checkpoint(tmp_path)), "-i", str(inputs / "x.png"), "--overlap", "0.5",
            "--blend", "linear"]
    assert cli.main([*args, "-o", str(tmp_path / "whole")]) == 0
    assert capsys.readouterr().err == (
        "note: --overlap 0.5 and --blend linear apply only to tiled prediction, and these images are predicted whole "
        "unless one exceeds --max-memory-mb; add --tile N to tile them.\n")
    assert cli.main([*args, "-o", str(tmp_path / "tiled"), "--tile", "8"]) == 0
    assert capsys.readouterr().err == ""


def test_evaluate_refuses_a_bad_threshold_before_loading_the_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("unet_course.cli.evaluate.load_model", _boom)
    code = cli.main(["evaluate", str(rgb_checkpoint(tmp_path)), "--threshold", "0"])
    assert code == 2
    assert "--threshold must be in (0, 1), got 0.0" in capsys.readouterr().err


def _trained_on_all_of_a_folder(tmp_path: Path, capsys) -> Path:
    """A run folder: a tiny model trained on 4 toy images of a folder data set with ``--val-fraction 0``."""
    root = tmp_path / "data"
    for k in range(4):
        image, mask = toy_sample(32, 32, seed=k)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        Image.fromarray(image).save(root / "images" / f"c{k}.png")
        Image.fromarray(mask).save(root / "masks" / f"c{k}_mask.png")
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "folder", "--data-dir", str(root), "--val-fraction", "0", "--epochs", "1",
                     "--base-channels", "4", "--depth", "2", "--batch-size", "2", "--crop-size", "none",
                     "--amp", "off", "--device", "cpu", "--progress", "none", "--out-dir", str(out)]) == 0
    capsys.readouterr()
    return out


def test_evaluate_explains_a_model_trained_without_validation_images(tmp_path, capsys):
    """``--val-fraction 0`` (the final DRIVE model) leaves ``--split val`` empty; the message says what to score.
    用全部图像训练的模型没有验证集：消息说明可以怎样评分
    """
    out = _trained_on_all_of_a_folder(tmp_path, capsys)
    assert cli.main(["evaluate", str(out / "best.pt"), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        f"error: {out / 'best.pt'} was trained with --val-fraction 0, on every training image, so it has no "
        "validation split to score. Score those images with --split train (an optimistic figure: the model has "
        "seen them), or estimate its quality with `unet-course cv`.\n")
    assert cli.main(["evaluate", str(out / "best.pt"), "--device", "cpu", "--split", "train"]) == 0
    assert json.loads(capsys.readouterr().out)["n_images"] == 4


def test_evaluate_refuses_a_tile_smaller_than_the_model_can_halve(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("unet_course.cli.evaluate.evaluate_dataset", _boom)
    assert cli.main(["evaluate", str(rgb_checkpoint(tmp_path)), "--tile", "2"]) == 2
    assert "error: --tile 2 is smaller than 4 pixels, the least a depth-2 U-Net" in capsys.readouterr().err


def test_evaluate_on_another_data_set_does_not_look_in_the_checkpoints_folder(tmp_path, capsys, drive_root):
    """``evaluate best.pt --dataset drive`` of a model trained on a folder looked for DRIVE in that folder
    (``DRIVE 'test/images' folder not found at 'data'``) instead of the data root; and ``--dataset FOLDER`` (the
    checkpoint's own data set, spelt differently) lost the recorded folder. 换数据集评分时不再沿用检查点记录的目录
    """
    out = _trained_on_all_of_a_folder(tmp_path, capsys)
    assert cli.main(["evaluate", str(out / "best.pt"), "--device", "cpu", "--dataset", "drive", "--split", "train",
                     "--data-root", str(drive_root.parent), "--max-images", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == "drive" and report["n_images"] == 1
    assert cli.main(["evaluate", str(out / "best.pt"), "--device", "cpu", "--dataset", "FOLDER", "--split",
                     "train"]) == 0
    assert json.loads(capsys.readouterr().out)["n_images"] == 4
