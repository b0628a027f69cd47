"""Field-of-view (FOV) masks: find the one that belongs to an image, and blank the prediction outside it.
视野（FOV）掩码：找到图像对应的视野掩码，并把视野之外的预测设为背景

Retina photographs (DRIVE) are round: the black corners are outside the camera's *视野*（field of view). DRIVE
ships one FOV mask per image (``test/mask/01_test_mask.gif``); predictions outside it are set to the background.
视网膜照片是圆形的，黑色四角在相机视野之外；DRIVE 为每张图提供一个视野掩码
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.io import IMAGE_EXTENSIONS, read_mask
from ..errors import DataError


def find_fov_mask(folder: Path, image: Path) -> Path:
    """The field-of-view mask of ``image`` in ``folder``: ``<stem>_mask.*`` (DRIVE's naming) or ``<stem>.*``.
    在 folder 中查找 image 的视野掩码：<stem>_mask.* 或 <stem>.*

    Args:
        folder: the folder of FOV masks (for DRIVE: ``DRIVE/test/mask``). 视野掩码所在目录
        image: the image whose mask is wanted. 需要视野掩码的图像

    Returns:
        The path of the mask (an image file).

    Raises:
        DataError: the folder is missing, or holds no mask for this image (the message names both and the
            names that were tried).
    """
    folder, image = Path(folder), Path(image)
    if not folder.is_dir():
        raise DataError(f"--fov-dir {str(folder)!r} is not a folder; pass the folder of FOV masks "
                        "(for DRIVE: DRIVE/test/mask).")
    for stem in (f"{image.stem}_mask", image.stem):                  # DRIVE 的命名优先
        for candidate in sorted(folder.glob(f"{stem}.*")):
            if candidate.suffix.lower() in IMAGE_EXTENSIONS:
                return candidate
    raise DataError(f"No field-of-view mask for {image.name} in {str(folder)!r} (looked for {image.stem}_mask.* "
                    f"and {image.stem}.*). Name the masks like the images, or leave out --fov-dir.")


def apply_fov(mask: np.ndarray, fov_path: Path, background: int) -> np.ndarray:
    """Set ``mask`` to ``background`` wherever the FOV mask at ``fov_path`` is 0. 视野之外设为背景值

    Args:
        mask: ``(H, W)`` predicted mask values. 预测的掩码取值
        fov_path: the FOV mask file (non-zero inside the field of view). 视野掩码文件（视野内非零）
        background: the mask value written outside the FOV (``mask_values[0]``). 视野外写入的取值

    Returns:
        A copy of ``mask`` ``(H, W)``.

    Raises:
        DataError: the FOV mask's size differs from the prediction's.
    """
    fov = read_mask(fov_path) > 0                                    # (H, W) bool 视野内为 True
    if fov.shape != mask.shape:
        raise DataError(f"The FOV mask {str(fov_path)!r} is {fov.shape[1]}x{fov.shape[0]} but the image is "
                        f"{mask.shape[1]}x{mask.shape[0]}; use the FOV masks that belong to these images.")
    out = mask.copy()
    out[~fov] = background
    return out


__all__ = ["apply_fov", "find_fov_mask"]
