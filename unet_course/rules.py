"""The value rules: one function per kind of setting that several places check (a scale, a threshold, a tile,
a training batch's size, a warp of the training crops), each naming the flag or field at fault in its message.
取值规则：多处都要检查的设置（缩放比例、阈值、切片、训练批次大小）各有一个函数，消息中写明出错的参数

:class:`~unet_course.config.TrainConfig`, the command line, prediction and the bench all call these, so a value is
judged the same way wherever it is given. 训练配置、命令行、预测与基准测试都调用这些函数
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from .errors import ConfigError

#: Largest resize factor; larger ones only make blurry, slow inputs. 缩放比例上限
MAX_SCALE = 4.0


def is_number(value: Any, whole: bool = False) -> bool:
    """Whether ``value`` is a real number (an integer when ``whole``), never a bool (numpy's included).
    是否为实数（whole 时为整数），布尔值（包括 numpy 的）除外

    The value checks of the package all start from it. 包内各取值检查都以此为起点

    >>> is_number(0.5), is_number(True), is_number("1"), is_number(16, whole=True), is_number(16.0, whole=True)
    (True, False, False, True, False)
    """
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return False
    return isinstance(value, numbers.Integral if whole else numbers.Real)


def check_scale(value: Any, name: str = "scale") -> float:
    """The one rule for a resize factor: a finite number in ``(0, 4]``. 缩放比例必须在 (0, 4] 之内

    Args:
        value: the factor to check. 待检查的缩放比例
        name: how to call it in the message (``"scale"``, ``"--scale"``). 消息中使用的名称

    Returns:
        ``value`` as a float.

    Raises:
        ConfigError: not a number, or outside ``(0, 4]``.

    >>> check_scale(0.5)
    0.5
    >>> check_scale(0)
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: scale must be in (0, 4], got 0.
    """
    if not is_number(value) or not math.isfinite(value) or not (0.0 < value <= MAX_SCALE):
        raise ConfigError(f"{name} must be in (0, {MAX_SCALE:g}], got {value!r}.")
    return float(value)


#: The largest value of each warp of the training crops: degrees for ``rotate``, pixels for ``elastic``. 形变上限
WARP_LIMITS = {"rotate": (180.0, "an angle in [0, 180] degrees"), "elastic": (64.0, "a displacement in [0, 64] pixels")}


def check_warp(name: str, value: Any) -> float:
    """The one rule for the random warps of training crops: ``rotate`` in [0, 180] degrees, ``elastic`` (the
    displacements' standard deviation) in [0, 64] pixels; 0 switches a warp off. 训练裁剪形变参数的取值规则

    Returns:
        ``value`` as a float.

    Raises:
        ConfigError: not a number, or out of range.

    >>> check_warp("rotate", 30)
    30.0
    >>> check_warp("elastic", -1)
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: elastic must be a displacement in [0, 64] pixels, got -1.
    """
    top, rule = WARP_LIMITS[name]
    if not is_number(value) or not (0.0 <= value <= top):
        raise ConfigError(f"{name} must be {rule}, got {value!r}.")
    return float(value)


def check_threshold(value: Any, name: str = "threshold") -> float:
    """The one rule for a foreground threshold: a number strictly between 0 and 1. 前景阈值必须在 (0, 1) 之内

    Args:
        value: the threshold to check. 待检查的阈值
        name: how to call it in the message (``"threshold"``, ``"--threshold"``). 消息中使用的名称

    Returns:
        ``value`` as a float.

    Raises:
        ConfigError: not a number, or outside ``(0, 1)`` (NaN included).

    >>> check_threshold(0.5)
    0.5
    >>> check_threshold(1.5, "--threshold")
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: --threshold must be in (0, 1), got 1.5.
    """
    if not is_number(value) or not (0.0 < value < 1.0):                     # NaN fails the comparison too 比较对 NaN 也不成立
        raise ConfigError(f"{name} must be in (0, 1), got {value!r}.")
    return float(value)


def check_tile(tile: Any, depth: int | None, name: str = "tile") -> tuple[int, int]:
    """The one rule for a tile size: each side at least the ``2**depth`` pixels a U-Net halves down to one.
    切片每边至少 2**depth 像素（U-Net 逐层减半到 1 像素所需的大小）

    A smaller tile is padded up to that size for every forward pass, so it only multiplies the work (a 4x4 tile
    on a DRIVE image with a depth-4 U-Net means about 150,000 passes with flip TTA).
    更小的切片每次前向都会被填充到该大小，只会成倍增加计算量

    Args:
        tile: one side, or a pair ``(height, width)``. 边长或 (高, 宽)
        depth: the U-Net's number of down-sampling steps; None (a model without one): sides >= 1. 下采样次数
        name: how to call it in the message (``"tile"``, ``"--tile"``, ``"predict_tile"``). 消息中使用的名称

    Returns:
        ``(height, width)``.

    >>> check_tile(64, 4), check_tile((32, 48), 3)
    ((64, 64), (32, 48))
    >>> check_tile(8, 4, "--tile")
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: --tile 8 is smaller than 16 pixels, the least a depth-4 U-Net halves 4 times; give --tile 16 or more.
    """
    sides = (tile, tile) if is_number(tile, whole=True) else tuple(tile) if isinstance(tile, (tuple, list)) else ()
    if len(sides) != 2 or not all(is_number(v, whole=True) for v in sides):
        raise ConfigError(f"{name} must be a whole number of pixels or a pair (height, width), got {tile!r}.")
    least = 2 ** depth if depth is not None else 1
    if min(sides) < least:
        what = f"the least a depth-{depth} U-Net halves {depth} times" if depth is not None else "one pixel"
        raise ConfigError(f"{name} {tile} is smaller than {least} pixels, {what}; give {name} {least} or more.")
    return int(sides[0]), int(sides[1])


def check_training_size(side: int, batch_size: int, depth: int, name: str = "crop_size") -> None:
    """The one rule for a training batch's size: each side at least ``2**depth`` (:func:`check_tile`), and more
    than one value per channel at the U-Net's bottom, where batch norm computes its statistics in training.
    训练批次的大小：每边至少 2**depth，且最底层每个通道多于一个值（训练时批归一化需要）

    >>> check_training_size(32, 1, 4)
    >>> check_training_size(16, 1, 4)
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: batch_size 1 with crop_size 16 leaves one value per channel at the bottom of a depth-4 U-Net (16 // 2**4 = 1 pixel), where batch norm cannot train; use batch_size 2 or more, or crop_size 32 or more.
    """
    check_tile(side, depth, name)
    bottom = int(side) // 2 ** depth
    if batch_size * bottom * bottom <= 1:
        raise ConfigError(f"batch_size {batch_size} with {name} {side} leaves one value per channel at the bottom of "
                          f"a depth-{depth} U-Net ({side} // 2**{depth} = {bottom} pixel), where batch norm cannot "
                          f"train; use batch_size 2 or more, or {name} {2 ** (depth + 1)} or more.")


__all__ = ["MAX_SCALE", "check_scale", "check_threshold", "check_tile", "check_training_size", "is_number"]
