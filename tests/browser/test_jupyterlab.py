"""Run every course notebook in JupyterLab in headless Chromium, as a student would, and check what they see.
在无界面 Chromium 的 JupyterLab 中像学生一样运行每个课程 notebook，并检查所见内容

For each notebook: opening it leaves it unsaved-free (kernelspec not rewritten); Run All ends with no error and no
stderr output; the explorer (the cell that calls ``explore(``) shows sliders and moving one changes the picture;
training shows a tqdm widget bar (04); after a save and a page reload no output says "Error displaying widget".
Screenshots go to ``runs/browser/``. Cells are found by their source text, never by index.
对每个 notebook：打开后不会变为未保存；全部运行后没有错误与 stderr 输出；explore 单元显示滑块，拖动后图像改变；
训练时显示 tqdm 控件进度条（04）；保存并刷新页面后没有 "Error displaying widget"。截图保存在 runs/browser/
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .browser_lab import REPO, SHOTS, VENV

NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("0[1-9]_*.ipynb"))
RUN_TIMEOUT_S = float(os.environ.get("UNET_COURSE_BROWSER_TIMEOUT", "240"))   # per notebook 每个 notebook
WIDGET_ERROR = "Error displaying widget"

# State of the current notebook panel, read through the JupyterLab app (exposed by --LabApp.expose_app_in_browser).
# 通过 JupyterLab 应用对象读取当前 notebook 的状态
_STATE_JS = """
const app = window.jupyterapp; const w = app && app.shell.currentWidget;
if (!w || !w.context || !w.sessionContext || !w.context.isReady || !w.content) return null;
const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
const tab = document.querySelector('.lm-TabBar-tab.jp-mod-current');
const cells = w.content.widgets.map((c) => ({
  type: c.model.type, source: c.model.sharedModel.getSource(),
  count: c.model.type === 'code' ? c.model.executionCount : null,
  running: c.model.type === 'code' && c.model.executionState === 'running',
  outputs: c.model.type === 'code' ? c.model.outputs.toJSON() : [],
  bars: c.node.querySelectorAll('.widget-hprogress, .widget-vprogress').length,
  sliders: c.node.querySelectorAll('.widget-slider').length,
}));
return {path: w.context.path, dirty: w.context.model.dirty, tabDirty: !!(tab && tab.classList.contains('jp-mod-dirty')),
        kernel: kernel ? kernel.status : null, cells: cells,
        widgetErrors: (document.body.innerText.match(/Error displaying widget/g) || []).length};
"""
# Run code in the notebook's kernel and return its stdout. 在 notebook 的内核中运行代码并返回 stdout
_KERNEL_JS = """
const done = arguments[arguments.length - 1];
const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
let text = '';
const future = kernel.requestExecute({code: arguments[0], silent: false, store_history: false});
future.onIOPub = (msg) => { if (msg.header.msg_type === 'stream') text += msg.content.text; };
future.done.then(() => done(text), (err) => done('ERROR ' + err));
"""


def _wait(driver, what: str, timeout: float, test, poll: float = 0.5):
    """Poll ``test(state)`` until it returns a truthy value; fail after ``timeout`` seconds. 有限时间内轮询"""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = driver.execute_script(_STATE_JS)
        result = test(state) if state else None
        if result:
            return result
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last state: {_summary(state)}")


def _summary(state) -> str:
    if not state:
        return "no notebook panel"
    pending = [f"{i}: {c['source'].strip().splitlines()[0][:60]}" for i, c in enumerate(state["cells"])
               if c["type"] == "code" and c["source"].strip() and (c["count"] is None or c["running"])]
    return str({k: v for k, v in state.items() if k != "cells"} | {"cells": len(state["cells"]), "pending": pending})


def _open(driver, lab, name: str) -> dict:
    driver.get(lab.url(f"lab/tree/notebooks/{name}?reset"))
    return _wait(driver, f"{name} to open with an idle kernel", 120,
                 lambda s: s if s["path"].endswith(name) and s["kernel"] == "idle" else None)


def _run_all(driver, name: str) -> tuple[dict, set[int]]:
    """Clear outputs, Run All, wait until every cell ran (or one failed) and the kernel is idle.
    清除输出后全部运行，等待所有单元运行完毕（或出错）且内核空闲

    Returns:
        The final state and the indices of cells in which a progress-bar widget was seen while running.
    """
    driver.execute_script("return window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    bars: set[int] = set()
    settled = []

    def finished(state):
        bars.update(i for i, c in enumerate(state["cells"]) if c["bars"])
        code = [c for c in state["cells"] if c["type"] == "code" and c["source"].strip()]
        failed = any(o["output_type"] == "error" for c in code for o in c["outputs"])
        done = state["kernel"] == "idle" and not any(c["running"] for c in code) and (
            failed or all(c["count"] is not None for c in code))
        settled.append(done)
        return state if done and settled[-2:] == [True, True] else None   # idle on two polls in a row

    return _wait(driver, f"Run All of {name}", RUN_TIMEOUT_S, finished), bars


def _problems(state: dict) -> list[str]:
    """Error outputs and stderr streams, one line each. 错误输出与 stderr 输出"""
    found = []
    for i, cell in enumerate(state["cells"]):
        for out in cell["outputs"]:
            if out["output_type"] == "error":
                found.append(f"cell {i}: {out['ename']}: {out['evalue']}")
            elif out["output_type"] == "stream" and out["name"] == "stderr":
                text = out["text"] if isinstance(out["text"], str) else "".join(out["text"])
                found.append(f"cell {i}: stderr: {text.strip()[:300]}")
    return found


def _cell_element(driver, index: int):
    """Cell ``index`` of the open notebook (the same numbering as the state's ``cells``), scrolled into view.
    打开的 notebook 中第 index 个单元格（与状态中的编号一致），并滚动到可见处
    """
    return driver.execute_script(
        "const node = window.jupyterapp.shell.currentWidget.content.widgets[arguments[0]].node;"
        "node.scrollIntoView({block: 'start'}); return node;", index)


# The last picture in cell ``arguments[0]``, read in one script: the explorer replaces its <img> when it redraws,
# so a Selenium handle to the old one can go stale between finding it and reading it.
# 在一次脚本调用中读取图片：浏览器重绘时会替换 <img>，分两步读取可能遇到失效的元素
_PICTURE_JS = """
const cell = window.jupyterapp.shell.currentWidget.content.widgets[arguments[0]];
const images = cell ? cell.node.querySelectorAll('.jp-OutputArea img') : [];
return images.length ? images[images.length - 1].getAttribute('src') || '' : '';
"""


def _picture(driver, index: int) -> str:
    return driver.execute_script(_PICTURE_JS, index)


def _move_slider(driver, cell) -> None:
    """Move the first (sample) slider one step right with the keyboard, as a student can. 用键盘把样本滑块右移一步"""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    handle = cell.find_elements(By.CSS_SELECTOR, ".widget-slider .noUi-handle")[0]
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT)


def _check_explorer(driver, state: dict, name: str, stem: str) -> None:
    """The explorer shows sliders; moving one redraws the picture. 浏览器显示滑块，拖动后图像改变"""
    index = next(i for i, c in enumerate(state["cells"]) if c["type"] == "code" and "explore(" in c["source"])
    assert state["cells"][index]["sliders"] >= 1, f"{name}: the explorer cell {index} shows no slider"
    cell = _cell_element(driver, index)
    before = _picture(driver, index)
    assert before.startswith("data:image/png"), f"{name}: the explorer shows no picture"
    _move_slider(driver, cell)
    deadline = time.monotonic() + 60
    while _picture(driver, index) in (before, "") and time.monotonic() < deadline:
        time.sleep(0.5)
    cell.screenshot(str(SHOTS / f"{stem}_explorer.png"))
    assert _picture(driver, index) not in (before, ""), f"{name}: moving the sample slider did not change the picture"


def _save(driver, name: str) -> None:
    driver.execute_script("window.jupyterapp.commands.execute('docmanager:save')")
    _wait(driver, f"{name} to be saved", 60, lambda s: not s["dirty"])


def _reload(driver, name: str) -> dict:
    """Reload the page (the kernel stays alive) and let widgets restore. 刷新页面（内核仍在运行）并等待控件恢复"""
    driver.refresh()
    state = _wait(driver, f"{name} to reopen after the reload", 120,
                  lambda s: s if s["path"].endswith(name) and s["kernel"] == "idle" else None)
    explorer = [i for i, c in enumerate(state["cells"]) if c["type"] == "code" and "explore(" in c["source"]]
    if explorer:   # the explorer's models come back from the live kernel 控件模型从内核恢复
        state = _wait(driver, "the explorer to render again", 60,
                      lambda s: s if s["cells"][explorer[0]]["sliders"] or s["widgetErrors"] else None)
    time.sleep(3)                                              # late renderers 等待较晚的渲染
    return driver.execute_script(_STATE_JS)


def test_kernel_is_the_repo_venv_without_ci_switches(lab, driver) -> None:
    """The kernel is .venv's python and sees no CI/papermill/headless switch. 内核来自 .venv 且没有 CI 等开关"""
    _open(driver, lab, NOTEBOOKS[0])
    code = ("import os, sys; print(sys.prefix); print(sorted(k for k in os.environ if k in "
            "{'CI', 'UNET_COURSE_HEADLESS', 'UNET_COURSE_QUIET', 'WANDB_MODE'} or k.startswith('PAPERMILL')))")
    prefix, switches = driver.execute_async_script(_KERNEL_JS, code).strip().splitlines()[-2:]
    assert Path(prefix).resolve() == VENV.resolve(), f"kernel python is {prefix}, not {VENV}"
    assert switches == "[]", f"the kernel sees {switches}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_in_jupyterlab(lab, driver, name: str) -> None:
    stem = name.split("_")[0]
    start = time.monotonic()
    state = _open(driver, lab, name)
    time.sleep(3)                                              # let JupyterLab write what it wants 等待可能的改写
    state = driver.execute_script(_STATE_JS)
    assert not state["dirty"] and not state["tabDirty"], f"{name} is marked unsaved right after opening"

    state, bars = _run_all(driver, name)
    driver.save_screenshot(str(SHOTS / f"{stem}_run.png"))
    assert not _problems(state), f"{name}: " + "\n".join(_problems(state))
    if any("explore(" in c["source"] for c in state["cells"] if c["type"] == "code"):
        _check_explorer(driver, state, name, stem)
    if stem == "04":   # the training cell shows tqdm as a widget 训练单元格以控件显示 tqdm
        assert any("fit(" in state["cells"][i]["source"] for i in bars), \
            f"{name}: no progress-bar widget was seen in a training cell (seen in cells {sorted(bars)})"

    _save(driver, name)
    state = _reload(driver, name)
    shown = [i for i, c in enumerate(state["cells"]) if "explore(" in c["source"] or i in bars]
    if shown:                                                  # the cell a reload could break 刷新可能损坏的单元格
        _cell_element(driver, shown[0])
    driver.save_screenshot(str(SHOTS / f"{stem}_reloaded.png"))
    assert state["widgetErrors"] == 0, f"{name}: {state['widgetErrors']} x '{WIDGET_ERROR}' after a reload"
    for session in lab.api("sessions"):                          # free the CPU for the next one 释放 CPU
        lab.api(f"sessions/{session['id']}", method="DELETE")
    print(f"{name}: {time.monotonic() - start:.0f} s in JupyterLab")


# A two-cell notebook for the progress bar alone: one bar that removes itself, one that stays as a line.
# 只测试进度条的两单元 notebook：一个结束后消失，一个留下一行文本
_BAR_CELLS = (
    "import time\nfrom unet_course.progress import progress_bar\n"
    "for _ in progress_bar(range(8), desc='gone', leave=False):\n    time.sleep(0.5)",
    "for _ in progress_bar(range(4), desc='kept'):\n    time.sleep(0.5)\nprint('done')",
)


def test_progress_bar_survives_a_reload(lab, driver) -> None:
    """A widget while it runs; after a save and a reload, text and no "Error displaying widget".
    运行时是控件；保存并刷新后只有文本，没有 "Error displaying widget"
    """
    import nbformat

    from unet_course.notebook_tools import KERNELSPEC, WIDGET_VIEW

    name = "progress_bar_demo.ipynb"
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": dict(KERNELSPEC)})
    nb.cells = [nbformat.v4.new_code_cell(src) for src in _BAR_CELLS]
    nbformat.write(nb, lab.root / "notebooks" / name)
    _open(driver, lab, name)
    state, bars = _run_all(driver, name)
    assert not _problems(state), "\n".join(_problems(state))
    assert bars == {0, 1}, f"a progress-bar widget showed in cells {sorted(bars)}, expected both"
    _save(driver, name)
    saved = nbformat.read(lab.root / "notebooks" / name, as_version=4)
    assert not [o for c in saved.cells for o in c.outputs if WIDGET_VIEW in o.get("data", {})], \
        "a widget view was saved: a reload or a new kernel would show 'Error displaying widget'"
    state = _reload(driver, name)
    driver.save_screenshot(str(SHOTS / "progress_bar_reloaded.png"))
    assert state["widgetErrors"] == 0, f"{state['widgetErrors']} x '{WIDGET_ERROR}' after a reload"
    texts = [o["data"]["text/plain"] for c in state["cells"] for o in c["outputs"] if "text/plain" in o.get("data", {})]
    assert [t.split("|")[0].strip() for t in texts] == ["kept: 100%"], texts
    for session in lab.api("sessions"):
        lab.api(f"sessions/{session['id']}", method="DELETE")
