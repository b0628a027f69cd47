"""Tests for unet_course.viz: figures have the right axes and masks never look all black.
可视化测试：子图数量正确，掩码不会显示成一片漆黑
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from unet_course import viz
from unet_course.errors import DataError
from unet_course.inference import Prediction, tile_starts


def _image(h: int = 24, w: int = 30) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _binary_mask(h: int = 24, w: int = 30) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    m[5:15, 8:20] = 1
    return m


def test_colorize_maps_class_one_to_a_bright_colour() -> None:
    rgb = viz.colorize(_binary_mask())
    assert rgb.shape == (24, 30, 3) and rgb.dtype == np.uint8
    assert rgb[10, 10].tolist() == viz.PALETTE[1].tolist()
    assert rgb[10, 10].max() >= 200            # 前景明亮
    assert rgb[0, 0].tolist() == [0, 0, 0]     # 背景为黑


def test_overlay_of_a_01_mask_is_not_all_black() -> None:
    black = np.zeros((24, 30, 3), dtype=np.uint8)
    out = viz.overlay(black, _binary_mask(), alpha=0.5)
    assert out.shape == (24, 30, 3)
    assert out.max() > 100                               # 前景像素被着色
    assert out[10, 10].sum() > 0 and out[0, 0].sum() == 0
    # 灰度图也得到 RGB 叠加
    gray = np.zeros((24, 30, 1), dtype=np.uint8)
    assert viz.overlay(gray, _binary_mask()).shape == (24, 30, 3)


def test_class_indices_read_raw_values_only_through_mask_values() -> None:
    """Raw values go through data.masks.values_to_indices; nothing is guessed from the values themselves.
    原始取值只能通过 mask_values 映射，不根据取值猜测
    """
    raw = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    assert viz.class_indices(raw, mask_values=[0, 255]).tolist() == [[0, 1], [1, 0]]
    # ISBI 约定：255 为类别 0，0 为类别 1（膜）
    assert viz.class_indices(raw, mask_values=[255, 0]).tolist() == [[1, 0], [0, 1]]
    with pytest.raises(DataError, match=r"value\(s\) 7 .*mask_values \[0, 255\]"):
        viz.class_indices(np.array([[0, 7]], np.uint8), mask_values=[0, 255])
    # without mask_values a mask is class indices; 255 is ignore_index 没有 mask_values 时视为类别索引
    assert viz.class_indices(np.array([[0, 1, 2]])).tolist() == [[0, 1, 2]]
    item_mask = torch.tensor([[0, 1, 255]])
    assert viz.class_indices(item_mask).tolist() == [[0, 1, -1]]
    assert viz.class_indices(item_mask, mask_values=[0, 1]).tolist() == [[0, 1, -1]]   # 255 不是取值时仍为忽略
    assert viz.colorize(viz.class_indices(item_mask))[0, 2].tolist() == viz.IGNORE_COLOUR.tolist()
    assert not hasattr(viz, "mask_to_indices")
    # overlay reads a raw {0, 255} mask through mask_values 叠加图通过 mask_values 读取原始掩码
    black = np.zeros((2, 2, 3), dtype=np.uint8)
    painted = viz.overlay(black, raw, mask_values=[0, 255]).sum(-1) > 0
    assert painted.tolist() == [[False, True], [True, False]]


def test_display_image_undoes_normalisation() -> None:
    img = _image()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)
    x = (torch.from_numpy(img).permute(2, 0, 1).float() / 255.0 - torch.tensor(mean)[:, None, None]) / torch.tensor(
        std
    )[:, None, None]
    back = viz.display_image(x, mean, std)
    assert back.shape == img.shape
    assert np.abs(back.astype(int) - img.astype(int)).max() <= 1


def test_show_panels_axes_count() -> None:
    img, mask = _image(), _binary_mask()
    assert len(viz.show_panels(img).axes) == 1
    assert len(viz.show_panels(img, mask).axes) == 2
    assert len(viz.show_panels(img, mask, mask).axes) == 3
    probs = np.stack([1 - mask, mask]).astype(np.float32)
    fig = viz.show_panels(img, mask, mask, probs=probs, errors=True, valid=np.ones_like(mask, bool))
    assert len(fig.axes) == 5
    assert [ax.get_title() for ax in fig.axes][:3] == ["image", "truth", "prediction"]


def test_show_panels_accepts_a_prediction_object() -> None:
    mask = _binary_mask()
    probs = np.stack([1 - mask, mask]).astype(np.float32)
    pred = Prediction(probs=probs, labels=mask.astype(np.int64), mask=mask * 255)
    fig = viz.show_panels(_image(), mask * 255, pred, mask_values=[0, 255])
    assert len(fig.axes) == 4                                   # 图像、真值、预测、概率


def test_show_overlay_and_histogram_have_one_axis() -> None:
    img, mask = _image(), _binary_mask()
    assert len(viz.show_overlay(img, mask).axes) == 1
    probs = np.stack([1 - mask, mask]).astype(np.float32) * 0.8 + 0.1
    fig = viz.plot_prob_histogram(probs, target=mask, threshold=0.5)
    assert len(fig.axes) == 1
    assert len(fig.axes[0].patches) > 0                          # 画出了直方柱


def test_error_map_colours() -> None:
    pred = np.array([[1, 1, 0, 0]])
    truth = np.array([[1, 0, 1, 0]])
    rgb = viz.error_map(pred, truth)
    assert rgb[0, 0].tolist() == [255, 255, 255]    # TP
    assert rgb[0, 1].tolist() == [255, 60, 60]      # FP
    assert rgb[0, 2].tolist() == [60, 120, 255]     # FN
    assert rgb[0, 3].tolist() == [0, 0, 0]          # TN


def test_plot_history_from_dict_and_object() -> None:
    hist = {"train_loss": [1.0, 0.7, 0.5], "val_loss": [1.1, 0.8, 0.6], "val_dice": [0.2, 0.5, 0.7],
            "lr": [1e-3, 1e-3, 5e-4], "epoch": [1, 2, 3]}
    fig = viz.plot_history(hist)
    assert len(fig.axes) == 3
    assert len(fig.axes[0].lines) == 2                            # 训练与验证损失

    class History:
        def __init__(self) -> None:
            self.train_loss = [0.9, 0.4]
            self.val_dice = [0.3, 0.6]

    assert len(viz.plot_history(History()).axes) == 2
    with pytest.raises(ValueError, match="no per-epoch lists"):
        viz.plot_history({"note": "empty"})


def test_explore_headless_draws_without_widgets(monkeypatch) -> None:
    # papermill / `unet-course course` runs set HEADLESS_ENV: same attributes, no ipywidgets objects
    # 无界面运行：接口相同，但不创建 ipywidgets 控件
    monkeypatch.setenv("UNET_COURSE_HEADLESS", "1")
    samples = [(_image(), _binary_mask()), (_image(16, 20), _binary_mask(16, 20))]
    box = viz.explore(samples)
    assert isinstance(box, viz.StaticExplorer) and "2 samples" in repr(box)
    assert box.sample_slider.max == 1 and box.threshold_slider.disabled
    assert box.last_figure is not None and len(box.last_figure.axes) == 2     # 图像与真值
    fig = box.render(1, 0.5)
    assert fig is box.last_figure and len(fig.axes) == 2


def test_explore_returns_a_widget_and_redraws_on_slider_change() -> None:
    samples = [(_image(), _binary_mask()), (_image(16, 20), _binary_mask(16, 20))]
    calls: list[int] = []

    def predictor(image: np.ndarray) -> np.ndarray:
        calls.append(image.shape[0])
        p = np.full(image.shape[:2], 0.3, dtype=np.float32)
        p[: image.shape[0] // 2] = 0.7
        return np.stack([1 - p, p])

    box = viz.explore(samples, predictor)
    import ipywidgets as widgets

    assert isinstance(box, widgets.VBox)
    first = box.last_figure
    assert first is not None and len(first.axes) == 5              # 图像、真值、预测、概率、误差
    box.sample_slider.value = 1                                      # 触发重绘
    assert box.last_figure is not first
    assert calls == [24, 16]
    box.threshold_slider.value = 0.9                                 # 只重新取阈值，不重新预测
    assert calls == [24, 16]
    fig = box.render(1, 0.5)
    assert len(fig.axes) == 5
    # 没有预测函数时只显示图像和真值
    assert len(viz.explore(samples).last_figure.axes) == 2


def test_explore_sets_its_picture_without_capturing_output() -> None:
    """The picture goes into the Output widget's ``outputs`` in one state update. It was captured (``with out:
    display(fig)``), which nbclient mimics by sending on the shell channel while it waits for the cell's reply:
    notebook 05 hung for good in about 1 of 4 plain papermill runs (jupyter/nbclient#312).
    图片一次写入 Output 控件的 outputs；以前的捕获方式会让 papermill 偶尔永久卡住"""
    samples = [(_image(), _binary_mask()), (_image(16, 20), _binary_mask(16, 20))]
    box = viz.explore(samples)
    out = box.children[1]                                           # VBox([HBox(sliders), Output])
    assert len(out.outputs) == 1 and out.outputs[0]["output_type"] == "display_data"
    first = out.outputs[0]["data"]["image/png"]
    assert base64.b64decode(first).startswith(b"\x89PNG") and "Figure" in out.outputs[0]["data"]["text/plain"]
    box.sample_slider.value = 1                                     # 拖动滑块：图片被替换
    assert len(out.outputs) == 1 and out.outputs[0]["data"]["image/png"] != first


def test_plot_tiling_draws_every_tile() -> None:
    fig = viz.plot_tiling((100, 77), tile=32, overlap=0.25)
    n_tiles = len(tile_starts(100, 32, 0.25)) * len(tile_starts(77, 32, 0.25))
    assert len(fig.axes) == 3                                          # 切片、权重和、颜色条
    assert len(fig.axes[0].patches) == n_tiles
    assert len(viz.plot_tiling(_image(20, 24), tile=32).axes[0].patches) == 1   # 小于一块切片


def test_explore_threshold_uses_the_prediction_decision_rule(monkeypatch) -> None:
    """A two-class Prediction is re-thresholded by the slider (p >= t); one of three classes keeps its arg-max.
    两类预测随阈值滑块变化（p >= t）；三类预测始终取最大概率
    """
    monkeypatch.setenv("UNET_COURSE_HEADLESS", "1")
    p = np.tile(np.linspace(0.0, 1.0, 30, dtype=np.float32), (24, 1))       # (H, W) 前景概率从 0 到 1
    probs = np.stack([1 - p, p])

    three = np.stack([0.5 * (1 - p), 0.5 * (1 - p), p])                     # (3, H, W)

    def shown_prediction(mode: str, thr: float, probs=probs) -> np.ndarray:
        def predictor(image: np.ndarray) -> Prediction:
            return Prediction(probs=probs, labels=np.zeros((24, 30), np.int64), mask=np.zeros((24, 30)), mode=mode)

        box = viz.explore([(_image(), _binary_mask())], predictor, threshold=thr)
        # The title named the arg-max for a two-class softmax model, whose labels the threshold decides 标题须与规则一致
        assert box.last_figure.get_suptitle().endswith(f"(threshold {thr:.2f})" if len(probs) == 2
                                                              else "(arg-max)")
        return np.asarray(box.last_figure.axes[2].images[0].get_array())    # the "prediction" panel 预测面板

    low, high = shown_prediction("binary", 0.2), shown_prediction("binary", 0.8)
    assert (low.sum(-1) > 0).sum() > (high.sum(-1) > 0).sum()               # 阈值越低前景越多
    low, high = shown_prediction("multiclass", 0.2), shown_prediction("multiclass", 0.8)
    assert (low.sum(-1) > 0).sum() > (high.sum(-1) > 0).sum()               # 两类 softmax 同样随阈值变化
    np.testing.assert_array_equal(shown_prediction("multiclass", 0.2, three), shown_prediction("multiclass", 0.8, three))
