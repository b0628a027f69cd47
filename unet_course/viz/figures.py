"""Figures for the course: side-by-side panels, overlays, probability histograms, training curves and tiling.
课程用的图：并排面板、叠加图、概率直方图、训练曲线与滑动窗口切片示意

**Return the figure.** Functions build a :class:`matplotlib.figure.Figure` and return it; they never call
``plt.show()``. In Jupyter the returned figure is displayed once; under papermill/CI (Agg backend) nothing pops up.
函数只返回 Figure，不调用 plt.show()；在 Jupyter 中只显示一次，在无界面环境（Agg）下也能安全运行
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from ..inference import Prediction, blend_weights, tile_starts
from .images import class_indices, colorize, display_image, error_map, overlay, to_numpy


def _new_figure(n_axes: int, figsize: tuple[float, float] | None = None, ncols: int | None = None):
    """A Figure with ``n_axes`` axes in a row (or a grid), detached from pyplot so it is shown only once.
    新建包含 n_axes 个子图的 Figure，并与 pyplot 解绑，因此只显示一次
    """
    ncols = ncols or n_axes
    nrows = int(np.ceil(n_axes / ncols))
    # 经 pyplot 创建可确保 Jupyter 的内联显示已注册；随即 close，避免单元结束时再自动显示一次
    fig = plt.figure(figsize=figsize or (3.2 * ncols, 3.2 * nrows), layout="constrained")
    plt.close(fig)
    axes = [fig.add_subplot(nrows, ncols, k + 1) for k in range(n_axes)]
    return fig, axes


def _panels(image: Any, truth: Any, prediction: Any, probs: Any, mask_values: Sequence[int] | None,
            valid: Any, errors: bool, mean: Any, std: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    """``(title, array, imshow options)`` of each panel of :func:`show_panels`. 各面板的标题、数组与显示参数"""
    panels: list[tuple[str, Any, dict[str, Any]]] = [("image", display_image(image, mean, std), {"cmap": "gray"})]
    valid_np = None if valid is None else to_numpy(valid).astype(bool)

    def coloured(lab: np.ndarray) -> np.ndarray:
        return colorize(lab if valid_np is None else np.where(valid_np, lab, -1))   # 视野外显示为忽略色

    truth_idx = None if truth is None else class_indices(truth, mask_values)
    pred_idx = None if prediction is None else class_indices(prediction)          # 预测总是类别索引
    if truth_idx is not None:
        panels.append(("truth", coloured(truth_idx), {}))
    if pred_idx is not None:
        panels.append(("prediction", coloured(pred_idx), {}))
    if probs is not None:
        p = to_numpy(probs)
        fg = p[1] if p.shape[0] == 2 else p.max(axis=0)
        panels.append(("P(foreground)" if p.shape[0] == 2 else "max probability", fg,
                       {"cmap": "magma", "vmin": 0.0, "vmax": 1.0}))
    if errors and truth_idx is not None and pred_idx is not None:
        panels.append(("errors: TP white, FP red, FN blue", error_map(pred_idx, truth_idx, valid_np), {}))
    return panels


def show_panels(
    image: Any,
    truth: Any = None,
    prediction: Any = None,
    *,
    mask_values: Sequence[int] | None = None,
    valid: Any = None,
    probs: Any = None,
    titles: Sequence[str] | None = None,
    errors: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    figsize: tuple[float, float] | None = None,
):
    """Image | truth | prediction side by side (panels only for what is given).
    并排显示 图像 | 真值 | 预测（只显示传入的部分）

    Args:
        image: uint8 ``(H, W[, C])`` or a normalised ``(C, H, W)`` tensor (pass ``mean``/``std``). 图像
        truth: ``(H, W)`` class indices, or raw mask values together with ``mask_values``. 真值掩码
        prediction: ``(H, W)`` class indices, or a :class:`~unet_course.inference.Prediction` (its ``labels``
            and ``probs``). 预测
        mask_values: raw values in class order, used to read a raw ``truth``. 原始取值（按类别顺序）
        valid: bool ``(H, W)``; pixels outside are drawn in the ignore colour. 评分区域
        probs: optional ``(K, H, W)`` probabilities; adds a panel of ``probs[1]`` (or the max probability).
            可选概率图面板
        titles: one title per panel. 各面板标题
        errors: add a TP/FP/FN panel (needs truth and prediction). 添加误差图面板
        mean, std: undo the normalisation of a tensor image. 还原归一化
        figsize: matplotlib figure size. 图尺寸

    Returns:
        The :class:`~matplotlib.figure.Figure`; ``len(fig.axes)`` equals the number of panels.
    """
    if isinstance(prediction, Prediction):
        probs = prediction.probs if probs is None else probs
        prediction = prediction.labels
    panels = _panels(image, truth, prediction, probs, mask_values, valid, errors, mean, std)
    fig, axes = _new_figure(len(panels), figsize)
    for k, (ax, (title, data, kwargs)) in enumerate(zip(axes, panels)):
        ax.imshow(data, interpolation="nearest", **kwargs)
        ax.set_title(titles[k] if titles is not None and k < len(titles) else title, fontsize=9)
        ax.set_axis_off()
    return fig


def show_overlay(image: Any, labels: Any, *, alpha: float = 0.5, mask_values: Sequence[int] | None = None,
                 title: str | None = None, figsize: tuple[float, float] = (5.0, 5.0)):
    """One axis: the image with the mask's classes painted over it (see :func:`overlay`). 单个子图：图像叠加掩码

    Returns:
        The Figure (one axis).
    """
    fig, (ax,) = _new_figure(1, figsize)
    ax.imshow(overlay(image, labels, alpha=alpha, mask_values=mask_values), interpolation="nearest")
    ax.set_title(title or "overlay", fontsize=9)
    ax.set_axis_off()
    return fig


def plot_prob_histogram(probs: Any, target: Any = None, *, valid: Any = None, threshold: float | None = 0.5,
                        bins: int = 50, log: bool = True, figsize: tuple[float, float] = (5.0, 3.2)):
    """Histogram of the foreground probability, split by the true class when ``target`` is given.
    前景概率的直方图；给出 target 时按真实类别分开画

    A well-trained binary model pushes most pixels to 0 or 1; the threshold line shows which side each bar ends
    on. 训练良好的模型会把大多数像素推向 0 或 1；竖线标出阈值

    Args:
        probs: ``(K, H, W)`` probabilities (uses ``probs[1]``) or ``(H, W)`` foreground probability. 概率
        target: ``(H, W)`` class indices (``255`` ignored). 真实类别索引
        valid: bool ``(H, W)`` pixels to count. 参与统计的像素
        threshold: draw a vertical line there (``None``: no line). 阈值线
        bins: histogram bins. 直方图分箱数
        log: logarithmic counts (background usually dwarfs foreground). 纵轴取对数

    Returns:
        The Figure (one axis).
    """
    p = to_numpy(probs).astype(np.float32)
    fg = p[1] if p.ndim == 3 else p
    keep = np.ones(fg.shape, dtype=bool) if valid is None else to_numpy(valid).astype(bool)
    fig, (ax,) = _new_figure(1, figsize)
    edges = np.linspace(0.0, 1.0, bins + 1)
    if target is None:
        ax.hist(fg[keep].ravel(), bins=edges, color="tab:gray", log=log)
    else:
        t = to_numpy(target)
        keep = keep & (t != 255) & (t >= 0)
        ax.hist(fg[keep & (t == 0)].ravel(), bins=edges, alpha=0.6, color="tab:blue", label="true background", log=log)
        ax.hist(fg[keep & (t > 0)].ravel(), bins=edges, alpha=0.6, color="tab:red", label="true foreground", log=log)
        ax.legend(fontsize=8)
    if threshold is not None:
        ax.axvline(float(threshold), color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("P(foreground)")
    ax.set_ylabel("pixels")
    return fig


def _history_dict(history: Any) -> dict[str, list[float]]:
    """A fit history (dict, dataclass, or object with list attributes) -> dict of lists. 训练历史 -> 列表字典"""
    if isinstance(history, dict):
        data = history
    elif hasattr(history, "to_dict") and callable(history.to_dict):
        data = history.to_dict()
    elif hasattr(history, "as_dict") and callable(history.as_dict):
        data = history.as_dict()
    elif dataclasses.is_dataclass(history) and not isinstance(history, type):
        data = dataclasses.asdict(history)
    else:
        data = {k: v for k, v in vars(history).items() if not k.startswith("_")}
    out = {}
    for key, value in data.items():
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) or v is None for v in value):
            out[key] = [float("nan") if v is None else float(v) for v in value]
    return out


def plot_history(history: Any, figsize: tuple[float, float] | None = None):
    """Training curves: loss, validation scores and learning rate, one axis each (only those present).
    训练曲线：损失、验证指标和学习率，各占一个子图（只画存在的部分）

    Args:
        history: ``fit()``'s History, or a dict such as ``{"train_loss": [...], "val_loss": [...],
            "val_dice": [...], "lr": [...]}``. Keys holding ``loss`` go to the first axis, ``lr`` to the
            last (log scale), and other per-epoch lists (``val_dice``, ``val_iou``, ...) to the middle one.
            fit() 返回的历史或字典：loss 画在第一个子图，lr 画在最后（对数坐标），其余指标在中间

    Returns:
        The Figure with 1 to 3 axes.

    Raises:
        ValueError: the history holds no per-epoch lists.
    """
    data = _history_dict(history)
    skip = {"epoch", "epochs", "step", "steps", "seconds", "time", "epoch_time", "epoch_seconds", "wall_time"}
    losses = {k: v for k, v in data.items() if "loss" in k}
    rates = {k: v for k, v in data.items() if k == "lr" or k.endswith("_lr")}
    scores = {k: v for k, v in data.items() if k not in losses and k not in rates and k not in skip}
    groups = [(title, g) for title, g in (("loss", losses), ("validation", scores), ("learning rate", rates)) if g]
    if not groups:
        raise ValueError(f"plot_history: no per-epoch lists found in the history (keys: {sorted(data)}).")
    fig, axes = _new_figure(len(groups), figsize or (3.8 * len(groups), 3.0))
    for ax, (title, group) in zip(axes, groups):
        for key, values in group.items():
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=key)
        if title == "learning rate" and all(v > 0 for vals in group.values() for v in vals if v == v):
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig


def plot_tiling(image: Any, tile: int, overlap: float = 0.25, blend: str = "gaussian",
                figsize: tuple[float, float] | None = None):
    """Where the sliding-window tiles fall, and the blending weight each pixel collects.
    滑动窗口切片的位置，以及每个像素累计得到的融合权重

    Args:
        image: uint8 ``(H, W[, C])`` image, or just its ``(H, W)`` size as a tuple. 图像或其尺寸
        tile: tile size in pixels. 切片大小
        overlap: overlap fraction. 重叠比例
        blend: ``"gaussian"`` | ``"linear"`` | ``"constant"``. 融合方式

    Returns:
        The Figure with 2 axes and a colour bar: the tile outlines over the image, and the summed weights (the
        normaliser of :func:`unet_course.inference.sliding_window_inference`). 切片轮廓与权重之和
    """
    if isinstance(image, tuple) and len(image) == 2:
        height, width = int(image[0]), int(image[1])
        shown = np.zeros((height, width), dtype=np.uint8)
    else:
        shown = display_image(image)
        height, width = shown.shape[:2]
    ys, xs = tile_starts(max(height, tile), tile, overlap), tile_starts(max(width, tile), tile, overlap)
    weight = blend_weights(tile, overlap, blend).numpy()
    norm = np.zeros((max(height, tile), max(width, tile)), dtype=np.float32)
    for y in ys:
        for x in xs:
            norm[y:y + tile, x:x + tile] += weight          # 与滑动窗口推理相同的累加
    fig, (ax_tiles, ax_norm) = _new_figure(2, figsize or (8.0, 4.0))
    ax_tiles.imshow(shown, cmap="gray", interpolation="nearest")
    colours = ["tab:red", "tab:cyan", "tab:orange", "tab:green"]
    for k, (y, x) in enumerate((y, x) for y in ys for x in xs):
        ax_tiles.add_patch(Rectangle((x - 0.5, y - 0.5), tile, tile, fill=False, linewidth=1.0,
                                     edgecolor=colours[k % len(colours)]))
    ax_tiles.set_xlim(-0.5, max(width, tile) - 0.5)
    ax_tiles.set_ylim(max(height, tile) - 0.5, -0.5)
    ax_tiles.set_title(f"{len(ys) * len(xs)} tiles of {tile} px, overlap {overlap:.0%}", fontsize=9)
    im = ax_norm.imshow(norm[:height, :width], cmap="viridis", interpolation="nearest")
    ax_norm.set_title(f"sum of {blend} weights", fontsize=9)
    fig.colorbar(im, ax=ax_norm, shrink=0.8)
    for ax in (ax_tiles, ax_norm):
        ax.set_axis_off()
    return fig


__all__ = ["plot_history", "plot_prob_histogram", "plot_tiling", "show_overlay", "show_panels"]
