"""A sample explorer: a sample slider, a threshold slider and the panels of the chosen sample.
样本浏览器：样本滑块、阈值滑块，以及所选样本的面板

In a Jupyter kernel :func:`explore` returns an ``ipywidgets`` box. In a headless run (``unet-course course``, the
tests: :func:`unet_course.env.is_headless`) nobody can move a slider, so it draws the first sample as a plain
figure and returns a :class:`StaticExplorer` with the same attributes.
在运行中的 Jupyter 内核里返回 ipywidgets 控件；无界面运行时直接绘制第一个样本，返回接口相同的 StaticExplorer
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..env import is_headless
from ..inference import Prediction
from ..metrics import probs_to_labels
from .figures import show_panels
from .images import to_numpy


def _sample(source: Any, i: int) -> tuple[np.ndarray, Any, Any, str]:
    """``(image, truth, valid, name)`` of sample ``i`` from a dataset with ``raw`` or a list. 取第 i 个样本"""
    if hasattr(source, "raw"):
        image, mask, valid = source.raw(i)
        names = getattr(source, "names", None) or []
        return image, mask, valid, names[i] if i < len(names) else f"#{i}"
    item = source[i]
    if isinstance(item, dict):
        return item["image"], item.get("mask"), item.get("valid"), str(item.get("name", f"#{i}"))
    if isinstance(item, (tuple, list)):
        image = item[0]
        truth = item[1] if len(item) > 1 else None
        valid = item[2] if len(item) > 2 else None
        return image, truth, valid, f"#{i}"
    return item, None, None, f"#{i}"


class StaticExplorer:
    """What :func:`explore` returns in a headless run: the same ``render``/``redraw``/slider attributes, no widgets.
    无界面运行时 explore 的返回值：接口相同，但没有控件
    """

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def __repr__(self) -> str:
        return (f"StaticExplorer({self.n} samples; headless run, the sliders need a live Jupyter kernel: "
                "open the notebook in JupyterLab to explore)")


def _controls(n: int, threshold: float, has_predictor: bool) -> tuple[Any, Any, Any, Any]:
    """``(sample slider, threshold slider, output, box)``: widgets in Jupyter, plain stand-ins when headless.
    控件：Jupyter 中为 ipywidgets，无界面时为同样属性的替身
    """
    if is_headless():
        # headless run: nobody can move a slider, so no widgets 无界面运行时没有人能拖动滑块，不创建控件
        sample = SimpleNamespace(value=0, min=0, max=n - 1)
        thresh = SimpleNamespace(value=threshold, min=0.01, max=0.99, disabled=not has_predictor)
        return sample, thresh, None, StaticExplorer(n)
    import ipywidgets as widgets  # optional heavy dependency, only needed for the live explorer 仅交互浏览器需要

    sample = widgets.IntSlider(value=0, min=0, max=n - 1, description="sample", continuous_update=False)
    thresh = widgets.FloatSlider(value=threshold, min=0.01, max=0.99, step=0.01, description="threshold",
                                 continuous_update=False, disabled=not has_predictor)
    out = widgets.Output()
    return sample, thresh, out, widgets.VBox([widgets.HBox([sample, thresh]), out])


def _as_output(fig: Any) -> dict[str, Any]:
    """``fig`` as one stored output (PNG, as the inline backend draws it) for an ``Output`` widget's ``outputs``.
    把图转换为一条输出记录（PNG，与 inline 后端一致），直接写入 Output 控件

    Why not ``with out: display(fig)``: while a cell runs, nbclient (papermill, nbconvert) mimics a capturing
    Output widget by sending messages on the shell channel it polls for the cell's reply, which can hang the run
    for good (jupyter/nbclient#312; about 1 in 4 papermill runs of notebook 05). Setting ``outputs`` is one state
    update and nothing for nbclient to mimic. 捕获输出时 nbclient 会在它等待回复的通道上发送消息，可能永久卡住
    """
    # optional: IPython comes with ipywidgets, which this live path already needs 实时浏览器本就依赖 IPython
    from IPython.core.pylabtools import print_figure

    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": print_figure(fig, fmt="png", base64=True), "text/plain": repr(fig)}}


def _display(fig: Any) -> None:
    """Show ``fig`` through IPython when it is there (a plain script keeps only the Figure). 通过 IPython 显示"""
    try:
        # optional: IPython is only present inside Jupyter/IPython 可选依赖，仅在 IPython 中存在
        from IPython.display import display
    except ImportError:
        return
    display(fig)


def explore(
    source: Any,
    predictor: Callable[[np.ndarray], Any] | None = None,
    *,
    threshold: float = 0.5,
    mode: str | None = None,
    mask_values: Sequence[int] | None = None,
    figsize: tuple[float, float] | None = None,
):
    """An ``ipywidgets`` explorer: a sample slider, a threshold slider and the panels of the chosen sample.
    ipywidgets 浏览器：样本滑块、阈值滑块，显示所选样本的面板

    Args:
        source: a dataset with ``raw(i)`` (and ``names``), or a list of images, ``(image, mask[, valid])``
            tuples or dicts with ``"image"``/``"mask"``. 数据集或样本列表
        predictor: optional ``image -> Prediction`` (or ``-> (K, H, W)`` probabilities), e.g.
            ``lambda img: predict_with_meta(model, meta, img)``. Called once per sample and cached; the threshold
            slider re-applies :func:`unet_course.metrics.probs_to_labels` to the cached probabilities.
            可选预测函数（结果缓存，阈值滑块只重新应用决策规则）
        threshold: initial foreground threshold. 初始阈值
        mode: the decision rule's mode, ``"binary"`` or ``"multiclass"``; with two classes the threshold slider
            moves the cut in either mode, with more the labels are the arg-max;
            ``None``: the mode of the predictor's :class:`~unet_course.inference.Prediction`, or ``"multiclass"``
            for bare probabilities. 决策规则；None 时取 Prediction 的模式
        mask_values: raw values in class order (default: ``source.mask_values`` when present). 原始取值
        figsize: size of each drawn figure. 图尺寸

    Returns:
        An ``ipywidgets.VBox`` (a :class:`StaticExplorer` when headless); show it as the last expression of a
        cell. ``box.render(i, threshold)`` draws a sample and returns the Figure; ``box.last_figure`` holds the
        latest one. 返回 VBox；box.render(i, threshold) 可直接绘制并返回 Figure

    Raises:
        ValueError: the source holds no samples.
    """
    if (n := len(source)) == 0:
        raise ValueError("explore: the source holds no samples.")
    values = mask_values if mask_values is not None else getattr(source, "mask_values", None)
    sample, thresh, out, box = _controls(n, threshold, predictor is not None)
    cache: dict[int, tuple[np.ndarray, str]] = {}

    def probs_of(i: int, image: np.ndarray) -> tuple[np.ndarray, str]:
        if i not in cache:
            result = predictor(image)                       # type: ignore[misc]
            if isinstance(result, Prediction):
                cache[i] = (result.probs, mode or result.mode)
            else:
                cache[i] = (to_numpy(result), mode or "multiclass")
        return cache[i]

    def render(i: int, thr: float):
        image, truth, valid, name = _sample(source, int(i))
        probs, labels, title = None, None, name
        if predictor is not None:
            probs, rule = probs_of(int(i), image)
            labels = probs_to_labels(probs, rule, thr).numpy()         # 与训练、预测同一条决策规则
            two = np.asarray(probs).shape[0] == 2                     # the rule thresholds any two classes 两类即用阈值
            title += f"  (threshold {thr:.2f})" if two else "  (arg-max)"
        fig = show_panels(image, truth, labels, mask_values=values, valid=valid, probs=probs,
                          errors=truth is not None and labels is not None, figsize=figsize)
        fig.suptitle(title, fontsize=10)
        box.last_figure = fig
        return fig

    def redraw(_change: Any = None) -> None:
        fig = render(sample.value, thresh.value)
        if out is None:
            _display(fig)
            return
        out.outputs = (_as_output(fig),)                   # one state update, no capture 一次状态更新，不捕获输出

    if out is not None:
        sample.observe(redraw, names="value")
        thresh.observe(redraw, names="value")
    box.render, box.redraw = render, redraw
    box.sample_slider, box.threshold_slider = sample, thresh
    box.last_figure = None
    redraw()
    return box


__all__ = ["StaticExplorer", "explore"]
