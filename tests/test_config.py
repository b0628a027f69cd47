"""TrainConfig: types are checked (issue #12 item 7), non-finite values refused (item 14), one scale rule.
TrainConfig：检查类型（问题 12 第 7 项）、拒绝非有限值（第 14 项）、缩放规则只有一处
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from unet_course.config import (
    AMP_MODES,
    OPTIMIZERS,
    TrainConfig,
    field_types,
)
from unet_course.errors import ConfigError
from unet_course.metrics import probs_to_labels
from unet_course.rules import check_scale, check_threshold, check_tile, check_training_size


@pytest.mark.parametrize("values,field,expected", [
    ({"epochs": "abc"}, "epochs", "an integer"),
    ({"lr": "0.1"}, "lr", "a finite number"),
    ({"batch_size": 2.5}, "batch_size", "an integer"),
    ({"epochs": 1.5}, "epochs", "an integer"),
    ({"epochs": True}, "epochs", "an integer"),
    ({"augment": "no"}, "augment", "true or false"),
    ({"crop_size": "64"}, "crop_size", "an integer or None"),
    ({"num_workers": 1.5}, "num_workers", "an integer >= 0 or 'auto'"),
    ({"class_weights": [1, "x"]}, "class_weights", "a list of numbers or None"),
])
def test_wrong_types_name_the_field_the_type_and_the_value(values, field, expected):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(values)
    message = str(info.value)
    assert f"'{field}'" in message and expected in message and repr(values[field]) in message


def test_a_misspelt_field_or_dataset_option_gets_the_close_name():
    """A config file or notebook with ``lrr`` (or ``usefov`` in dataset_options) got only the list of all names.
    拼错的字段名或数据集选项以前只给出全部名称的列表
    """
    with pytest.raises(ConfigError, match=r"Unknown TrainConfig field\(s\): lrr\. Did you mean 'lr'\? Known fields: "):
        TrainConfig.from_dict({"lrr": 0.1})
    with pytest.raises(ConfigError, match=r"Unknown TrainConfig field\(s\): qqq\. Known fields: "):   # no close name
        TrainConfig.from_dict({"qqq": 0.1})
    from unet_course.data import dataset_options
    with pytest.raises(ConfigError, match=r"not arguments of dataset 'drive'\. Did you mean 'use_fov'\? It accepts: "):
        dataset_options("drive", {"usefov": False})


def test_int_is_accepted_for_a_float_and_none_for_an_optional():
    cfg = TrainConfig(lr=1, grad_clip=None, crop_size=None, class_weights=(1, 2), num_workers=3)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.grad_clip is None and cfg.crop_size is None
    assert cfg.class_weights == [1.0, 2.0] and cfg.num_workers == 3
    assert TrainConfig(num_workers="auto").num_workers == "auto"
    with pytest.raises(ConfigError, match="num_workers must be 'auto'"):
        TrainConfig(num_workers="four")


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_learning_rates_are_refused(value):
    with pytest.raises(ConfigError, match=r"'lr' must be a finite number, got (inf|-inf|nan)"):
        TrainConfig(lr=value)


def test_from_parameters_gives_one_message_naming_the_parameter():
    """What a papermill user sees for ``-p epochs abc``. papermill 用户看到的消息"""
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_parameters(epochs="abc", dataset="synthetic")
    assert str(info.value) == ("Parameter 'epochs' must be an integer, got 'abc' (str). "
                               "Fix it in the parameters cell or in papermill -p.")
    with pytest.raises(ConfigError, match="^Unknown optimizer 'adagrad'.*parameters cell"):
        TrainConfig.from_parameters(optimizer="adagrad")
    cfg = TrainConfig.from_parameters(epochs=2, lr=1, figure_dpi=80)       # 非字段参数被忽略
    assert (cfg.epochs, cfg.lr) == (2, 1.0)


def test_check_scale_is_the_one_scale_rule():
    assert check_scale(4) == 4.0 and check_scale(0.25) == 0.25
    for bad in (0, -1, 4.01, math.nan, math.inf, "1", True):
        with pytest.raises(ConfigError, match=r"--scale must be in \(0, 4\]"):
            check_scale(bad, "--scale")
    with pytest.raises(ConfigError, match=r"scale must be in \(0, 4\], got 5"):
        TrainConfig(scale=5)


def test_check_threshold_is_the_one_threshold_rule():
    assert check_threshold(0.5) == 0.5 and check_threshold(1e-6) == 1e-6
    for bad in (0, 1, -0.1, 1.5, math.nan, math.inf, "0.5", True, None):
        with pytest.raises(ConfigError, match=r"--threshold must be in \(0, 1\)"):
            check_threshold(bad, "--threshold")
    with pytest.raises(ConfigError, match=r"threshold must be in \(0, 1\), got 1.0"):
        TrainConfig(threshold=1.0)
    with pytest.raises(ConfigError, match=r"threshold must be in \(0, 1\), got 1"):
        probs_to_labels(torch.full((2, 3, 3), 0.5), threshold=1)      # the decision rule calls the same check


def test_check_tile_is_the_one_tile_rule():
    assert check_tile(16, 4) == (16, 16) and check_tile([24, 32], 3) == (24, 32) and check_tile(1, None) == (1, 1)
    for bad in (15, (16, 8), 0):
        with pytest.raises(ConfigError, match=r"--tile .* is smaller than 16 pixels, the least a depth-4 U-Net"):
            check_tile(bad, 4, "--tile")
    for bad in (16.0, "16", True, (16,), (16, 16, 16)):
        with pytest.raises(ConfigError, match="must be a whole number of pixels or a pair"):
            check_tile(bad, 4)
    assert TrainConfig(depth=4, predict_tile=16).predict_tile == 16
    with pytest.raises(ConfigError, match=r"predict_tile 8 is smaller than 16 pixels"):
        TrainConfig(depth=4, predict_tile=8)                         # the checkpoint's default obeys it too


@pytest.mark.parametrize("values, message", [
    ({"augment": False, "rotate": 10}, "rotate=10 is a training augmentation, so with augment=False it would "
                                       "silently not happen"),
    ({"augment": False, "elastic": 2}, "elastic=2 is a training augmentation, so with augment=False it would "
                                        "silently not happen"),
    ({"scheduler": "plateau", "warmup_epochs": 2}, "warmup_epochs=2 works with scheduler 'cosine' or 'poly'; "
                                                   "with 'plateau' there would silently be no warm-up"),
    ({"optimizer": "adamw", "momentum": 0.5}, "momentum=0.5 is used by the sgd and rmsprop optimizers only; "
                                              "'adamw' would silently ignore it"),
])
def test_a_setting_the_others_would_switch_off_is_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**values)
    with pytest.raises(ConfigError, match=message):              # the same rule for notebook parameters 同一规则
        TrainConfig.from_parameters(**values)
    # with the setting that uses it, it is fine 与使用它的设置一起则没有问题
    assert TrainConfig(rotate=10).augment is True
    TrainConfig(scheduler="cosine", warmup_epochs=2)
    TrainConfig(optimizer="sgd", momentum=0.5)


@pytest.mark.parametrize("values, message", [
    ({"save_every": 0}, "save_every must be >= 1, got 0."),                  # was ZeroDivisionError 以前除以零
    ({"max_steps": 0}, "max_steps must be >= 1, got 0."),                    # was a silent run without best.pt
    ({"samples_per_epoch": 0}, "samples_per_epoch must be >= 1, got 0."),
    ({"n_classes": 0}, "n_classes must be >= 1, got 0."),                    # was read as "unset" 以前被当作未设置
    ({"plateau_patience": -1}, "plateau_patience must be >= 0, got -1."),
    ({"scheduler": "cosine", "warmup_epochs": -1}, "warmup_epochs must be >= 0, got -1."),
    ({"plateau_factor": 2.0}, r"plateau_factor must be in \(0, 1\), got 2.0."),   # was torch's bare ValueError
    ({"weight_decay": -1.0}, "weight_decay must be >= 0, got -1.0."),
    ({"optimizer": "sgd", "momentum": -1.0}, r"momentum must be in \[0, 1\), got -1.0."),
    ({"grad_clip": -1.0}, r"grad_clip must be > 0 \(or None: no clipping\), got -1.0."),  # would flip gradients
])
def test_out_of_range_settings_name_the_field(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**values)


def test_check_training_size_is_the_one_batch_norm_rule():
    """``train --image-size 16 --batch-size 1 --depth 4`` ended in batch norm's bare ValueError in the first step.
    以前会在第一步以批归一化的 ValueError 崩溃
    """
    with pytest.raises(ConfigError, match=r"batch_size 1 with image_size 16 leaves one value per channel at the "
                                          r"bottom of a depth-4 U-Net \(16 // 2\*\*4 = 1 pixel\)"):
        TrainConfig(image_size=16, batch_size=1, depth=4)
    with pytest.raises(ConfigError, match=r"batch_size 1 with crop_size 24 .* crop_size 32 or more"):
        TrainConfig(dataset="drive", crop_size=24, batch_size=1, depth=4)
    with pytest.raises(ConfigError, match=r"crop_size 8 is smaller than 16 pixels"):
        TrainConfig(dataset="drive", crop_size=8, depth=4)
    assert TrainConfig(image_size=16, batch_size=2, depth=4).batch_size == 2     # two values per channel 两个值
    assert TrainConfig(dataset="drive", crop_size=32, batch_size=1, depth=4).crop_size == 32
    check_training_size(32, 1, 4)


def test_every_field_has_help_and_real_types():
    hints = field_types()
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata.get("help"), f"{f.name} has no help text"
        assert not isinstance(hints[f.name], str)                          # 真实类型，不是字符串
    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(TrainConfig)}
    assert choices["optimizer"] == OPTIMIZERS and choices["amp"] == AMP_MODES


def test_round_trip_through_json_keeps_types():
    cfg = TrainConfig(epochs=3, lr=0.01, class_weights=[1.0, 3.0], extras={"note": "x"})
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_parameter_annotations_are_found_where_python_evaluates_them_lazily():
    """Python 3.14 (PEP 649) may keep module-level annotations behind ``__annotate__`` instead of
    ``__annotations__``; the notebook check reads either, so it does not pass in silence there.
    注解也可能只在 __annotate__ 中（PEP 649），两种都读取"""
    from unet_course.coerce import check_parameter_types

    lazy = {"__annotate__": lambda fmt: {"seed": int, "sizes": list[int]}, "seed": 1, "sizes": "[2, 3]"}
    check_parameter_types(lazy)
    assert lazy["sizes"] == [2, 3]                                  # JSON text read there too
    with pytest.raises(ConfigError, match="Parameter 'seed' must be an integer, got 'abc'"):
        check_parameter_types({**lazy, "seed": "abc"})
