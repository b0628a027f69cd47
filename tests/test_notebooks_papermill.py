"""papermill runs a course notebook on real data with injected parameters.
papermill 用注入的参数在真实数据上运行课程 notebook

Proves that parameters flow through: the injected ``dataset``/``data_dir``/``crop_size`` must show up in the
notebook's own printed outputs (DRIVE's native 584x565 size, the crop), not just in the injected cell.
证明参数确实生效：注入的值必须出现在 notebook 自己打印的输出中
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from unet_course.env import REPO_ROOT

pytestmark = pytest.mark.slow


def _outputs(nb: dict) -> str:
    texts = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or "injected-parameters" in cell["metadata"].get("tags", []):
            continue
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            texts.append(text if isinstance(text, str) else "".join(text))
    return "\n".join(texts)


def test_preprocessing_notebook_runs_on_drive_with_injected_parameters(drive_root: Path, tmp_path: Path):
    from unet_course.notebook_tools import execute_headless

    out = tmp_path / "01_drive.ipynb"
    params = {"dataset": "drive", "data_dir": str(drive_root), "crop_size": 64, "batch_size": 2,
              "train_samples": 8, "val_samples": 4, "n_augment": 3, "worker_counts": [0]}
    execute_headless(REPO_ROOT / "notebooks" / "01_preprocessing.ipynb", out, parameters=params, cwd=tmp_path)
    nb = json.loads(out.read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "drive" in "".join(injected[0]["source"])
    text = _outputs(nb)
    assert "data set        : drive" in text                  # the dataset parameter was used
    assert "(584, 565, 3)" in text                             # DRIVE's native size, read from disk
    assert "(2, 3, 64, 64)" in text                            # batch_size=2 and crop_size=64 were used
    first_names = text.split("first names")[1].splitlines()[0]
    assert "_training" in first_names and "synthetic" not in first_names  # DRIVE samples, not the default


def test_training_notebook_names_a_bad_parameter(tmp_path: Path):
    """``-p epochs abc`` reaches TrainConfig.from_parameters and stops with one message naming the parameter.
    错误参数经 from_parameters 给出一条写明参数名的消息"""
    pm = pytest.importorskip("papermill")
    out = tmp_path / "04_bad.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(REPO_ROOT / "notebooks" / "04_training_loop.ipynb"), str(out),
                            parameters={"epochs": "abc", "wandb_mode": "disabled"}, cwd=str(tmp_path),
                            kernel_name="python3", progress_bar=False)
    assert "Parameter 'epochs' must be an integer, got 'abc'" in str(info.value)
    assert not (tmp_path / "runs").exists()                      # stopped before any training 训练开始之前就停止


@pytest.mark.parametrize("notebook", ["01_preprocessing", "02_architecture", "03_loss_and_mixed_precision",
                                      "04_training_loop", "05_prediction"])
def test_every_notebook_names_a_parameter_of_the_wrong_type(notebook: str, tmp_path: Path):
    """``-p seed abc`` ended in a TypeError traceback from ``seed_everything`` in every notebook, since seeding came
    before TrainConfig.from_parameters; check_parameter_types now checks each annotated parameter first.
    每个 notebook 都先按类型注解检查参数，-p seed abc 只给出一条消息"""
    pm = pytest.importorskip("papermill")
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(REPO_ROOT / "notebooks" / f"{notebook}.ipynb"), str(tmp_path / "bad.ipynb"),
                            parameters={"seed": "abc"}, cwd=str(tmp_path), kernel_name="python3",
                            progress_bar=False)
    assert info.value.ename == "ConfigError"
    assert "Parameter 'seed' must be an integer, got 'abc' (str)" in info.value.evalue
    assert not (tmp_path / "runs").exists()                      # stopped before any output 在写出任何文件之前停止


def test_list_parameters_given_as_json_text_are_read(tmp_path: Path):
    """``-p worker_counts "[0]"`` arrives as text: notebook 01 iterated over its characters and failed with
    ``'>' not supported between 'str' and 'int'`` (notebook 03's exercise ``-p batch_sizes "[1, 4, 16, 64]"`` the
    same way); the text is read as JSON, and a bound is checked. 以文本传入的列表参数按 JSON 读取"""
    from unet_course.notebook_tools import execute_headless

    pm = pytest.importorskip("papermill")
    out = tmp_path / "01_text.ipynb"
    params = {"worker_counts": "[0]", "n_augment": 2, "train_samples": 16, "val_samples": 8}
    execute_headless(REPO_ROOT / "notebooks" / "01_preprocessing.ipynb", out, parameters=params, cwd=tmp_path)
    text = _outputs(json.loads(out.read_text()))
    assert "fastest (epoch 2): num_workers=0" in text and "num_workers=1," not in text
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(REPO_ROOT / "notebooks" / "01_preprocessing.ipynb"), str(tmp_path / "bad.ipynb"),
                            parameters={"worker_counts": "[-1]"}, cwd=str(tmp_path), kernel_name="python3",
                            progress_bar=False)
    assert "Parameter 'worker_counts' must be a non-empty list of values of at least 0, got [-1]" in \
        info.value.evalue


@pytest.mark.parametrize(("name", "value", "message"), [("overlap", 1.0, r"overlap must be in \[0, 1\), got 1.0"),
                                                      ("scale", 0, r"scale must be in \(0, 4\], got 0")])
def test_prediction_notebook_checks_its_inference_parameters_before_training(name, value, message, tmp_path):
    """``-p overlap 1.0`` (section 6) and ``-p scale 0`` (section 3) were refused only after the notebook had trained
    its model; they are checked in the first cell now. 推理参数在训练之前就检查"""
    pm = pytest.importorskip("papermill")
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(REPO_ROOT / "notebooks" / "05_prediction.ipynb"), str(tmp_path / "bad.ipynb"),
                            parameters={name: value, "dataset": "synthetic"}, cwd=str(tmp_path),
                            kernel_name="python3", progress_bar=False)
    assert info.value.ename == "ConfigError" and re.search(message, info.value.evalue)
    assert not (tmp_path / "runs").exists()                      # no training started 未开始训练


def test_prediction_notebook_runs_on_drive_with_injected_parameters(drive_root: Path, tmp_path: Path):
    from unet_course.notebook_tools import execute_headless

    out = tmp_path / "05_drive.ipynb"
    params = {"data_dir": str(drive_root), "epochs": 1, "train_samples": 16, "tile": 64, "min_fov_f1": 0.0}
    execute_headless(REPO_ROOT / "notebooks" / "05_prediction.ipynb", out, parameters=params, cwd=tmp_path)
    text = _outputs(json.loads(out.read_text()))
    assert "data set drive" in text and "enhance=green-clahe" in text   # DRIVE was used, with its enhancement
    assert "tiles of 64x64" in text                                     # the tile parameter reached section 6


def test_prediction_notebook_runs_on_kaggle_carvana_layout_with_0_1_masks(tmp_path: Path):
    """The Kaggle way (``-p dataset carvana -p data_dir ...``): Carvana's masks are 0/1 GIFs. Section 4 built its
    float mask as ``raw / 255`` (all values below 1, so its own check failed), and section 7 could not save a
    gray (H, W, 1) image with PIL (ISBI-2012). Carvana 的 0/1 掩码曾使第 4 节的自检失败"""
    from conftest import write_carvana_fixture

    from unet_course.notebook_tools import execute_headless

    root = write_carvana_fixture(tmp_path / "carvana")
    out = tmp_path / "05_carvana.ipynb"
    params = {"dataset": "carvana", "data_dir": str(root), "epochs": 1, "batch_size": 2, "enhance": "none",
              "min_fov_f1": 0.0, "out_dir": str(tmp_path / "runs")}
    execute_headless(REPO_ROOT / "notebooks" / "05_prediction.ipynb", out, parameters=params, cwd=tmp_path)
    text = _outputs(json.loads(out.read_text()))
    assert "data set carvana" in text and "mask_values=[0, 1]" in text  # Carvana's 0/1 masks were used
    assert "foreground pixels, .long()" in text                         # section 4's float trap ran
    assert ".png: input (48, 64), mask (48, 64) uint8, values subset of [0, 1]: True" in text  # section 7 ran


def test_preprocessing_notebook_takes_dataset_options_as_papermill_text(tmp_path: Path):
    """A folder whose masks are named like their images (``mask_suffix=""``) and hold a 255 border of unlabelled
    pixels: the notebooks had no way to pass the data set's options, so ``-p dataset folder`` failed for it.
    ``papermill -p`` passes the JSON as text. 以前 notebook 无法传入数据集选项"""
    import numpy as np
    from PIL import Image

    from unet_course.notebook_tools import execute_headless

    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for i in range(8):
        mask = np.zeros((48, 48), np.uint8)
        mask[8:30, 6:40] = 1
        mask[14:22, 12:20] = 2
        mask[7, :] = 255                                            # the unlabelled border 无标签边界
        Image.fromarray(np.stack([mask * 100] * 3, -1).astype(np.uint8)).save(tmp_path / "data" / "images" / f"{i}.png")
        Image.fromarray(mask).save(tmp_path / "data" / "masks" / f"{i}.png")
    out = tmp_path / "01_folder.ipynb"
    params = {"dataset": "folder", "data_dir": str(tmp_path / "data"), "crop_size": 32, "batch_size": 2,
              "n_augment": 2, "worker_counts": [0],
              "dataset_options": '{"mask_suffix": "", "void_values": [255]}'}
    execute_headless(REPO_ROOT / "notebooks" / "01_preprocessing.ipynb", out, parameters=params, cwd=tmp_path)
    text = _outputs(json.loads(out.read_text()))
    assert "data set        : folder" in text
    assert "mask_values=[0, 1, 2], ignore_index=255" in text           # 255 is void, not a fourth class


@pytest.mark.parametrize("name", ["01_preprocessing", "02_architecture", "03_loss_and_mixed_precision",
                                  "04_training_loop", "05_prediction"])
def test_papermill_sees_every_name_of_the_parameters_cell(name: str):
    """papermill's reader skips a line typed ``x: int | None = None``: it warned "Passed unknown parameter" for
    notebook 04's ``max_steps`` and ``course -p max_steps=2`` was refused. papermill 以前识别不了这类参数
    """
    import ast

    import papermill as pm

    path = REPO_ROOT / "notebooks" / f"{name}.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    assigned = set()
    for node in ast.parse("".join(cell["source"])).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        assigned |= {t.id for t in targets if isinstance(t, ast.Name)}
    assert assigned and assigned == set(pm.inspect_notebook(str(path)))
