"""Show the package's own annotated source in a notebook, with syntax highlighting.
在 notebook 中显示包内带注释的源代码（语法高亮）

The notebooks never paste library code: they call :func:`show_source` on the object they teach, and the reader
sees the real code once, with its English and 中文 comments. Because the text comes from the installed package,
the notebook can never drift from the code it explains.
notebook 从不粘贴库代码，而是调用 show_source 显示真实源代码；内容来自已安装的包，因此讲解与代码永远一致

>>> from unet_course.model import Down
>>> src = show_source(Down.forward)
>>> src.title
'unet_course/model/parts.py · Down.forward'
>>> "def forward" in src.code
True
"""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from ..errors import ConfigError

#: The pygments style of the rendered code (a light theme that prints well). 代码高亮的配色
STYLE = "default"


@dataclass(frozen=True)
class Source:
    """Annotated source of one package object, rendered as highlighted HTML in Jupyter.
    一个包内对象的源代码；在 Jupyter 中以高亮 HTML 显示

    Attributes:
        title: ``"<file inside the repository> · <qualified name>"``. 标题：文件与限定名
        code: the source text, dedented. 源代码文本
        first_line: line number of the first line in its file. 在文件中的起始行号
    """

    title: str
    code: str
    first_line: int

    def _repr_html_(self) -> str:
        formatter = HtmlFormatter(style=STYLE, noclasses=True, linenos="inline", linenostart=self.first_line)
        body = highlight(self.code, PythonLexer(), formatter)
        return f'<div style="font-size:90%"><b><code>{self.title}</code></b>{body}</div>'

    def __repr__(self) -> str:                       # the text/plain fallback (also what nbval compares) 纯文本版本
        return f"# {self.title}\n{self.code}"


def _package_path(path: str) -> str:
    """``/…/unet_course/model/parts.py`` -> ``unet_course/model/parts.py`` (no machine paths). 去掉本机路径前缀"""
    parts = Path(path).parts
    if "unet_course" in parts:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("unet_course"):])
    return Path(path).name


def show_source(obj: Any, *, start: str | None = None, stop: str | None = None) -> Source:
    """The annotated source of ``obj`` (a function, method, class or module of ``unet_course``).
    返回 obj 的带注释源代码（函数、方法、类或模块）

    Args:
        obj: what to show, e.g. ``UNet.forward`` or ``unet_course.training.loop.train_one_epoch``. 要显示的对象
        start: keep the lines from the first one containing this text (e.g. a comment). 从包含该文本的行开始
        stop: ... up to and including the first later line containing this text. 到包含该文本的行结束

    Returns:
        A :class:`Source`; a notebook cell ending with it shows highlighted code. 在单元格末尾返回即可显示

    Raises:
        ConfigError: ``obj`` has no Python source (a builtin), or ``start``/``stop`` are not found.
    """
    target = inspect.unwrap(obj)
    try:
        lines, first = inspect.getsourcelines(target)
        path = inspect.getsourcefile(target) or "?"
    except (OSError, TypeError):
        raise ConfigError(f"{obj!r} has no Python source to show (a builtin or a C extension).") from None
    first = max(first, 1)
    if start is not None:
        hit = next((i for i, line in enumerate(lines) if start in line), None)
        if hit is None:
            raise ConfigError(f"start={start!r} does not occur in the source of {getattr(obj, '__qualname__', obj)}.")
        lines, first = lines[hit:], first + hit
    if stop is not None:
        end = next((i for i, line in enumerate(lines) if stop in line), None)
        if end is None:
            raise ConfigError(f"stop={stop!r} does not occur in the shown source.")
        lines = lines[: end + 1]
    name = getattr(target, "__qualname__", getattr(target, "__name__", type(target).__name__))
    return Source(title=f"{_package_path(path)} · {name}", code=textwrap.dedent("".join(lines)).rstrip("\n"),
                  first_line=first)
