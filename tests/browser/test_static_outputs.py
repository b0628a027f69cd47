"""What the saved notebook holds instead of live widgets (no browser needed; part of the unit tests).
保存的 notebook 中替代实时控件的内容（不需要浏览器，属于单元测试）

- :func:`unet_course.progress.progress_bar` replaces its widget by text (or nothing) when it closes;
- :func:`unet_course.notebook_tools.clean_notebook` turns widget views into pictures/text and fixes the kernelspec.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from unet_course import progress
from unet_course.notebook_tools import KERNELSPEC, WIDGET_HINT, WIDGET_STATE, WIDGET_VIEW, clean_notebook

REPO = Path(__file__).resolve().parents[2]
PNG = "iVBORw0KGgo="   # the start of a PNG, enough for these tests PNG 文件头


class FakeHandle:
    """Records what a display handle is updated to. 记录显示句柄的更新内容"""

    def __init__(self) -> None:
        self.updates: list[dict] = []

    def update(self, obj: dict, raw: bool = False) -> None:
        assert raw
        self.updates.append(obj)


@pytest.fixture()
def widget_bar(monkeypatch: pytest.MonkeyPatch):
    """A widget-mode bar whose display goes to a FakeHandle (no kernel needed). 不需要内核的控件进度条"""
    pytest.importorskip("ipywidgets")
    handles: list[FakeHandle] = []

    def fake_display(obj, display_id=None):
        assert display_id is True, "the bar must be shown with a display handle"
        handles.append(FakeHandle())
        return handles[-1]

    import IPython.display

    monkeypatch.setattr(IPython.display, "display", fake_display)
    return handles


@pytest.mark.parametrize("leave, expected", [(True, "demo: 100%"), (False, None)])
def test_widget_bar_leaves_text_or_nothing(widget_bar, leave: bool, expected: str | None) -> None:
    bar = progress.progress_bar(total=4, desc="demo", unit="batch", leave=leave, mode="widget")
    container = bar.container
    for _ in range(4):
        bar.update(1)
    bar.close()
    bar.close()                                               # tqdm closes again from __del__; must be harmless
    (handle,) = widget_bar
    assert len(handle.updates) == 1, "the widget view is replaced exactly once"
    update = handle.updates[0]
    assert WIDGET_VIEW not in update
    if expected is None:
        assert update == {}
    else:
        assert update["text/plain"].startswith(expected) and "4/4" in update["text/plain"]
    assert container.comm is None, "the kernel-side widget model is closed"


def test_widget_bar_stopped_early_keeps_its_line(widget_bar) -> None:
    bar = progress.progress_bar(total=10, desc="stopped", leave=False, mode="widget")
    bar.update(3)
    bar.close()
    assert "3/10" in widget_bar[0].updates[0]["text/plain"]


def test_modes() -> None:
    assert progress.resolve_mode("auto") == "text"            # not in a kernel here 测试进程不是内核
    bar = progress.progress_bar(range(3), mode="off")
    assert list(bar) == [0, 1, 2] and bar.disable
    with pytest.raises(ValueError, match="not one of"):
        progress.progress_bar(mode="bars")


def _widget_notebook(with_state: bool) -> nbformat.NotebookNode:
    """A notebook as nbclient leaves it: an explorer (VBox of sliders + Output) and a tqdm bar. nbclient 执行后的样子"""
    def model(name: str, **state) -> dict:
        return {"model_name": name, "model_module": "@jupyter-widgets/controls", "model_module_version": "2.0.0",
                "state": state}

    state = {
        "box": model("VBoxModel", children=["IPY_MODEL_row", "IPY_MODEL_out"]),
        "row": model("HBoxModel", children=["IPY_MODEL_s1", "IPY_MODEL_s2"]),
        "s1": model("IntSliderModel", value=0), "s2": model("FloatSliderModel", value=0.5),
        "out": model("OutputModel", outputs=[{"output_type": "display_data", "metadata": {},
                                              "data": {"image/png": PNG, "text/plain": "<Figure>"}}]),
        "bar": model("HBoxModel", children=["IPY_MODEL_left", "IPY_MODEL_prog", "IPY_MODEL_right"]),
        "left": model("HTMLModel", value="Epoch 1/2: 100%"), "prog": model("FloatProgressModel", value=8.0),
        "right": model("HTMLModel", value="&nbsp;8/8 [00:01&lt;00:00]"),
    }

    def view(model_id: str, text: str) -> dict:
        return {WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": model_id}, "text/plain": text}

    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"display_name": "Python 3", "language": "python", "name": "python3"}
    if with_state:
        nb.metadata.widgets = {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    nb.cells = [
        nbformat.v4.new_code_cell("explorer = viz.explore(ds)\nexplorer", execution_count=1, outputs=[
            nbformat.v4.new_output("execute_result", view("box", "VBox(children=(HBox(children=(IntSlider("),
                                   execution_count=1)]),
        nbformat.v4.new_code_cell("fit(cfg)", execution_count=2, outputs=[
            nbformat.v4.new_output("display_data", view("bar", "HBox(children=(HTML(value='')")),
            nbformat.v4.new_output("stream", name="stdout", text="epoch 1/2 done\n")]),
    ]
    return nb


def test_clean_notebook_turns_the_explorer_into_its_picture() -> None:
    nb = clean_notebook(_widget_notebook(with_state=True))
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata
    explorer, training = (cell.outputs for cell in nb.cells)
    assert [o.data.get("text/plain") for o in explorer] == [WIDGET_HINT, "<Figure>"]
    assert explorer[1].data["image/png"] == PNG
    assert training[0].data == {"text/plain": "Epoch 1/2: 100% 8/8 [00:01<00:00]"}
    assert training[1].text == "epoch 1/2 done\n"
    assert not any(WIDGET_VIEW in o.get("data", {}) for cell in nb.cells for o in cell.outputs)


def test_clean_notebook_without_state_keeps_no_widget_repr() -> None:
    nb = clean_notebook(_widget_notebook(with_state=False))
    explorer = nb.cells[0].outputs
    assert len(explorer) == 1 and WIDGET_VIEW not in explorer[0].data
    assert not explorer[0].data["text/plain"].startswith("VBox("), "a bare widget repr is no help to a reader"


def test_kernelspec_is_what_jupyterlab_writes() -> None:
    nb = clean_notebook(_widget_notebook(with_state=False))
    assert nb.metadata.kernelspec == KERNELSPEC
    spec = json.loads((REPO / ".venv" / "share" / "jupyter" / "kernels" / "python3" / "kernel.json").read_text()) \
        if (REPO / ".venv" / "share" / "jupyter" / "kernels" / "python3").exists() else None
    if spec is not None:                                     # the kernelspec `make install` wrote 安装的内核描述
        assert spec["display_name"] == KERNELSPEC["display_name"]
    for path in sorted((REPO / "notebooks").glob("*.ipynb")) + sorted((REPO / "kaggle").glob("*.ipynb")):
        stored = json.loads(path.read_text(encoding="utf-8"))["metadata"]["kernelspec"]
        assert stored == KERNELSPEC, f"{path.name}: kernelspec {stored} (run `make notebooks` or clean it)"
