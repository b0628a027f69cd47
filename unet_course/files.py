"""Writing files safely: one home for every output the package writes.
安全写文件：包写出的所有文件都经过这里

Three rules hold for every output (checkpoints, masks, JSON reports, notebooks):
每个输出文件都遵守三条规则

1. **Check before the work.** :func:`ensure_writable_dir` is called when a command starts, so a read-only or
   missing folder fails in a second, not after an hour of training. 先检查后工作：命令开始时就检查输出目录
2. **Atomic.** :func:`atomic_write` writes a hidden temporary file beside the target, fsyncs it and renames it
   over the target, so a crash or a full disk never leaves a half-written or 0-byte file.
   原子写入：先写同目录下的临时文件，再重命名覆盖，崩溃或磁盘写满时不会留下残缺文件
3. **Clear on failure.** A full disk becomes :class:`~unet_course.errors.OutputError` naming the folder and the
   free space (:func:`disk_error`). 磁盘写满时给出目录与剩余空间

Temporary files are named ``.<target>.<random>.tmp``; :func:`remove_stale_temporaries` deletes those that a killed
process left behind. Files are created with the user's umask (like ``open()``), not ``mkstemp``'s 0600.
临时文件名为 .<目标>.<随机>.tmp；新文件的权限遵循 umask
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from .errors import ConfigError, OutputError

#: How :func:`atomic_write` names its temporary files (``.last.pt.3f9a1c2e.tmp``). 临时文件名的格式
TMP_SUFFIX = ".tmp"


def to_plain(value: Any) -> Any:
    """A JSON-safe copy: tensors and arrays to lists, numpy scalars to numbers, NaN/Inf to None, paths to str.
    转为可写入 JSON 的基本类型：张量与数组转列表，NaN/Inf 转 None

    >>> to_plain({"dice": torch.tensor(0.5), "bad": float("nan"), "shape": (2, 3)})
    {'dice': 0.5, 'bad': None, 'shape': [2, 3]}
    """
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        return to_plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Free space in bytes on the disk holding ``folder`` (its nearest existing parent); None if unknown.
    目录所在磁盘的剩余空间（字节）"""
    p = Path(folder).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _human(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def disk_error(path: str | os.PathLike, exc: OSError, what: str = "file") -> OutputError:
    """Turn an ``OSError`` raised while writing ``path`` into an :class:`OutputError` that says what to do.
    把写文件时的 OSError 转成说明原因与办法的 OutputError

    >>> e = disk_error("/x/y.pt", OSError(errno.ENOSPC, "No space left on device"), "checkpoint")
    >>> "disk holding '/x' is full" in str(e)
    True
    """
    folder = Path(path).expanduser().parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(
            f"Could not write the {what} {str(path)!r}: the disk holding {str(folder)!r} is full "
            f"({_human(free_bytes(folder))} free). Free some space or choose another output folder; "
            "existing files were left as they were.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(
            f"Could not write the {what} {str(path)!r}: {str(folder)!r} is not writable "
            f"({exc.strerror or exc}). Choose another output folder.")
    return OutputError(f"Could not write the {what} {str(path)!r}: {exc.strerror or exc}.")


def _umask_mode() -> int:
    mask = os.umask(0)        # reading the umask means setting it; put it back at once 读取 umask 需先设置再恢复
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", what: str = "file") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.
    原子写入：成功时重命名覆盖目标，失败时删除临时文件、目标保持原样

    The target is replaced only when the ``with`` block finishes without an exception, so readers see either the
    old file or the whole new one. Any ``OSError`` (full disk, no permission) becomes :class:`OutputError`.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_write(target, "w") as f:
    ...     _ = f.write("hello")
    >>> target.read_text()
    'hello'
    """
    path = Path(path).expanduser()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _umask_mode())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(path, exc, what) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened (Windows). 使重命名落盘"""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes, what: str = "file") -> Path:
    """Atomically write ``data`` to ``path``. 原子写入字节"""
    with atomic_write(path, "wb", what) as handle:
        handle.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, value: Any, what: str = "report") -> Path:
    """Atomically write ``value`` (made plain by :func:`to_plain`) as indented JSON. 原子写入 JSON"""
    text = json.dumps(to_plain(value), indent=2, sort_keys=False) + "\n"
    with atomic_write(path, "w", what) as handle:
        handle.write(text)
    return Path(path)


def write_with(path: str | os.PathLike, writer: Callable[[IO[bytes]], None], what: str = "file") -> Path:
    """Atomically write ``path`` through ``writer(handle)`` (``torch.save``, ``PIL.Image.save``, tifffile).
    通过回调原子写入（torch.save、PIL、tifffile 等）"""
    with atomic_write(path, "wb", what) as handle:
        writer(handle)
    return Path(path)


def remove_stale_temporaries(folder: str | os.PathLike, target: str) -> list[Path]:
    """Delete ``.<target>.*.tmp`` files that a killed process left in ``folder``; return what was removed.
    删除被强制终止的进程留下的临时文件"""
    removed = []
    for tmp in Path(folder).glob(f".{target}.*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def ensure_writable_dir(path: str | os.PathLike, flag: str = "--out-dir") -> Path:
    """Create ``path`` if needed and check that a file can be written there; ``flag`` names the option to change.
    创建目录（如需要）并检查可写

    Raises:
        ConfigError: the folder cannot be created or is read-only (on Kaggle, write under /kaggle/working).
    """
    p = Path(path).expanduser()
    hint = " On Kaggle, write under /kaggle/working." if str(p).startswith("/kaggle/input") else ""
    if p.exists() and not p.is_dir():
        raise ConfigError(f"Output folder {str(p)!r} is a file, not a folder. Choose another {flag}.")
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".write-test-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"Output folder {str(p)!r} is not writable ({exc.strerror or exc}). Choose another {flag}.{hint}"
        ) from None
    return p


@contextlib.contextmanager
def checked_output_dir(path: str | os.PathLike, flag: str = "--out-dir") -> Iterator[Path]:
    """:func:`ensure_writable_dir`, undone if the ``with`` block raises: the folders it created are removed again
    while they are empty, so a setting refused after the output check leaves nothing behind.
    检查并创建输出目录；若 with 块出错，删除本次新建且仍为空的目录

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> try:
    ...     with checked_output_dir(root / "a" / "b", "-o"):
    ...         raise ConfigError("a setting refused after the check")
    ... except ConfigError:
    ...     pass
    >>> sorted(root.iterdir())
    []
    """
    p = Path(path).expanduser()
    created = [parent for parent in (p, *p.parents) if not parent.exists()]   # 最深的在前
    p = ensure_writable_dir(p, flag)
    try:
        yield p
    except BaseException:
        for folder in created:                                              # 仅删除仍为空的新目录
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def ensure_writable_file(path: str | os.PathLike, flag: str = "-o", *, report_keys: Iterable[str] = ()) -> Path:
    """Check, before any work, that the file ``path`` can be written (its folder is created if needed).
    工作开始前检查输出文件可写

    An existing file is replaced only when it is a JSON report of the same kind, a JSON object holding every key
    in ``report_keys`` (the command's earlier output); anything else, a checkpoint or a training run's
    metrics.json, is refused rather than overwritten. 已存在的文件只有是同类 JSON 报告时才会被替换，其他文件拒绝覆盖

    Raises:
        ConfigError: ``path`` is a folder, or its folder cannot be created or written.
        OutputError: ``path`` is an existing file that is not such a report.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{str(p)!r} is a folder; {flag} needs a file name.")
    if p.exists() and not is_json_report(p, report_keys):
        raise OutputError(f"{flag} {str(p)!r} is an existing file that this command did not write (not its JSON "
                          "report), so it would be overwritten and lost. Give a new file name, or move that file "
                          "away first.")
    ensure_writable_dir(p.parent if str(p.parent) else ".", flag)
    return p


def is_json_report(path: str | os.PathLike, keys: Iterable[str], *, lines: bool = False) -> bool:
    """True when ``path`` is a file the package wrote earlier, recognised by its keys: a JSON object holding all
    ``keys``, or a JSON list of such objects; with ``lines=True`` a JSON-lines file whose every row holds them.
    An empty file counts (it holds nothing to lose). 按键识别本包之前写的 JSON（对象、对象列表或逐行 JSON）

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "m.jsonl"
    >>> _ = f.write_text('{"step": 1}\\n{"step": 2}\\n')
    >>> is_json_report(f, ["step"], lines=True), is_json_report(f, ["epoch"], lines=True)
    (True, False)
    """
    wanted, file = set(keys), Path(path)
    if not wanted or file.stat().st_size > 256 * 2**20:
        return False
    try:
        text = file.read_text(encoding="utf-8")
        rows = [json.loads(line) for line in text.splitlines() if line.strip()] if lines else (
            json.loads(text) if text.strip() else [])
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    rows = [rows] if isinstance(rows, dict) else rows
    return isinstance(rows, list) and all(isinstance(row, dict) and wanted <= set(row) for row in rows)
