"""Read images, masks and multi-page stacks from files, zip members or raw bytes.
读取图像、掩码与多页图像栈（来源可以是文件、zip 成员或字节串）

Every reader returns plain NumPy arrays with a fixed layout, so the rest of the package never sees PIL modes or
TIFF page orders:

- :func:`read_image` -> ``np.uint8`` ``(H, W, C)`` with ``C`` in {1, 3};
- :func:`read_mask` -> integer ``(H, W)`` holding the raw values stored in the file (not yet class indices);
- :func:`read_stack` -> ``(N, H, W)`` for multi-page TIFF volumes such as ISBI-2012.

PIL decodes jpg/png/gif/bmp; tifffile decodes tif/tiff (multi-page, 16-bit and planar layouts included).
A file that cannot be decoded raises :class:`~unet_course.errors.DataError` naming the file, never a bare PIL or
tifffile traceback.
PIL 负责 jpg/png/gif/bmp，tifffile 负责 tif/tiff；无法解码的文件抛出 DataError 并写明文件名

**Bit depth rule** (one rule for every file, set by the storage type, never by the pixel values): 8-bit images are
kept as they are; every wider integer image (16-bit, and 32-bit files whose values fit in 16 bits) is read on the
full 16-bit scale, ``uint8 = round(value / 257)``, so 0 -> 0 and 65535 -> 255, and a raw value reads the same in
every file whatever that file's maximum (200 -> 1 everywhere; a 16-bit file that only uses 0..255 therefore reads
dark: convert such files to 8-bit first). 1-bit images give 0/255; floats must lie in [0, 1] and are multiplied by
255. Masks are never rescaled: :func:`read_mask` returns the stored values.
位深规则（对每个文件相同，只由存储类型决定，与像素值无关）：8 位图像原样保留；更宽的整数图像一律按 16 位满量程读取，
uint8 = round(value / 257)，因此同一原始值在任何文件中读数相同；掩码从不缩放

**Orientation rule**: a JPEG or PNG file whose EXIF orientation tag says "rotate/flip for display" (phone
photos) is read the way every viewer and labelling tool shows it (PIL's ``ImageOps.exif_transpose``), images and
masks alike, so a mask drawn on the shown photo pairs with it. TIFF files are read as stored, whichever decoder
reads them.
方向规则：带 EXIF 方向标记的 JPEG/PNG（手机照片）按查看器与标注工具显示的方向读取（图像与掩码相同）；TIFF 按存储方向读取

Channels (:func:`match_channels`, the only place that converts gray <-> RGB) and image suffixes
(:data:`IMAGE_EXTENSIONS`, :data:`TIFF_EXTENSIONS`) live here too, so every data set follows the same rules.
通道转换（match_channels）与图像扩展名也只在本模块定义
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageOps

from ..errors import DataError

#: File extensions accepted for images and masks (lower case). 支持的图像与掩码扩展名
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif", ".bmp")
#: The subset decoded by tifffile (multi-page, 16-bit). 由 tifffile 解码的扩展名
TIFF_EXTENSIONS = (".tif", ".tiff")
#: Divisor that brings any integer image wider than 8 bits to uint8 (65535 / 257 = 255). 16 位转 8 位的除数
SCALE_16_TO_8 = 257
#: The EXIF orientation tag, and its values that swap width and height (a 90° turn). EXIF 方向标记及交换宽高的取值
EXIF_ORIENTATION = 0x0112
_TURNED = (5, 6, 7, 8)

Source = str | os.PathLike | bytes


def is_image_file(name: str | os.PathLike) -> bool:
    """True for a visible file whose extension is in :data:`IMAGE_EXTENSIONS`. 是否为受支持的图像文件"""
    base = os.path.basename(str(name))
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def image_subfolders(folder: str | os.PathLike) -> list[Path]:
    """The subfolders of ``folder`` that hold image files (for hints when a folder one level up was given).
    含有图像文件的子目录（给出上一级目录时用于提示）"""
    def holds_images(d: Path) -> bool:
        try:
            return d.is_dir() and any(is_image_file(p) for p in d.iterdir())
        except OSError:                                  # an unreadable subfolder gives no hint 无法读取的子目录不提示
            return False

    try:
        return sorted(d for d in Path(folder).iterdir() if holds_images(d))
    except OSError:
        return []


def _label(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, bytes | bytearray):
        return "<bytes>"
    return str(source)


def _suffix(source: Source, name: str | None) -> str:
    ref = name if name else ("" if isinstance(source, bytes | bytearray) else str(source))
    return Path(ref).suffix.lower()


@contextlib.contextmanager
def _quiet_decoders() -> Iterator[None]:
    """Silence what tifffile and PIL print about a broken file while decoding it: the DataError raised for it
    says the same with the file's name. 解码时屏蔽 tifffile 与 PIL 对损坏文件的提示，由 DataError 统一说明
    """
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Corrupt EXIF data", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _decode(source: Source, name: str | None, kind: str = "image") -> np.ndarray:
    """Decode the first page of an image file into an array with its native dtype.
    解码为保留原始 dtype 的数组

    ``kind="mask"`` keeps palette indices (the stored labels); ``kind="image"`` renders a palette to gray or RGB.
    掩码保留调色板索引；图像则把调色板展开为灰度或 RGB
    """
    label = _label(source, name)
    if not isinstance(source, bytes | bytearray) and not Path(source).is_file():
        raise DataError(f"File {label!r} does not exist. Check the path or re-download the data set.")
    ext = _suffix(source, name)
    data = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    if ext in TIFF_EXTENSIONS:
        _refuse_stack(data, label)
        # tifffile first (16-bit, planar, multi-page); compressed TIFFs whose codec needs the optional
        # imagecodecs package (e.g. DRIVE's LZW files) fall back to PIL
        # 先用 tifffile；若压缩格式需要可选的 imagecodecs 包（如 DRIVE 的 LZW），改用 PIL
        try:
            with _quiet_decoders():
                arr = np.asarray(tifffile.imread(data, key=0))
            if arr.size:                                  # a truncated file can read as an empty array 截断的文件可能读出空数组
                return arr
        except Exception:
            pass
        if isinstance(data, io.BytesIO):
            data.seek(0)
    try:
        with _quiet_decoders(), Image.open(data) as opened:
            opened.seek(0)
            im = _as_displayed(opened, ext)
            if im.mode in ("P", "PA"):
                if kind == "mask":
                    return np.asarray(im.convert("P") if im.mode == "PA" else im)
                return np.asarray(im.convert("RGB" if _palette_is_colour(im) else "L"))
            if im.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                return np.asarray(im.convert("L" if im.mode == "1" else "RGB"))
            return np.asarray(im)
    except Exception as exc:  # PIL/tifffile raise many different types for broken files
        raise DataError(
            f"Cannot decode {label!r} as an image ({type(exc).__name__}: {exc}). The file is corrupt, truncated or "
            "not an image; re-download it or remove it (and its pair) from the data set."
        ) from None


def _orientation(im: Image.Image, ext: str) -> int:
    """The EXIF orientation (1 = as stored) the orientation rule applies; TIFFs are read as stored. EXIF 方向"""
    if ext in TIFF_EXTENSIONS:
        return 1
    try:
        if ext == ".png":                                 # PNG: the eXIf chunk before the pixels, where writers put it;
            raw = im.info.get("exif")                     # getexif() would decode the whole image to look further
            if not raw:                                   # PNG：只看像素之前的 eXIf 块，避免为查找而解码整张图
                return 1
            exif = Image.Exif()
            exif.load(raw)
            return int(exif.get(EXIF_ORIENTATION, 1))
        return int(im.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:                                     # an unreadable EXIF block: read as stored 无法读取的 EXIF：按存储方向
        return 1


def _as_displayed(im: Image.Image, ext: str) -> Image.Image:
    """``im`` turned the way viewers show it (the orientation rule). 按查看器显示的方向返回图像"""
    if not 2 <= _orientation(im, ext) <= 8:               # 1 (as stored), or a value no viewer knows 无需旋转或取值无效
        return im
    return ImageOps.exif_transpose(im)


def _refuse_stack(data: str | os.PathLike | io.BytesIO, label: str) -> None:
    """One image per file: a multi-page TIFF read as one image would silently give its first page only.
    一个文件一张图像：多页 TIFF 若当作单张图像读取，只会悄悄得到第一页
    """
    try:
        with _quiet_decoders(), tifffile.TiffFile(data) as tif:
            pages = len(tif.pages)
    except Exception:                                     # the decoders below give the clear error 由后面的解码报错
        return
    finally:
        if isinstance(data, io.BytesIO):
            data.seek(0)
    if pages > 1:
        raise DataError(
            f"{label!r} is a multi-page TIFF ({pages} pages), but it is read here as one image, which would use only "
            "its first page. Save one page per file (the folder data set takes one image and one mask per file), "
            "or read the stack with read_stack(), as `unet-course predict` and the isbi2012 data set do."
        )


def _palette_is_colour(im) -> bool:
    """True when some used palette entry is not grey (R == G == B). 调色板中是否存在非灰色条目"""
    pal = im.getpalette() or []
    for idx in np.unique(np.asarray(im)).tolist():
        rgb = pal[3 * idx : 3 * idx + 3]
        if len(rgb) == 3 and not (rgb[0] == rgb[1] == rgb[2]):
            return True
    return False


def to_uint8(arr: np.ndarray, label: str) -> np.ndarray:
    """Bring any integer/float image to uint8 by the module's bit depth rule. 按位深规则将图像转换为 uint8

    8-bit is kept; wider integers are divided by :data:`SCALE_16_TO_8` (257, so 65535 -> 255) whatever the file's
    own maximum; floats must lie in [0, 1] and are multiplied by 255.
    8 位原样保留；更宽的整数一律除以 257（与文件自身最大值无关）；浮点图像须在 [0, 1] 内，乘以 255

    >>> to_uint8(np.array([[200, 65535]], np.uint16), "x").tolist()
    [[1, 255]]
    """
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and arr.min() < 0:
            raise DataError(f"Image {label!r} holds negative values (dtype {arr.dtype}); convert it to 8-bit first.")
        if arr.size and arr.max() > 65535:
            raise DataError(
                f"Image {label!r} holds values up to {int(arr.max())} (dtype {arr.dtype}), beyond the 16-bit range "
                "this package reads; convert it to 8- or 16-bit first."
            )
        return np.round(arr.astype(np.float64) / SCALE_16_TO_8).astype(np.uint8)  # 0..65535 -> 0..255
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if not np.isfinite(arr).all() or lo < 0.0 or hi > 1.0:
            raise DataError(
                f"Image {label!r} is floating point with values in [{lo:.3g}, {hi:.3g}]; only [0, 1] floats are "
                "accepted. Save it as 8-bit PNG/TIFF."
            )
        return np.round(arr * 255.0).astype(np.uint8)
    raise DataError(f"Image {label!r} has unsupported dtype {arr.dtype}; save it as 8-bit PNG/JPEG/TIFF.")


def read_image(source: Source, name: str | None = None) -> np.ndarray:
    """Read an image as ``np.uint8`` ``(H, W, C)`` with ``C`` = 1 (grayscale) or 3 (RGB).
    读取图像，返回 uint8 的 (H, W, C)，C 为 1（灰度）或 3（RGB）

    Alpha channels are dropped; colour palettes are expanded to RGB; integer images wider than 8 bits are divided
    by 257 (the module's bit depth rule).
    TIFFs stored channel-first ``(3, H, W)`` are transposed.
    丢弃 alpha 通道；彩色调色板展开为 RGB；宽于 8 位的整数图像一律除以 257；通道在前的 TIFF 会被转置

    Args:
        source: a path, or the file's bytes (e.g. a zip member). 路径或文件字节
        name: the name to show in error messages; also gives the extension for ``bytes``. 报错时显示的名称

    Returns:
        ``np.uint8`` array ``(H, W, C)``.

    Raises:
        DataError: the file is missing, corrupt, or has an unsupported layout.

    >>> import numpy as np, io
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(buf, format="PNG")
    >>> read_image(buf.getvalue(), name="x.png").shape
    (4, 5, 3)
    """
    label = _label(source, name)
    arr = _decode(source, name, "image")
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] > 4:
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 2:
        arr = arr[:, :, None]  # (H, W) -> (H, W, 1)
    if arr.ndim != 3:
        raise DataError(
            f"Image {label!r} has shape {arr.shape}; expected (H, W) or (H, W, C). Multi-page stacks are read with "
            "read_stack()."
        )
    channels = arr.shape[2]
    if channels == 2:  # gray + alpha
        arr = arr[:, :, :1]
    elif channels == 4:  # RGBA -> RGB
        arr = arr[:, :, :3]
    elif channels not in (1, 3):
        raise DataError(f"Image {label!r} has {channels} channels; only 1 (gray), 3 (RGB) or 4 (RGBA) are supported.")
    return np.ascontiguousarray(to_uint8(arr, label))


def read_mask(source: Source, name: str | None = None) -> np.ndarray:
    """Read a label mask as an integer ``(H, W)`` array of the raw stored values.
    读取掩码，返回存储的原始取值 (H, W)（尚未映射为类别索引）

    Palette images (GIF, indexed PNG) give their palette indices, as stored. A 3-channel mask whose channels are
    equal is reduced to one channel; a truly coloured mask is refused (convert it to an index mask first).
    调色板图像返回索引；三通道相同的掩码取其一通道；真正的彩色掩码会报错

    Args:
        source: a path, or the file's bytes. 路径或文件字节
        name: the name to show in error messages. 报错时显示的名称

    Returns:
        ``(H, W)`` array, ``np.uint8`` for 8-bit files (``uint16``/``int32`` otherwise).

    Raises:
        DataError: missing/corrupt file, colour mask, or floating-point mask.
    """
    label = _label(source, name)
    arr = _decode(source, name, "mask")
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] > 4:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3:
        if arr.shape[2] in (2, 4):  # drop alpha 去掉 alpha
            arr = arr[:, :, : arr.shape[2] - 1]
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        elif arr.shape[2] == 3 and (arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 0] == arr[:, :, 2]).all():
            arr = arr[:, :, 0]
        else:
            raise DataError(
                f"Mask {label!r} is a colour image (shape {arr.shape}); masks must hold one value per pixel. Convert "
                "it to a single-channel index mask (each colour -> one integer) and save it as PNG."
            )
    if arr.ndim != 2:
        raise DataError(f"Mask {label!r} has shape {arr.shape}; expected a single (H, W) plane.")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"Mask {label!r} has floating-point values (dtype {arr.dtype}); masks must store integer labels. "
            "Save it as 8-bit PNG/GIF."
        )
    return np.ascontiguousarray(arr)


def read_stack(source: Source, name: str | None = None) -> np.ndarray:
    """Read every page of a multi-page TIFF as ``(N, H, W)`` (grayscale) or ``(N, H, W, C)``.
    读取多页 TIFF 的全部页面

    Args:
        source: a path or the file's bytes. 路径或字节
        name: the name to show in error messages. 报错时显示的名称

    Raises:
        DataError: missing or corrupt file.
    """
    label = _label(source, name)
    if not isinstance(source, bytes | bytearray) and not Path(source).is_file():
        raise DataError(f"File {label!r} does not exist. Check the path or re-download the data set.")
    try:
        data = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
        with _quiet_decoders():
            arr = np.asarray(tifffile.imread(data))
        if not arr.size:
            raise ValueError("no pages could be read")
    except Exception as exc:
        raise DataError(
            f"Cannot read {label!r} as a multi-page TIFF ({type(exc).__name__}: {exc}). The file is corrupt or "
            "truncated; re-download it."
        ) from None
    if arr.ndim == 2:
        arr = arr[None]  # a single page -> (1, H, W)
    return np.ascontiguousarray(arr)


def page_count(path: str | os.PathLike) -> int:
    """Number of pages of a TIFF; 1 for other files and for a TIFF that cannot be read (reading it then raises
    the clear error). TIFF 的页数；其他文件或无法读取的 TIFF 为 1（读取时再给出清晰的错误）
    """
    if Path(path).suffix.lower() not in TIFF_EXTENSIONS:
        return 1
    try:
        with _quiet_decoders(), tifffile.TiffFile(path) as tif:
            return max(1, len(tif.pages))
    except Exception:
        return 1


def image_size(source: Source, name: str | None = None) -> tuple[int, int, int]:
    """``(H, W, C)`` of an image read from its header where possible (cheap). 从文件头读取图像尺寸

    Falls back to a full decode for TIFFs and unusual modes.
    """
    ext = _suffix(source, name)
    if ext not in TIFF_EXTENSIONS:
        try:
            data = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
            with Image.open(data) as im:
                w, h = im.size
                if _orientation(im, ext) in _TURNED:
                    w, h = h, w                           # shown turned by 90° (the orientation rule) 显示时旋转 90°
                channels = 1 if im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") else 3
                if im.mode in ("P", "PA"):
                    channels = 3 if _palette_is_colour(im) else 1
                return h, w, channels
        except Exception:
            pass
    arr = read_image(source, name)
    return arr.shape[0], arr.shape[1], arr.shape[2]


def resolve_channels(have: int, in_channels: int | None, name: str) -> int:
    """The channel count an image with ``have`` channels gets for ``in_channels``, or raise (the rule itself).
    给定 in_channels 时，具有 have 个通道的图像最终的通道数；无法调和时报错

    Rules (documented in data/README.md): ``None`` keeps ``have``; gray -> RGB repeats the single channel three
    times; RGB -> gray is refused (it would silently drop colour; pass ``in_channels=3`` or leave it ``None``); any
    other count is refused. Data sets call this on the first image's header to fail early, and
    :func:`match_channels` calls it on every image.
    规则：None 保持不变；灰度转 RGB 时复制三份；RGB 转灰度会丢失颜色，因此报错

    Raises:
        DataError: the channel counts cannot be reconciled.

    >>> resolve_channels(1, 3, "x.png"), resolve_channels(3, None, "x.png")
    (3, 3)
    """
    have = int(have)
    if in_channels is None or have == int(in_channels):
        if have not in (1, 3):
            raise DataError(f"Image {name!r} has {have} channel(s); only 1 (grayscale) and 3 (RGB) are supported.")
        return have
    if have == 1 and in_channels == 3:
        return 3
    if have == 3 and in_channels == 1:
        raise DataError(
            f"Image {name!r} is RGB (3 channels) but in_channels=1 is in use (requested, or taken from a gray first "
            "image when unset). Colour is never dropped silently: pass in_channels=3 (gray images are then repeated "
            "to RGB), or convert the images to grayscale yourself."
        )
    raise DataError(
        f"Image {name!r} has {have} channel(s) but in_channels={in_channels} was requested. Only 1 (grayscale) and "
        "3 (RGB) are supported; grayscale images are repeated to RGB when in_channels=3."
    )


def match_channels(image: np.ndarray, in_channels: int | None, name: str) -> np.ndarray:
    """Bring an ``(H, W, C)`` uint8 image to ``in_channels`` channels, or raise (rules: :func:`resolve_channels`).
    将图像调整为 in_channels 个通道，无法调和时报错

    Raises:
        DataError: the channel counts cannot be reconciled.

    >>> match_channels(np.zeros((2, 2, 1), np.uint8), 3, "x.png").shape
    (2, 2, 3)
    """
    want = resolve_channels(image.shape[2], in_channels, name)
    if want == image.shape[2]:
        return image
    return np.repeat(image, want, axis=2)  # (H, W, 1) -> (H, W, 3)
