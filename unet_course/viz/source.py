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

import argparse
import dataclasses
import inspect
import re
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


# ----------------------------------------------------------------------------------------------------------------
# Stored listings: keep the notebooks' line numbers in step with the package 已存输出中的代码清单与包保持同步
# ----------------------------------------------------------------------------------------------------------------
#: The inline line number pygments writes before each line of a listing. 每行前的行号
_LINE_NUMBER = re.compile(r'padding-right: 5px;">\s*(\d+)</span>')
#: The folder that holds ``unet_course/`` (the repository or site-packages). 包所在的目录
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "".join(value)


def stored_listings(cells: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any], Source]]:
    """The :func:`show_source` listings stored in a notebook's outputs. 已存输出中的源代码清单

    Args:
        cells: the notebook's ``cells`` (as ``json.load`` or ``nbformat.read`` gives them). notebook 的单元格

    Returns:
        ``(cell index, output, the Source it shows)`` for each listing, its ``first_line`` read from the HTML.
    """
    found = []
    for index, cell in enumerate(cells):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text, html = _text(data.get("text/plain", "")), _text(data.get("text/html", ""))
            title, _, code = text[2:].partition("\n")
            number = _LINE_NUMBER.search(html)
            if text.startswith("# unet_course/") and " · " in title and number:
                found.append((index, out, Source(title=title, code=code, first_line=int(number.group(1)))))
    return found


def locate(listing: Source, root: Path = _SOURCE_ROOT) -> int | None:
    """The line where ``listing.code`` starts in its file now, or None if the file no longer holds it.
    清单代码现在在文件中的起始行；文件中已无此代码时返回 None

    The code must still be there verbatim (up to the common indentation); of several matches the one nearest the
    stored line wins.
    """
    path = root / listing.title.split(" · ")[0]
    if not path.is_file():
        return None
    lines, n = path.read_text(encoding="utf-8").splitlines(), len(listing.code.splitlines())
    hits = [k + 1 for k in range(len(lines) - n + 1)
            if textwrap.dedent("\n".join(lines[k:k + n])).rstrip("\n") == listing.code]
    return min(hits, key=lambda k: abs(k - listing.first_line)) if hits else None


def renumber_listings(cells: list[dict[str, Any]], root: Path = _SOURCE_ROOT) -> tuple[int, list[str]]:
    """Re-render, in place, the stored listings whose code only moved within its file. 重新编号移动过的清单

    Returns:
        ``(how many were renumbered, one message per listing whose code changed)``: those need the notebook
        re-executed (``make notebooks``), since the prose around them may need to change too.
        代码本身改变的清单需要重新执行 notebook
    """
    moved, changed = 0, []
    for index, out, listing in stored_listings(cells):
        line = locate(listing, root)
        if line is None:
            changed.append(f"cell {index}: the code of {listing.title} (from line {listing.first_line}) changed")
        elif line != listing.first_line:
            out["data"]["text/html"] = dataclasses.replace(listing, first_line=line)._repr_html_()
            moved += 1
    return moved, changed


def main(argv: list[str] | None = None) -> int:
    """``python -m unet_course.viz NOTEBOOK ...``: renumber moved listings, report changed ones.
    重新编号 notebook 中移动过的源代码清单，报告代码已改变的清单
    """
    parser = argparse.ArgumentParser(prog="python -m unet_course.viz", description=(
        "Renumber the stored show_source listings whose code moved within its file (outputs only, nothing runs); "
        "list the ones whose code changed, which need the notebook re-executed (make notebooks)."))
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    import nbformat  # deferred: only this maintainer command reads notebooks, show_source needs none of Jupyter

    notebooks = {}
    for path in args.notebooks:                                    # read them all before writing any 先全部读取
        try:
            notebooks[path] = nbformat.read(path, as_version=4)
        except (OSError, ValueError) as exc:                       # missing, unreadable, not JSON 不存在或不是 notebook
            parser.error(f"cannot read {path} as a notebook ({type(exc).__name__}: {exc}); nothing was changed.")
    status = 0
    for path, nb in notebooks.items():
        moved, changed = renumber_listings(nb.cells)
        if moved:
            nbformat.write(nb, path)
        print(f"{path}: {moved} listing(s) renumbered" + "".join(f"\n  {m}: re-execute it" for m in changed))
        status = status or int(bool(changed))
    return status
