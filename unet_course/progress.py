"""Progress bars for every training and prediction loop: a widget while it runs, plain text once it ends.
所有训练与预测循环共用的进度条：运行时是控件，结束后变为纯文本

A ``tqdm.notebook`` bar is an ipywidget. Its output in the notebook file only names a widget model
(``application/vnd.jupyter.widget-view+json``), and that model lives in the kernel. When the bar closes, or the page
is reloaded, or the notebook is reopened with a new kernel, JupyterLab finds no model and shows
"Error displaying widget: model not found". So in a live notebook :func:`progress_bar` shows the widget through a
display handle, and on close replaces it with a static text line (``leave=True``) or with nothing
(``leave=False``). The saved notebook then holds text, which every viewer renders.
tqdm 的 notebook 进度条是 ipywidget，保存的输出只引用内核中的控件模型；进度条关闭、页面刷新或重新打开后
模型不存在，JupyterLab 会显示 "Error displaying widget: model not found"。因此这里通过显示句柄展示控件，
结束时把它替换为一行静态文本（leave=True）或清空（leave=False），保存下来的只有文本

Outside a notebook (a terminal) it is an ordinary text ``tqdm`` bar on stderr.
在终端中就是普通的 tqdm 文本进度条（输出到 stderr）
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from .env import in_notebook, is_headless

#: Accepted values of ``mode``. mode 的取值
PROGRESS_MODES = ("auto", "widget", "text", "off")


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_mode(mode: str = "auto") -> str:
    """``"auto"`` -> ``"widget"`` in a live notebook kernel with ipywidgets (not headless), else ``"text"``.
    解析 auto：在可交互的 notebook 内核中用控件，否则用文本

    Raises:
        ValueError: ``mode`` is not one of :data:`PROGRESS_MODES`.
    """
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress mode {mode!r} is not one of {PROGRESS_MODES}.")
    if mode != "auto":
        return mode
    return "widget" if in_notebook() and not is_headless() and _widgets_available() else "text"


def _widget_bar_class() -> type:
    """A ``tqdm.notebook`` subclass whose closed bar leaves text, not a widget view. 关闭后只留文本的控件进度条"""
    from IPython.display import display
    from tqdm.notebook import tqdm as notebook_tqdm

    class WidgetBar(notebook_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["display"] = False                       # we display it ourselves, with a handle 自己显示以获得句柄
            super().__init__(*args, **kwargs)
            self._handle = None if self.disable else display(self.container, display_id=True)

        def final_text(self) -> str:
            """The finished bar as one text line (tqdm's own format, 10-character bar). 结束时的一行文本"""
            meter = dict(self.format_dict)
            meter["ncols"] = None                            # the widget uses "100%", text needs a number 文本宽度
            return self.format_meter(**meter)

        def close(self) -> None:
            handle, self._handle = getattr(self, "_handle", None), None
            if self.disable or handle is None:               # already closed (tqdm calls close again from __del__)
                super().close()
                return
            failed = bool(self.total and self.n < self.total)   # stopped early: keep the line, like tqdm 提前停止
            text = self.final_text()
            # Replace the widget view in the output area (and in the saved file) before the model goes away.
            # 先把输出区（以及保存的文件）中的控件视图替换为文本，再关闭控件模型
            handle.update({"text/plain": text} if self.leave or failed else {}, raw=True)
            container = self.container
            super().close()
            container.close()                                # free the kernel-side model 释放内核中的控件模型

    return WidgetBar


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    leave: bool = True,
    mode: str = "auto",
    **kwargs: Any,
) -> Any:
    """A tqdm progress bar that a notebook reload cannot break. 刷新页面也不会损坏的进度条

    Use it like ``tqdm``: iterate over it, or call ``update(n)``/``set_postfix(...)`` and ``close()`` (best in a
    ``finally`` block, or use it as a context manager). 用法与 tqdm 相同

    Args:
        iterable: what to iterate over (optional). 要迭代的对象
        total: number of steps (default ``len(iterable)``). 总步数
        desc: text in front of the bar, e.g. ``"Epoch 1/6"``. 进度条前的描述
        unit: name of one step, e.g. ``"batch"``. 每一步的单位
        leave: keep a text line of the finished bar (True) or remove it (False). 结束后是否保留一行文本
        mode: ``"auto"`` (widget in a live notebook, text elsewhere), ``"widget"``, ``"text"`` (stderr; stdout in
            a notebook, so it is not shown as an error) or ``"off"`` (a disabled bar: same methods, no output).
        **kwargs: passed on to tqdm (``dynamic_ncols``, ``postfix``, ...). 其余参数传给 tqdm

    Returns:
        A ``tqdm`` instance. 返回 tqdm 对象

    Example:
        >>> bar = progress_bar(total=3, desc="demo", mode="off")
        >>> for _ in range(3):
        ...     bar.update(1)
        >>> bar.disable                     # "off": the same methods, no output 相同的方法，不输出
        True
        >>> bar.close()
    """
    resolved = resolve_mode(mode)
    options = dict(kwargs, total=total, desc=desc, unit=unit, leave=leave)
    if resolved == "widget":
        return _widget_bar_class()(iterable, **options)
    from tqdm.std import tqdm as text_tqdm

    if resolved == "off":
        return text_tqdm(iterable, disable=True, **options)
    options.setdefault("file", sys.stdout if in_notebook() else sys.stderr)   # 在 notebook 中 stderr 会显示为红色
    return text_tqdm(iterable, **options)


__all__ = ["PROGRESS_MODES", "progress_bar", "resolve_mode"]
