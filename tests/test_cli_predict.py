"""``unet-course predict``: masks named like the inputs, FOV, TIFF stacks, clear errors, the real entry point.
predict 命令行：与输入同名的掩码、视野掩码、多页 TIFF、清晰的错误消息，以及真正的命令行入口
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from cli_helpers import gray_checkpoint as _gray_checkpoint
from cli_helpers import predict_cli, toy_sample
from cli_helpers import rgb_checkpoint as _rgb_checkpoint
from PIL import Image

from unet_course.checkpoint import load_model
from unet_course.cli import main
from unet_course.config import TrainConfig
from unet_course.errors import CheckpointError, ConfigError, DataError
from unet_course.inference import predict_with_meta
from unet_course.training import fit


@pytest.fixture()
def rgb_checkpoint(tmp_path: Path) -> Path:
    return _rgb_checkpoint(tmp_path)


@pytest.fixture()
def gray_checkpoint(tmp_path: Path) -> Path:
    return _gray_checkpoint(tmp_path)


def test_cli_writes_masks_named_like_the_inputs(tmp_path: Path, rgb_checkpoint: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, (h, w) in {"01_test.tif": (37, 45), "b.png": (30, 21)}.items():
        img, _ = toy_sample(h, w, seed=len(name))
        if name.endswith(".tif"):
            tifffile.imwrite(inputs / name, img)
        else:
            Image.fromarray(img).save(inputs / name)
    out = tmp_path / "out"
    assert predict_cli("-m", str(rgb_checkpoint), "--input-dir", str(inputs), "-o", str(out), "--tile", "32",
               "--tta", "--viz") == 0
    first = np.asarray(Image.open(out / "01_test.png"))
    assert first.shape == (37, 45) and set(np.unique(first)) <= {0, 255}
    assert np.asarray(Image.open(out / "b.png")).shape == (30, 21)
    assert np.asarray(Image.open(out / "b_overlay.png")).shape == (30, 21, 3)


def test_cli_fov_dir_sets_pixels_outside_the_fov_to_background(tmp_path: Path, rgb_checkpoint: Path) -> None:
    # DRIVE naming: images/01_test.tif + mask/01_test_mask.gif DRIVE 的命名方式
    (tmp_path / "images").mkdir()
    (tmp_path / "mask").mkdir()
    img, _ = toy_sample(37, 45, seed=3)
    tifffile.imwrite(tmp_path / "images" / "01_test.tif", img)
    fov = np.zeros((37, 45), np.uint8)
    fov[5:30, 8:40] = 255
    Image.fromarray(fov).save(tmp_path / "mask" / "01_test_mask.gif")
    args = ("-m", str(rgb_checkpoint), "--input-dir", str(tmp_path / "images"), "--tile", "32")
    assert predict_cli(*args, "-o", str(tmp_path / "plain")) == 0
    assert predict_cli(*args, "-o", str(tmp_path / "fov"), "--fov-dir", str(tmp_path / "mask")) == 0
    plain = np.asarray(Image.open(tmp_path / "plain" / "01_test.png"))
    masked = np.asarray(Image.open(tmp_path / "fov" / "01_test.png"))
    inside = fov > 0
    assert (masked[~inside] == 0).all()                                 # 视野外为背景
    assert np.array_equal(masked[inside], plain[inside])                 # 视野内不变
    assert (plain[~inside] == 255).any()                                 # the toy model does mark pixels there


def test_cli_fov_dir_errors_name_the_image_and_the_fix(tmp_path: Path, rgb_checkpoint: Path) -> None:
    img, _ = toy_sample(20, 24)
    Image.fromarray(img).save(tmp_path / "a.png")
    (tmp_path / "fov").mkdir()
    with pytest.raises(DataError, match=r"a\.png.*a_mask"):
        predict_cli("-m", str(rgb_checkpoint), "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"),
            "--fov-dir", str(tmp_path / "fov"))
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(tmp_path / "fov" / "a_mask.png")
    with pytest.raises(DataError, match="10x10 but the image is 24x20"):
        predict_cli("-m", str(rgb_checkpoint), "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"),
            "--fov-dir", str(tmp_path / "fov"))
    with pytest.raises(DataError, match="not a folder"):
        predict_cli("-m", str(rgb_checkpoint), "-i", str(tmp_path / "a.png"), "--fov-dir", str(tmp_path / "nope"))


def test_cli_multipage_tiff_gives_a_multipage_mask(tmp_path: Path, gray_checkpoint: Path) -> None:
    stack = np.stack([toy_sample(40, 36, seed=s, channels=1)[0][..., 0] for s in range(3)])   # (3, 40, 36)
    tifffile.imwrite(tmp_path / "test-volume.tif", stack, photometric="minisblack")   # 3 页灰度
    assert predict_cli("-m", str(gray_checkpoint), "-i", str(tmp_path / "test-volume.tif"), "-o", str(tmp_path / "o")) == 0
    masks = tifffile.imread(tmp_path / "o" / "test-volume.tif")
    assert masks.shape == (3, 40, 36) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 255}
    # --save-probs on a stack: one (K, H, W) per page, as the masks 多页时概率为 (N, K, H, W)
    assert predict_cli("-m", str(gray_checkpoint), "-i", str(tmp_path / "test-volume.tif"), "-o", str(tmp_path / "p"),
                       "--save-probs") == 0
    probs = np.load(tmp_path / "p" / "test-volume_prob.npy")
    assert probs.shape == (3, 2, 40, 36) and probs.dtype == np.float16       # (N, K, H, W)
    assert np.array_equal(tifffile.imread(tmp_path / "p" / "test-volume.tif"), masks)
    model, meta = load_model(gray_checkpoint)
    for k, page in enumerate(stack):                                   # page k's probabilities 第 k 页的概率
        expected = predict_with_meta(model, meta, page[..., None]).probs
        np.testing.assert_allclose(probs[k].astype(np.float32), expected, atol=1e-3)   # float16 in the file 文件中为 float16


def test_cli_corrupt_image_names_the_file(tmp_path: Path, rgb_checkpoint: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(DataError, match="broken.png"):
        predict_cli("-m", str(rgb_checkpoint), "-i", str(bad), "-o", str(tmp_path / "o"))


def test_cli_channel_mismatch_names_both_counts_and_the_files(tmp_path: Path, gray_checkpoint: Path) -> None:
    img, _ = toy_sample(20, 20, channels=3)
    Image.fromarray(img).save(tmp_path / "colour.png")
    with pytest.raises(DataError) as info:
        predict_cli("-m", str(gray_checkpoint), "-i", str(tmp_path / "colour.png"), "-o", str(tmp_path / "o"))
    message = str(info.value)
    assert "colour.png" in message and "gray.pt" in message
    assert "3 channel(s)" in message and "expects 1" in message


def test_cli_unwritable_output_dir(tmp_path: Path, rgb_checkpoint: Path) -> None:
    img, _ = toy_sample(20, 20)
    Image.fromarray(img).save(tmp_path / "a.png")
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(ConfigError, match="not writable"):
        predict_cli("-m", str(rgb_checkpoint), "-i", str(tmp_path / "a.png"), "-o", str(blocker / "masks"))


def test_cli_missing_checkpoint_and_missing_input(tmp_path: Path, rgb_checkpoint: Path) -> None:
    img, _ = toy_sample(20, 20)
    Image.fromarray(img).save(tmp_path / "a.png")
    with pytest.raises(CheckpointError, match="nope.pt"):
        predict_cli("-m", str(tmp_path / "nope.pt"), "-i", str(tmp_path / "a.png"))
    with pytest.raises(DataError, match="missing.png"):
        predict_cli("-m", str(rgb_checkpoint), "-i", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o"))


def test_trained_checkpoint_round_trips_0_255_mask_values(tmp_path: Path) -> None:
    """fit() on a folder of {0, 255} masks -> checkpoint -> `predict` CLI writes PNGs holding only 0 and 255.
    在 {0, 255} 掩码上训练 -> 检查点 -> predict 命令行写出的 PNG 只含 0 和 255
    """
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(6):
        img, mask = toy_sample(48, 48, seed=10 + k)
        Image.fromarray(img).save(root / "images" / f"case_{k}.png")
        Image.fromarray(mask).save(root / "masks" / f"case_{k}_mask.png")
    cfg = TrainConfig(dataset="folder", data_dir=str(root), epochs=1, batch_size=4, base_channels=4, depth=2,
                      val_fraction=0.34, num_workers=0, augment=False, device="cpu", amp="off", progress="none",
                      out_dir=str(tmp_path / "run"), scheduler="none")
    history = fit(cfg)
    checkpoint = Path(history.last_checkpoint or tmp_path / "run" / "last.pt")
    model, meta = load_model(checkpoint)
    assert meta["mask_values"] == [0, 255]

    # 取前景概率的中位数作阈值，保证两个类别都会出现在输出中
    test_image, _ = toy_sample(40, 44, seed=99)
    Image.fromarray(test_image).save(tmp_path / "new_case.png")
    probs = predict_with_meta(model, meta, test_image, amp="off").probs            # fp32：与下面的命令一致
    threshold = float(np.median(probs[1]))
    assert 0.0 < threshold < 1.0
    assert predict_cli("-m", str(checkpoint), "-i", str(tmp_path / "new_case.png"), "-o", str(tmp_path / "pred"),
               "--threshold", f"{threshold:.9f}", "--amp", "off") == 0
    written = np.asarray(Image.open(tmp_path / "pred" / "new_case.png"))
    assert written.shape == (40, 44) and written.dtype == np.uint8
    assert set(np.unique(written).tolist()) == {0, 255}                 # 不是 {0, 1}
    expected = np.where(probs[1] >= float(f"{threshold:.9f}"), 255, 0)
    assert (written == expected).mean() > 0.999


def test_unet_course_predict_subcommand_reports_errors_without_traceback(
    tmp_path: Path, gray_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the real `unet-course` entry point: success writes the mask, a channel mismatch exits with 2.
    通过真正的 unet-course 入口：成功时写出掩码，通道不匹配时以退出码 2 结束且无回溯
    """
    gray, _ = toy_sample(24, 28, channels=1)
    Image.fromarray(gray[..., 0]).save(tmp_path / "slice.png")
    Image.fromarray(toy_sample(24, 28)[0]).save(tmp_path / "rgb.png")
    assert main(["predict", "-m", str(gray_checkpoint), "-i", str(tmp_path / "slice.png"),
                 "-o", str(tmp_path / "o")]) == 0
    assert np.asarray(Image.open(tmp_path / "o" / "slice.png")).shape == (24, 28)
    capsys.readouterr()
    assert main(["predict", "-m", str(gray_checkpoint), "-i", str(tmp_path / "rgb.png"),
                 "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "rgb.png" in err and "expects 1" in err and "Traceback" not in err


def test_ctrl_c_says_how_many_masks_are_complete(tmp_path: Path, rgb_checkpoint: Path, monkeypatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C used to print train's resume advice ("last.pt is kept ... train --resume last") for any command.
    以前任何命令被 Ctrl-C 中断时都会给出训练的续训建议
    """
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(4):
        Image.fromarray(toy_sample(24, 28, seed=i)[0]).save(inputs / f"{i}.png")
    import unet_course.cli.predict as predict_module

    real, calls = predict_module._predict_single, []

    def interrupted_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_module, "_predict_single", interrupted_at_the_third)
    out = tmp_path / "out"
    assert main(["predict", "-m", str(rgb_checkpoint), "--input-dir", str(inputs), "-o", str(out)]) == 130
    err = capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png"]
    assert f"interrupted: 2 of 4 input(s) have their mask in {str(out)!r}, each file complete" in err
    assert "--resume" not in err and "Traceback" not in err


def test_an_input_dir_one_level_up_names_the_subfolder_to_predict(tmp_path: Path, rgb_checkpoint: Path):
    # before: "holds no images" and nothing more, for a data set's root 以前只说没有图像
    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "data" / sub / "a.png")
    with pytest.raises(DataError) as err:
        predict_cli("-m", str(rgb_checkpoint), "--input-dir", str(tmp_path / "data"), "-o", str(tmp_path / "o"))
    assert "holds no images" in str(err.value)
    assert f"--input-dir {str(tmp_path / 'data' / 'images')!r}" in str(err.value) and "'masks/'" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"holds no images \(.*\)\.$"):  # no subfolder, no hint 没有子目录就不提示
        predict_cli("-m", str(rgb_checkpoint), "--input-dir", str(tmp_path / "empty"), "-o", str(tmp_path / "o"))
