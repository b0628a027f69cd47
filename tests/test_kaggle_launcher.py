"""The Kaggle launcher and the course runner behind it.
Kaggle 启动器及其背后的课程运行器

``kaggle/unet_course_kaggle.ipynb`` is run here as Kaggle would run it, with papermill parameters, except that the
repository and the data sit in temporary folders and the package is already installed (``install=False``).
以 Kaggle 的方式用 papermill 参数运行启动器；仓库与数据放在临时目录，包已安装
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import nbformat
import pytest
from conftest import write_carvana_fixture

from unet_course import cli
from unet_course.env import REPO_ROOT
from unet_course.errors import ConfigError, OutputError
from unet_course.notebook_tools import check_parameters, check_run_folder, course_notebooks, run_course

LAUNCHER = REPO_ROOT / "kaggle" / "unet_course_kaggle.ipynb"


def _tiny_course(folder: Path) -> Path:
    """A one-notebook course that writes a relative file and records a metric. 只有一个 notebook 的小课程"""
    folder.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('value = 1')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        'from pathlib import Path\n'
        'from unet_course.notebook_tools import record_result\n'
        'Path("runs").mkdir(exist_ok=True)\n'
        'Path("runs/out.txt").write_text(str(value))\n'
        'record_result("01_tiny", value=value)')]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "01_tiny.ipynb")
    return folder


@pytest.mark.slow
def test_run_course_writes_into_the_run_folder_and_not_the_source(tmp_path: Path, capfd):
    source = _tiny_course(tmp_path / "src")
    source.chmod(stat.S_IRUSR | stat.S_IXUSR)               # read-only like /kaggle/input 只读源目录
    try:
        runs = run_course(out_dir=tmp_path / "run", parameters={"value": 7}, notebook_dir=source)
    finally:
        source.chmod(stat.S_IRWXU)
    assert [r.ok for r in runs] == [True], runs
    assert runs[0].metrics == {"value": 7}                   # the injected parameter reached the notebook
    assert (tmp_path / "run" / "runs" / "out.txt").read_text() == "7"
    assert sorted(p.name for p in source.iterdir()) == ["01_tiny.ipynb"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary[0]["name"] == "01_tiny" and summary[0]["ok"] is True
    assert "IPKernelApp" not in capfd.readouterr().err       # no kernel start-up log in the course's output 无内核日志


def test_run_course_names_the_known_notebooks_when_none_match(tmp_path: Path):
    source = _tiny_course(tmp_path / "src")
    with pytest.raises(ConfigError, match="01_tiny"):
        run_course(out_dir=tmp_path / "run", notebooks=["09"], notebook_dir=source)
    assert not (tmp_path / "run").exists()                   # refused before the run folder is made 未创建运行目录


def test_notebooks_are_chosen_by_number_or_word_and_an_unmatched_name_is_refused():
    """``course --notebooks 3`` and ``--notebooks prediction`` matched nothing, and ``--notebooks 01 9`` ran 01 and
    skipped 9 in silence; numbers without the zero and a word of a name now match, and any name that matches no
    notebook (or several) is refused. 按编号或名称中的词选择；不匹配的名称不再被悄悄跳过"""
    from unet_course.notebook_tools import course_notebooks, select_notebooks

    paths = course_notebooks()
    assert [p.stem for p in select_notebooks(paths, ["prediction", "3", "01"])] == [
        "01_preprocessing", "03_loss_and_mixed_precision", "05_prediction"]
    with pytest.raises(ConfigError, match=r"--notebooks '9' matches no course notebook; give a number or a name "
                                          r"from: 01_preprocessing, .*05_prediction\."):
        select_notebooks(paths, ["01", "9"])
    assert select_notebooks(paths, ["04_training_loop.ipynb"])[0].stem == "04_training_loop"


def test_a_folder_without_notebooks_names_the_notebook_dir_option(tmp_path: Path):
    """An installed wheel has no notebooks beside the package; the message said only "Run from a checkout", not how
    to point an installed package at one. 安装后的包旁边没有 notebook：消息给出 --notebook-dir"""
    with pytest.raises(ConfigError, match=r"found in .*empty\. .*not with an installed wheel: pass --notebook-dir "
                                          r"<checkout>/notebooks"):
        run_course(out_dir=tmp_path / "run", notebook_dir=tmp_path / "empty")
    assert not (tmp_path / "run").exists()


def test_the_notebooks_own_folder_is_refused_as_out_dir(tmp_path: Path, monkeypatch):
    """``course --out-dir notebooks`` wrote each executed notebook over its committed source.
    以前 --out-dir 指向 notebook 目录时，执行后的副本会覆盖源 notebook
    """
    source = _tiny_course(tmp_path / "src")
    before = (source / "01_tiny.ipynb").read_bytes()
    monkeypatch.chdir(tmp_path)
    for out_dir in (source, "src", "./src/", tmp_path / "x" / ".." / "src"):
        with pytest.raises(ConfigError, match="is the folder of the notebooks being run"):
            run_course(out_dir=out_dir, notebook_dir=source)
    assert (source / "01_tiny.ipynb").read_bytes() == before and sorted(p.name for p in source.iterdir()) == [
        "01_tiny.ipynb"]


def test_a_run_folder_with_files_no_course_run_wrote_is_refused(tmp_path: Path):
    """``course --out-dir my_work`` wrote its executed notebooks over a student's own edited copies there.
    以前 --out-dir 中学生自己修改过的 notebook 会被执行后的副本覆盖
    """
    source = _tiny_course(tmp_path / "src")
    work = tmp_path / "my_work"
    work.mkdir()
    mine = nbformat.v4.new_notebook()
    mine.cells = [nbformat.v4.new_code_cell("value = 42  # my edit")]
    nbformat.write(mine, work / "01_tiny.ipynb")
    (work / "summary.json").write_text('{"my": "notes"}')
    before = {p.name: p.read_bytes() for p in work.iterdir()}
    with pytest.raises(OutputError, match=r"01_tiny\.ipynb'.*summary\.json'.*no course run wrote"):
        run_course(out_dir=work, notebook_dir=source)
    assert {p.name: p.read_bytes() for p in work.iterdir()} == before
    # an earlier course run's files (papermill's metadata, its own rows) are replaced 较早课程运行的文件照常替换
    mine.metadata["papermill"] = {"input_path": "01_tiny.ipynb"}
    nbformat.write(mine, work / "01_tiny.ipynb")
    (work / "summary.json").write_text(json.dumps([{"name": "01_tiny", "ok": True}]))
    (work / "results.jsonl").write_text('{"notebook": "01_tiny", "value": 1}\n')
    check_run_folder(work, [source / "01_tiny.ipynb"])


def test_a_parameter_no_notebook_declares_is_refused_before_anything_runs(tmp_path: Path, capsys):
    """papermill only warns about an unknown parameter and runs on; a misspelt ``-p epoch=3`` went unnoticed.
    papermill 对未知参数只给警告；拼错的参数以前不会被发现
    """
    source = _tiny_course(tmp_path / "src")
    with pytest.raises(ConfigError) as info:
        run_course(out_dir=tmp_path / "run", parameters={"valeu": 7}, notebook_dir=source)
    assert str(info.value) == ("Unknown parameter 'valeu': no course notebook has it in its parameters cell. "
                               "Did you mean 'value'? Known parameters: value.")
    assert not (tmp_path / "run").exists()
    # the real course: wandb_mode is 04's, and passes when only 01 runs (the launcher sends it to every run)
    # 真实课程：wandb_mode 属于 04，只运行 01 时也可以传入（启动器总会传它）
    check_parameters({"wandb_mode": "offline", "epochs": 1}, course_notebooks())
    out = tmp_path / "course" / "run"
    assert cli.main(["course", "-p", "epoch=3", "--notebooks", "01", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown parameter 'epoch'") and "Did you mean 'epochs'?" in err
    assert not (tmp_path / "course").exists()                # --out-dir was checked, then removed again 已删除


def test_launcher_has_a_parameters_cell_and_clean_stored_outputs():
    nb = nbformat.read(LAUNCHER, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in ("repo_dir", "work_dir", "dataset", "data_dir", "notebooks", "parameters", "wandb_mode", "install"):
        assert f"{name} =" in tagged[0].source
    assert 'notebooks = "01,02,03,04,05"' in tagged[0].source          # all five notebooks by default 默认运行全部
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs") for c in code if "parameters" not in c.metadata.get("tags", [])), \
        "the launcher is stored executed once (outputs of every cell)"
    text = json.dumps([c.get("outputs", []) for c in code])
    for prefix in ("/tmp/", "/work/", "/home/", "/root/", "/Users/"):
        assert prefix not in text, f"an absolute path {prefix}... is stored in the launcher's outputs"
    assert "widgets" not in nb.metadata
    printed = "".join(o.get("text", "") for c in code for o in c.get("outputs", []))
    assert "notebooks ok: 5 of 5" in printed, "store the launcher's run of all five notebooks (make notebooks)"
    assert "wandb sync course/runs/04_training_loop/" in printed    # 04's offline run is found one level deeper


def test_launcher_finds_offline_runs_at_any_depth(tmp_path: Path):
    """Notebook 04's offline runs sit at runs/04_training_loop/<run>/wandb/: the launcher must find them there.
    notebook 04 的离线运行比 runs/*/wandb 深一层，启动器必须能找到"""
    nb = nbformat.read(LAUNCHER, as_version=4)
    listing = next(c.source for c in nb.cells if c.cell_type == "code" and "offline-run-*" in c.source)
    deep = tmp_path / "course" / "runs" / "04_training_loop" / "main" / "wandb" / "offline-run-20260101_000000-abc"
    deep.mkdir(parents=True)
    scope = {"work": tmp_path, "summary": [], "Path": Path}
    exec(listing, scope)                                       # the launcher's own listing cell 启动器自己的单元
    assert scope["offline_runs"] == [deep]


def test_launcher_names_parameters_that_are_not_json(tmp_path: Path):
    """``parameters = "{epochs: 5}"`` (keys without quotes) ended in json's bare JSONDecodeError; the launcher
    names its own parameter and an example, before anything runs. 非 JSON 的 parameters 给出写明参数名的消息"""
    nb = nbformat.read(LAUNCHER, as_version=4)
    run_cell = next(c.source for c in nb.cells if c.cell_type == "code" and "json.loads(parameters)" in c.source)
    scope = {"parameters": "{epochs: 5}", "notebooks": "01", "dataset": "synthetic", "data_dir": "",
             "wandb_mode": "disabled", "copy": tmp_path, "work": tmp_path}
    with pytest.raises(ValueError, match=r"^parameters must be JSON text such as \{\"epochs\": 5\}, got "
                                         r"'\{epochs: 5\}' \(Expecting property name"):
        exec("import json, sys\n" + run_cell, scope)                # the launcher's own cell 启动器自己的单元
    assert "cmd" not in scope                                       # stopped before building the command


def test_tracker_offline_runs_sit_below_the_run_folder(tmp_path: Path):
    """Where Tracker(dir=out_dir) writes: <out_dir>/wandb/offline-run-*, and metrics.jsonl beside it.
    Tracker 把离线运行写在 <out_dir>/wandb/ 下，metrics.jsonl 在 out_dir 中"""
    pytest.importorskip("wandb")
    from unet_course.tracking import Tracker

    out_dir = tmp_path / "runs" / "04_training_loop" / "main"
    with Tracker("offline", dir=out_dir) as tracker:
        tracker.log({"val/dice": 0.5}, step=1)
        run_dir = tracker.run_dir
    assert run_dir is not None and run_dir.parent == out_dir / "wandb" and run_dir.name.startswith("offline-run-")
    assert (out_dir / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_launcher_runs_notebook_01_on_a_carvana_layout(tmp_path: Path):
    pm = pytest.importorskip("papermill")
    data = write_carvana_fixture(tmp_path / "carvana-image-masking-challenge")
    work = tmp_path / "working"
    params = {"repo_dir": str(REPO_ROOT), "work_dir": str(work), "dataset": "carvana", "data_dir": str(data),
              "notebooks": "01", "install": False,
              "parameters": json.dumps({"crop_size": 32, "batch_size": 2, "n_augment": 2, "worker_counts": [0]})}
    env_before = dict(os.environ)
    pm.execute_notebook(str(LAUNCHER), str(tmp_path / "launcher.ipynb"), parameters=params, cwd=str(tmp_path),
                        kernel_name="python3", progress_bar=False)
    assert dict(os.environ) == env_before
    summary = json.loads((work / "course" / "summary.json").read_text())
    assert [(r["name"], r["ok"]) for r in summary] == [("01_preprocessing", True)]
    executed = json.loads((work / "course" / "01_preprocessing.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in executed["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []))
    assert "data set        : carvana" in text              # the launcher's dataset reached notebook 01
    assert (work / "unet-course" / "unet_course" / "__init__.py").exists()   # the repository copy
    assert not (work / "unet-course" / ".venv").exists()
