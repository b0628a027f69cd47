"""Pictures for the course: panels, overlays, probability histograms, training curves and a widget explorer.
课程用的可视化：并排面板、叠加图、概率直方图、训练曲线与 ipywidgets 浏览器

Two habits make masks readable:
两个习惯让掩码易读：

1. **Colour class indices, not raw values.** A ``{0, 1}`` mask shown with ``imshow`` on a 0..255 scale looks all
   black. Every mask here is first turned into class indices (through ``mask_values`` when given) and then
   coloured with the fixed :data:`PALETTE`, so class 1 is always a bright colour.
   按类别索引而非原始取值上色：{0, 1} 掩码按 0..255 显示会一片漆黑，这里统一映射到固定调色板
2. **Return the figure.** Functions build a :class:`matplotlib.figure.Figure` and return it; they never call
   ``plt.show()``. In Jupyter the returned figure is displayed once; under papermill/CI (Agg backend) nothing pops
   up. 函数只返回 Figure，不调用 plt.show()；在无界面环境（Agg）下也能安全运行
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from .env import is_headless

#: Fixed colours for class indices 0..K-1 (uint8 RGB); class 0 (background) is black. 类别索引的固定配色
PALETTE = np.array(
    [
        (0, 0, 0),          # 0 background 背景
        (255, 64, 64),      # 1 red 红
        (64, 200, 255),     # 2 sky blue 天蓝
        (255, 210, 0),      # 3 yellow 黄
        (80, 220, 100),     # 4 green 绿
        (200, 90, 255),     # 5 violet 紫
        (255, 140, 30),     # 6 orange 橙
        (0, 160, 160),      # 7 teal 青
        (255, 120, 200),    # 8 pink 粉
        (150, 150, 150),    # 9 grey 灰
    ],
    dtype=np.uint8,
)

#: Colour of ignored pixels (outside the FOV / ignore_index). 忽略像素的颜色
IGNORE_COLOUR = np.array((40, 40, 90), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Arrays 数组
# ----------------------------------------------------------------------------------------------------------------
def to_numpy(x: Any) -> np.ndarray:
    """torch tensor / PIL image / array -> numpy array (detached, on the CPU). 转为 numpy 数组"""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def display_image(image: Any, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> np.ndarray:
    """Any image -> something ``imshow`` shows correctly: uint8 ``(H, W, 3)`` or ``(H, W)``.
    把任意图像转为 imshow 可正确显示的形式

    Args:
        image: uint8 ``(H, W[, C])``, or a float ``(C, H, W)`` tensor as produced by a dataset (normalised; pass
            ``mean``/``std`` to undo it, otherwise it is min-max scaled). 原始图像或归一化后的张量
        mean, std: the normalisation to undo. 需要还原的归一化参数

    Returns:
        uint8 ``(H, W)`` (one channel) or ``(H, W, 3)``; a 4th (alpha) channel is dropped.
    """
    a = to_numpy(image)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)                          # (C, H, W) -> (H, W, C)
    elif a.ndim == 3 and a.shape[0] in (1, 3) and a.dtype != np.uint8:
        a = np.moveaxis(a, 0, -1)                          # 浮点张量默认按 (C, H, W) 处理
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        if mean is not None and std is not None:
            c = a.shape[-1] if a.ndim == 3 else 1
            m = np.asarray(mean, dtype=np.float32).reshape(-1)[:c]
            s = np.asarray(std, dtype=np.float32).reshape(-1)[:c]
            a = a * s + m                                  # 反归一化
            a = a * 255.0 if float(np.nanmax(m)) <= 1.0 else a
        else:
            lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
            a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3:
        a = a[..., :3]
        if a.shape[-1] == 1:
            a = a[..., 0]
    return a


def mask_to_indices(mask: Any, mask_values: Sequence[int] | None = None) -> np.ndarray:
    """A mask (class indices or raw values) -> int64 class indices ``(H, W)`` for colouring.
    把掩码（类别索引或原始取值）转为用于上色的类别索引

    With ``mask_values`` each raw value ``v`` becomes ``mask_values.index(v)`` (other values -> -1, drawn as
    ignored). Without it a mask whose values already are ``0..K-1`` is kept (with ``255`` read as
    ``ignore_index`` when classes other than 0 are present, as in a dataset item's ``"mask"``), and any other set
    of values (for example ``{0, 255}``) is ranked: the smallest value is class 0, the next class 1, and so on.
    给定 mask_values 时按其顺序映射；否则若已是 0..K-1（可带忽略值 255）则保持不变，其他取值（如 {0, 255}）按大小排序编号
    """
    m = to_numpy(mask)
    if m.ndim == 3:
        m = m[..., 0] if m.shape[-1] in (1, 3, 4) else m[0]
    if m.dtype == np.bool_:
        return m.astype(np.int64)
    if mask_values is not None:
        out = np.full(m.shape, -1, dtype=np.int64)
        for index, value in enumerate(mask_values):
            out[m == value] = index
        return out
    values = np.unique(m)
    small = values[values != 255]
    if np.issubdtype(m.dtype, np.integer) and small.size and small.min() >= 0 and small.max() < len(PALETTE):
        if 255 not in values:
            return m.astype(np.int64)                      # 已经是类别索引
        if (small > 0).any():
            # 类别索引加 ignore_index=255（数据集样本的 "mask"）：255 显示为忽略色
            return np.where(m == 255, -1, m).astype(np.int64)
    return np.searchsorted(values, m).astype(np.int64)     # 按取值大小编号


def colorize(labels: Any, palette: np.ndarray | None = None, ignore_index: int | None = 255) -> np.ndarray:
    """Class indices ``(H, W)`` -> uint8 RGB ``(H, W, 3)`` with a fixed palette.
    类别索引 -> 固定调色板的 RGB 图像

    Index ``i`` gets ``palette[i % len(palette)]`` (class 0 black, class 1 red, ...); ``ignore_index`` and negative
    values get :data:`IGNORE_COLOUR`. 忽略值和负值使用专门的颜色

    >>> colorize(np.array([[0, 1]]))[0, 1].tolist()
    [255, 64, 64]
    """
    pal = PALETTE if palette is None else np.asarray(palette, dtype=np.uint8)
    lab = to_numpy(labels).astype(np.int64)
    ignored = lab < 0
    if ignore_index is not None:
        ignored |= lab == ignore_index
    rgb = pal[np.where(ignored, 0, lab) % len(pal)]        # (H, W, 3)
    rgb[ignored] = IGNORE_COLOUR
    return rgb


def overlay(image: Any, labels: Any, alpha: float = 0.5, palette: np.ndarray | None = None,
            mask_values: Sequence[int] | None = None, background: int | None = 0) -> np.ndarray:
    """Blend class colours over an image; background pixels keep the image.
    把类别颜色半透明地叠加到图像上；背景像素保持原图

    Args:
        image: uint8 ``(H, W[, C])`` (or a normalised ``(C, H, W)`` tensor). 图像
        labels: ``(H, W)`` class indices or raw mask values (with ``mask_values``). 类别索引或原始取值
        alpha: opacity of the colour. 颜色不透明度
        palette: colours per class index (default :data:`PALETTE`). 调色板
        mask_values: raw values in class order, to read a raw mask. 原始取值（按类别顺序）
        background: class index left uncoloured (``None`` colours every class). 不上色的类别

    Returns:
        uint8 ``(H, W, 3)``.
    """
    img = display_image(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)       # 灰度 -> RGB
    lab = mask_to_indices(labels, mask_values)
    if lab.shape != img.shape[:2]:
        raise ValueError(f"overlay: mask shape {lab.shape} differs from the image shape {img.shape[:2]}.")
    colours = colorize(lab, palette).astype(np.float32)
    paint = np.ones(lab.shape, dtype=bool) if background is None else lab != background
    out = img.astype(np.float32)
    out[paint] = (1.0 - alpha) * out[paint] + alpha * colours[paint]
    return np.clip(out, 0, 255).astype(np.uint8)


def error_map(pred: Any, truth: Any, valid: Any = None) -> np.ndarray:
    """Binary error colours: TP white, FP red, FN blue, TN black, outside ``valid`` dark grey.
    二值误差图：TP 白、FP 红、FN 蓝、TN 黑，valid 之外为深灰

    Args:
        pred, truth: ``(H, W)`` class indices (foreground = class >= 1). 类别索引
        valid: bool ``(H, W)`` scored pixels. 参与评分的像素

    Returns:
        uint8 ``(H, W, 3)``.
    """
    p = to_numpy(pred) > 0
    t = to_numpy(truth)
    t_fg = (t > 0) & (t != 255)
    rgb = np.zeros((*p.shape, 3), dtype=np.uint8)
    rgb[p & t_fg] = (255, 255, 255)
    rgb[p & ~t_fg] = (255, 60, 60)
    rgb[~p & t_fg] = (60, 120, 255)
    skip = (t == 255) if valid is None else ~to_numpy(valid).astype(bool) | (t == 255)
    rgb[skip] = (60, 60, 60)
    return rgb


# ----------------------------------------------------------------------------------------------------------------
# Figures 图
# ----------------------------------------------------------------------------------------------------------------
def _new_figure(n_axes: int, figsize: tuple[float, float] | None = None, ncols: int | None = None):
    """A Figure with ``n_axes`` axes in a row (or a grid), detached from pyplot so it is shown only once.
    新建包含 n_axes 个子图的 Figure，并与 pyplot 解绑，因此只显示一次
    """
    import matplotlib.pyplot as plt

    ncols = ncols or n_axes
    nrows = int(np.ceil(n_axes / ncols))
    # 经 pyplot 创建可确保 Jupyter 的内联显示已注册；随即 close，避免单元结束时再自动显示一次
    fig = plt.figure(figsize=figsize or (3.2 * ncols, 3.2 * nrows), layout="constrained")
    plt.close(fig)
    axes = [fig.add_subplot(nrows, ncols, k + 1) for k in range(n_axes)]
    return fig, axes


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
        truth: ``(H, W)`` class indices or raw mask values. 真值掩码
        prediction: ``(H, W)`` mask, or a :class:`~unet_course.predict.Prediction` (its ``labels``). 预测
        mask_values: raw values in class order, used to read raw masks. 原始取值（按类别顺序）
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
    if prediction is not None and hasattr(prediction, "labels"):
        if probs is None:
            probs = prediction.probs
        prediction = prediction.labels
    panels: list[tuple[str, Any, dict[str, Any]]] = [("image", display_image(image, mean, std), {"cmap": "gray"})]
    valid_np = None if valid is None else to_numpy(valid).astype(bool)

    def coloured(mask: Any, values: Sequence[int] | None) -> np.ndarray:
        lab = mask_to_indices(mask, values)
        if valid_np is not None:
            lab = np.where(valid_np, lab, -1)             # 视野外显示为忽略色
        return colorize(lab)

    truth_idx = None
    if truth is not None:
        truth_idx = mask_to_indices(truth, mask_values)
        panels.append(("truth", coloured(truth, mask_values), {}))
    pred_idx = None
    if prediction is not None:
        pred_idx = mask_to_indices(prediction, None)
        panels.append(("prediction", coloured(pred_idx, None), {}))
    if probs is not None:
        p = to_numpy(probs)
        fg = p[1] if p.shape[0] == 2 else p.max(axis=0)
        panels.append(("P(foreground)" if p.shape[0] == 2 else "max probability", fg,
                       {"cmap": "magma", "vmin": 0.0, "vmax": 1.0}))
    if errors and truth_idx is not None and pred_idx is not None:
        panels.append(("errors: TP white, FP red, FN blue", error_map(pred_idx, truth_idx, valid_np), {}))
    fig, axes = _new_figure(len(panels), figsize)
    for k, (ax, (title, data, kwargs)) in enumerate(zip(axes, panels)):
        ax.imshow(data, interpolation="nearest", **kwargs)
        ax.set_title(titles[k] if titles is not None and k < len(titles) else title, fontsize=9)
        ax.set_axis_off()
    return fig


def show_overlay(image: Any, labels: Any, *, alpha: float = 0.5, mask_values: Sequence[int] | None = None,
                 title: str | None = None, figsize: tuple[float, float] = (5.0, 5.0)):
    """One axis: the image with the mask's classes painted over it. 单个子图：图像叠加掩码颜色

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
        keep = keep & (t != 255)
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
            "val_dice": [...], "lr": [...]}``. Keys ending in ``loss`` go to the first axis, ``lr`` to the
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
        The Figure with 2 axes: the tile outlines over the image, and the summed weights (the normaliser of
        :func:`unet_course.predict.sliding_window_inference`). 两个子图：切片轮廓与权重之和
    """
    from matplotlib.patches import Rectangle

    from .predict import blend_weights, tile_starts

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


# ----------------------------------------------------------------------------------------------------------------
# Explorer 交互式浏览器
# ----------------------------------------------------------------------------------------------------------------
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


#: Set (to any value) by :func:`unet_course.notebook_tools.run_course` for headless notebook runs.
#: 无界面运行 notebook 时设置的环境变量


class StaticExplorer:
    """What :func:`explore` returns in a headless run: the same ``render``/``redraw``/slider attributes, no widgets.
    无界面运行时 explore 的返回值：接口相同，但没有控件
    """

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def __repr__(self) -> str:
        return (f"StaticExplorer({self.n} samples; headless run, the sliders need a live Jupyter kernel: "
                "open the notebook in JupyterLab to explore)")


def explore(
    source: Any,
    predictor: Callable[[np.ndarray], Any] | None = None,
    *,
    threshold: float = 0.5,
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
            slider re-thresholds the cached probabilities. 可选预测函数（结果缓存，阈值滑块只重新取阈值）
        threshold: initial foreground threshold. 初始阈值
        mask_values: raw values in class order (default: ``source.mask_values`` when present). 原始取值
        figsize: size of each drawn figure. 图尺寸

    Returns:
        An ``ipywidgets.VBox``; show it as the last expression of a cell. ``box.render(i, threshold)`` draws a
        sample directly (used by tests) and returns the Figure; ``box.last_figure`` holds the latest one.
        返回 VBox；box.render(i, threshold) 可直接绘制并返回 Figure
    """
    n = len(source)
    if n == 0:
        raise ValueError("explore: the source holds no samples.")
    values = mask_values if mask_values is not None else getattr(source, "mask_values", None)
    cache: dict[int, np.ndarray] = {}
    if is_headless():
        # headless run (papermill, `unet-course course`): nobody can move a slider, and nbclient can hang on
        # widget output capture (jupyter/nbclient#312), so draw the first sample as a plain figure instead
        # 无界面运行时不创建控件（nbclient 在捕获控件输出时可能卡住），直接绘制第一个样本
        sample = SimpleNamespace(value=0, min=0, max=n - 1)
        thresh = SimpleNamespace(value=threshold, min=0.01, max=0.99, disabled=predictor is None)
        out = None
        box: Any = StaticExplorer(n)
    else:
        import ipywidgets as widgets

        sample = widgets.IntSlider(value=0, min=0, max=n - 1, description="sample", continuous_update=False)
        thresh = widgets.FloatSlider(value=threshold, min=0.01, max=0.99, step=0.01, description="threshold",
                                     continuous_update=False, disabled=predictor is None)
        out = widgets.Output()
        box = widgets.VBox([widgets.HBox([sample, thresh]), out])

    def probs_of(i: int, image: np.ndarray) -> np.ndarray:
        if i not in cache:
            result = predictor(image)                       # type: ignore[misc]
            cache[i] = to_numpy(result.probs if hasattr(result, "probs") else result)
        return cache[i]

    def render(i: int, thr: float):
        from .predict import probs_to_labels

        image, truth, valid, name = _sample(source, int(i))
        probs = labels = None
        if predictor is not None:
            probs = probs_of(int(i), image)
            labels = probs_to_labels(probs, thr if probs.shape[0] == 2 else None)
        fig = show_panels(image, truth, labels, mask_values=values, valid=valid, probs=probs,
                          errors=truth is not None and labels is not None, figsize=figsize)
        fig.suptitle(f"{name}" + (f"  (threshold {thr:.2f})" if predictor is not None else ""), fontsize=10)
        box.last_figure = fig
        return fig

    def show(fig: Any) -> None:
        try:
            from IPython.display import display

            display(fig)
        except ImportError:   # 没有 IPython 时只保留 Figure 对象
            pass

    def redraw(_change: Any = None) -> None:
        fig = render(sample.value, thresh.value)
        if out is None:
            show(fig)
            return
        with out:
            out.clear_output(wait=True)
            show(fig)

    if out is not None:
        sample.observe(redraw, names="value")
        thresh.observe(redraw, names="value")
    box.render = render
    box.redraw = redraw
    box.sample_slider = sample
    box.threshold_slider = thresh
    box.last_figure = None
    redraw()
    return box


__all__ = [
    "StaticExplorer",
    "PALETTE",
    "to_numpy",
    "display_image",
    "mask_to_indices",
    "colorize",
    "overlay",
    "error_map",
    "show_panels",
    "show_overlay",
    "plot_prob_histogram",
    "plot_history",
    "plot_tiling",
    "explore",
]
