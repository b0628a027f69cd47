"""Errors that users can act on.
用户可据此采取行动的错误类型

Every error the package raises on bad user input derives from :class:`UNetCourseError`. Its message names the file
or value at fault and says how to fix it. The CLI catches this base class and prints the message without a
traceback (exit code 2); notebooks show the message as the last line of the error.
包内所有针对用户输入的错误都继承自 UNetCourseError，消息中写明出错的文件或取值以及修复方法
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UNetCourseError(Exception):
    """Base class: a problem the user can fix. 基类：用户可以修复的问题"""


class DataError(UNetCourseError, ValueError):
    """Bad data on disk: missing root, unpaired files, corrupt images, unexpected mask values.
    磁盘上的数据有误：根目录缺失、文件不成对、图像损坏、掩码取值异常
    """


class ConfigError(UNetCourseError, ValueError):
    """A wrong parameter: unknown name, out-of-range value, unwritable output folder.
    参数错误：未知名称、取值越界、输出目录不可写
    """


class CheckpointError(UNetCourseError, RuntimeError):
    """A checkpoint that is missing, truncated, corrupt or does not fit the model/data.
    检查点缺失、截断、损坏，或与模型/数据不匹配
    """


class OutputError(UNetCourseError, OSError):
    """An output could not be written: full disk, read-only folder, a name that would overwrite an input.
    输出无法写入：磁盘已满、目录只读，或会覆盖输入文件
    """


class NonFiniteLossError(UNetCourseError, FloatingPointError):
    """Training produced a NaN/Inf loss; the message says at which step and what to try.
    训练中出现 NaN/Inf 损失；消息给出步数和建议
    """


def did_you_mean(names: Iterable[str], known: Iterable[str]) -> str:
    """The hint for a misspelt name: `` Did you mean 'lr'?`` for the first of ``names`` with a close match among
    ``known``, else ``""``. Messages about unknown names (settings, parameters, options) end with it.
    拼写错误的提示：为第一个有相近已知名称的名字给出 "Did you mean ...?"，否则为空

    >>> did_you_mean(["lrr"], ["lr", "epochs"]), did_you_mean(["zzz"], ["lr"])
    (" Did you mean 'lr'?", '')
    """
    known = list(known)
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            return f" Did you mean {close[0]!r}?"
    return ""
