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
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..errors import DataError

#: File extensions accepted for images and masks (lower case). 支持的图像与掩码扩展名
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif", ".bmp")
TIFF_EXTENSIONS = (".tif", ".tiff")

Source = str | os.PathLike | bytes


def is_image_file(name: str | os.PathLike) -> bool:
    """True for a visible file whose extension is in :data:`IMAGE_EXTENSIONS`. 是否为受支持的图像文件"""
    base = os.path.basename(str(name))
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def _label(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, bytes | bytearray):
        return "<bytes>"
    return str(source)


def _suffix(source: Source, name: str | None) -> str:
    ref = name if name else ("" if isinstance(source, bytes | bytearray) else str(source))
    return Path(ref).suffix.lower()


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
        # tifffile first (16-bit, planar, multi-page); compressed TIFFs whose codec needs the optional
        # imagecodecs package (e.g. DRIVE's LZW files) fall back to PIL
        # 先用 tifffile；若压缩格式需要可选的 imagecodecs 包（如 DRIVE 的 LZW），改用 PIL
        try:
            import tifffile

            return np.asarray(tifffile.imread(data, key=0))
        except Exception:
            if isinstance(data, io.BytesIO):
                data.seek(0)
    try:
        from PIL import Image

        with Image.open(data) as im:
            im.seek(0)
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


def _palette_is_colour(im) -> bool:
    """True when some used palette entry is not grey (R == G == B). 调色板中是否存在非灰色条目"""
    pal = im.getpalette() or []
    for idx in np.unique(np.asarray(im)).tolist():
        rgb = pal[3 * idx : 3 * idx + 3]
        if len(rgb) == 3 and not (rgb[0] == rgb[1] == rgb[2]):
            return True
    return False


def _to_uint8(arr: np.ndarray, label: str) -> np.ndarray:
    """Bring any integer/float image to uint8. 将任意整数/浮点图像转换为 uint8

    16-bit integers are divided by 257 (65535 -> 255); floats must lie in [0, 1] and are multiplied by 255.
    16 位整数除以 257；浮点图像须在 [0, 1] 内，乘以 255
    """
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0:
            raise DataError(f"Image {label!r} holds negative values (dtype {arr.dtype}); convert it to 8-bit first.")
        top = 255 if arr.max() <= 255 else 65535
        return np.round(arr.astype(np.float64) * (255.0 / top)).clip(0, 255).astype(np.uint8)
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

    Alpha channels are dropped; colour palettes are expanded to RGB; 16-bit images are divided by 257.
    TIFFs stored channel-first ``(3, H, W)`` are transposed.
    丢弃 alpha 通道；彩色调色板展开为 RGB；16 位图像除以 257；通道在前的 TIFF 会被转置

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
    return np.ascontiguousarray(_to_uint8(arr, label))


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
        import tifffile

        data = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
        arr = np.asarray(tifffile.imread(data))
    except Exception as exc:
        raise DataError(
            f"Cannot read {label!r} as a multi-page TIFF ({type(exc).__name__}: {exc}). Re-download the file."
        ) from None
    if arr.ndim == 2:
        arr = arr[None]  # a single page -> (1, H, W)
    return np.ascontiguousarray(arr)


def image_size(source: Source, name: str | None = None) -> tuple[int, int, int]:
    """``(H, W, C)`` of an image read from its header where possible (cheap). 从文件头读取图像尺寸

    Falls back to a full decode for TIFFs and unusual modes.
    """
    ext = _suffix(source, name)
    if ext not in TIFF_EXTENSIONS:
        try:
            from PIL import Image

            data = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
            with Image.open(data) as im:
                w, h = im.size
                channels = 1 if im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") else 3
                if im.mode in ("P", "PA"):
                    channels = 3 if _palette_is_colour(im) else 1
                return h, w, channels
        except Exception:
            pass
    arr = read_image(source, name)
    return arr.shape[0], arr.shape[1], arr.shape[2]


def match_channels(image: np.ndarray, in_channels: int | None, name: str) -> np.ndarray:
    """Bring an ``(H, W, C)`` uint8 image to ``in_channels`` channels, or raise.
    将图像调整为 in_channels 个通道，无法调和时报错

    Rules (documented in data/README.md): ``None`` keeps the image as it is; gray -> RGB repeats the single
    channel three times; RGB -> gray is refused (it would silently drop colour; pass ``in_channels=3`` or leave it
    ``None``); any other count is refused.
    规则：None 保持不变；灰度转 RGB 时复制三份；RGB 转灰度会丢失颜色，因此报错

    Raises:
        DataError: the channel counts cannot be reconciled.
    """
    have = image.shape[2]
    if in_channels is None or have == in_channels:
        return image
    if have == 1 and in_channels == 3:
        return np.repeat(image, 3, axis=2)  # (H, W, 1) -> (H, W, 3)
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
