"""How a setting's value is read as its declared type: one rule for config fields, CLI flags and notebook parameters.
设置取值按声明类型读取的唯一规则：配置字段、命令行参数与 notebook 参数共用

A :class:`~unet_course.config.TrainConfig` field, an ``unet-course train`` flag and a notebook's papermill parameter
all declare a type (``int``, ``float | None``, ``list[int]``); :func:`coerce` checks a value against it (an
integer is accepted for a float), :func:`from_text` reads JSON text for a dict or list (``papermill -p`` passes
text), and :func:`check_parameter_types` applies both to a notebook's annotated parameters.
三者都声明类型；coerce 按类型检查，from_text 读取 dict/list 的 JSON 文本，check_parameter_types 检查 notebook 参数
"""

from __future__ import annotations

import json
import math
import types
import typing
import warnings
from collections.abc import Mapping, MutableMapping
from typing import Any

from .errors import ConfigError
from .rules import is_number


def type_members(hint: Any) -> tuple[tuple[Any, ...], bool]:
    """``int | None`` -> ``((int,), True)``: the non-None members of a type and whether None is allowed.
    拆分联合类型：非 None 成员，以及是否允许 None

    >>> type_members(int | None)
    ((<class 'int'>,), True)
    """
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
    else:
        members = (hint,)
    kinds = tuple(m for m in members if m is not type(None))
    return kinds, len(kinds) < len(members)


_NAMES = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string", list: "a list of numbers",
          dict: "a dict (JSON object)"}


def _type_name(kind: Any) -> str:
    """``list[int]`` -> ``'a list of integers'``: a type as the error messages name it. 错误信息中的类型名"""
    if typing.get_args(kind) == (int,) and typing.get_origin(kind) is list:
        return "a list of integers"
    return _NAMES.get(typing.get_origin(kind) or kind, getattr(kind, "__name__", str(kind)))


def _convert(value: Any, kind: Any) -> tuple[bool, Any]:
    """Try to read ``value`` as ``kind``; return ``(ok, converted)``. 尝试转换为 kind"""
    base = typing.get_origin(kind) or kind
    if base is bool:
        is_bool = isinstance(value, bool) or type(value).__name__ == "bool_"   # 包括 numpy.bool_
        return is_bool, bool(value) if is_bool else value
    if base is int:
        ok = is_number(value, whole=True)
        return ok, int(value) if ok else value
    if base is float:
        ok = is_number(value) and math.isfinite(value)
        return ok, float(value) if ok else value
    if base is str:
        return isinstance(value, str), value
    if base is list:
        items = value if isinstance(value, (list, tuple)) else None
        item_kind = (typing.get_args(kind) or (float,))[0]                   # list[int] -> int
        converted = [_convert(v, item_kind) for v in items] if items is not None else None
        ok = converted is not None and all(good for good, _ in converted)
        return ok, [v for _, v in converted] if ok else value
    if base is dict:
        return isinstance(value, dict), value
    return True, value                                                        # 未知类型不检查


def check_parameter_types(namespace: MutableMapping[str, Any], at_least: Mapping[str, int] | None = None) -> None:
    """Check each notebook parameter against its annotation (``epochs: int = 3``); one message for a bad one.
    按类型注解检查 notebook 的每个参数，错误时只给出一条消息

    ``papermill -p`` reads ``3`` as a number and other values as text, so ``-p seed abc`` and ``-p data_dir 2024``
    arrive with the wrong type and would fail later with a traceback, and ``-p sizes "[1, 4]"`` arrives as text:
    JSON text for a list or dict parameter is replaced by its value in ``namespace``. Pass the notebook's
    ``globals()``: its ``__annotations__`` hold the parameters cell's annotations. ``at_least`` gives lower bounds
    to parameters that no TrainConfig field checks (for a list: a non-empty list, every item at least that).
    papermill -p 把数字读成数，其余读成文本；list/dict 参数的 JSON 文本在 namespace 中换成其值；at_least 给出下界

    >>> ns = {"__annotations__": {"seed": int, "sizes": list[int]}, "seed": 3, "sizes": "[1, 2]"}
    >>> check_parameter_types(ns, at_least={"sizes": 1}); ns["sizes"]
    [1, 2]
    >>> check_parameter_types({"__annotations__": {"seed": int}, "seed": "abc"})
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: Parameter 'seed' must be an integer, got 'abc' (str). Fix it in the parameters cell or in papermill -p.
    >>> check_parameter_types({"__annotations__": {"repeats": int}, "repeats": 0}, at_least={"repeats": 1})
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: Parameter 'repeats' must be at least 1, got 0. Fix it in the parameters cell or in papermill -p.
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     check_parameter_types({"seed": 3})
    >>> str(caught[0].message)
    'check_parameter_types found no annotated parameters in this namespace, so it checked nothing.'
    >>> check_parameter_types({"__annotations__": {"channels_last": bool}, "channels_last": "false"})
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: Parameter 'channels_last' must be true or false, got 'false' (str). papermill -p reads only True and False (capitalised) as booleans: -p channels_last False.
    >>> check_parameter_types({"__annotations__": {"data_dir": str}, "data_dir": 2024})
    Traceback (most recent call last):
    ...
    unet_course.errors.ConfigError: Parameter 'data_dir' must be a string, got 2024 (int). -p reads 2024 as a number; pass it as text: papermill -r data_dir 2024, or unet-course course -p 'data_dir="2024"'.
    """
    for name, hint in _annotations(namespace).items():
        if name not in namespace or isinstance(hint, str):          # 字符串形式的注解无法检查
            continue
        value = namespace[name]
        try:
            read = from_text(value, hint, name)
            coerce(read, hint, f"Parameter {name!r}")
        except ConfigError as exc:
            raise ConfigError(f"{exc} {_parameter_fix(name, value, hint)}") from None
        namespace[name] = read                                      # JSON 文本换成其值
        bound = (at_least or {}).get(name)
        items = read if isinstance(read, list) else [read]
        if bound is not None and (not items or any(v < bound for v in items)):
            what = f"a non-empty list of values of at least {bound}" if isinstance(read, list) else f"at least {bound}"
            raise ConfigError(f"Parameter {name!r} must be {what}, got {read!r}. Fix it in the parameters cell or "
                              "in papermill -p.")


def _annotations(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The annotations of a notebook's top-level names: ``__annotations__``, or from ``__annotate__`` where a newer
    Python evaluates them lazily (PEP 649); a warning, not silence, when there are none. 顶层名字的类型注解"""
    if "__annotations__" in namespace:
        return dict(namespace["__annotations__"])
    if callable(namespace.get("__annotate__")):
        return dict(namespace["__annotate__"](1))                  # 1 = annotationlib.Format.VALUE
    warnings.warn("check_parameter_types found no annotated parameters in this namespace, so it checked nothing.",
                  UserWarning, stacklevel=3)
    return {}


def _parameter_fix(name: str, value: Any, hint: Any) -> str:
    """How to pass ``value`` so that it arrives with the type ``hint``. 如何传入才能得到正确类型"""
    kinds = type_members(hint)[0]
    if is_number(value) and str in kinds:
        return (f"-p reads {value!r} as a number; pass it as text: papermill -r {name} {value}, or "
                f"unet-course course -p '{name}=\"{value}\"'.")
    if bool in kinds and isinstance(value, str):
        return f"papermill -p reads only True and False (capitalised) as booleans: -p {name} False."
    return "Fix it in the parameters cell or in papermill -p."


def from_text(value: Any, hint: Any, name: str) -> Any:
    """A parameter given as text (``papermill -p``): JSON text for a dict or list field is read as JSON.
    papermill -p 传入文本：dict/list 字段的 JSON 文本按 JSON 读取
    """
    kinds, _ = type_members(hint)
    if not isinstance(value, str) or not any((typing.get_origin(k) or k) in (dict, list) for k in kinds):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        expected = " or ".join(_NAMES[typing.get_origin(k) or k] for k in kinds if (typing.get_origin(k) or k) in _NAMES)
        raise ConfigError(f"Parameter {name!r} must be {expected}, got text that is not JSON: {value!r} "
                          f"({exc.msg}).") from None


def coerce(value: Any, hint: Any, label: str, expects: str | None = None) -> Any:
    """``value`` checked against the type ``hint`` (an int becomes a float for a float field).
    按类型检查取值（float 字段中的整数转换为浮点数）

    Raises:
        ConfigError: ``"<label> must be an integer, got 'abc' (str)."``.
    """
    kinds, optional = type_members(hint)
    if value is None and optional:
        return None
    for kind in kinds:
        ok, converted = _convert(value, kind)
        if ok:
            return converted
    expected = expects or " or ".join(_type_name(k) for k in kinds)
    if optional:
        expected += " or None"
    raise ConfigError(f"{label} must be {expected}, got {value!r} ({type(value).__name__}).")
