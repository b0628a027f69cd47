"""Joint image/mask transforms on ``tv_tensors``, normalisation statistics and prediction pre-processing.
图像与掩码的联合变换（基于 tv_tensors）、归一化统计量以及预测时的预处理

Geometry must move the image and its mask together, and the mask must never gain a value it did not have:
``torchvision.transforms.v2`` dispatches on the tensor type, so the same transform object rotates a
``tv_tensors.Image`` and a ``tv_tensors.Mask`` alike, pads the mask with ``ignore_index`` and leaves the mask out
of colour changes. Resizing is done by hand so that the interpolation of each is explicit: bilinear with
antialiasing for the image, **nearest** for the mask, always.
几何变换必须同时作用于图像和掩码，且掩码不能出现新的取值；缩放时图像用双线性（抗锯齿），掩码始终用最近邻

Order (training): scale -> random crop (padding as needed) -> [random rotation by any angle, then the centre
crop] -> [elastic deformation, then the centre crop] -> flips -> 90-degree rotation -> to float in [0, 1] ->
brightness / contrast / gamma on the image only -> ``(x - mean) / std``. Evaluation keeps only the scale and the
normalisation. Each call runs with one torch thread (restored afterwards): per-image operations
are too small to gain from threads, and on a busy 2-core machine the thread synchronisation made them 10x slower.
训练时的顺序：缩放 -> 随机裁剪（必要时填充）->［任意角度旋转后取中心］->［弹性形变后取中心］-> 翻转 ->
90 度旋转 -> 转为浮点 -> 仅对图像做亮度/对比度/gamma -> 归一化；
每次调用期间只用一个 torch 线程
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..errors import ConfigError, DataError
from ..rules import check_warp
from .io import match_channels


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Size after resizing by ``scale``: ``max(1, round(side * scale))``. 缩放后的尺寸"""
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def rotation_margin(crop_size: int) -> int:
    """Side of the window that still covers a ``crop_size`` square after any rotation: ``ceil(crop_size·√2)``,
    rounded up to an even number so the centre crop is centred. 任意旋转后仍能覆盖 crop_size 方块的窗口边长

    >>> rotation_margin(128), rotation_margin(64)
    (182, 92)
    """
    side = math.ceil(int(crop_size) * math.sqrt(2.0))
    return side + side % 2


class RandomRot90(v2.Transform):
    """Rotate by a random multiple of 90 degrees (image and mask together).
    随机旋转 90 度的整数倍（图像与掩码同步）

    Non-square inputs only get 0 or 180 degrees, so every sample of a batch keeps its ``(H, W)``.
    非正方形输入只旋转 0 或 180 度，保证同一批量内尺寸不变
    """

    def make_params(self, flat_inputs: list) -> dict:
        h, w = next(x.shape[-2:] for x in flat_inputs if isinstance(x, torch.Tensor))
        choices = 4 if h == w else 2
        k = int(torch.randint(choices, ()).item())
        return {"k": k if h == w else 2 * k}

    def transform(self, inpt, params: dict):
        if params["k"] == 0:
            return inpt
        return tv_tensors.wrap(torch.rot90(inpt, params["k"], dims=(-2, -1)), like=inpt)


def elastic_margin(sigma: float) -> int:
    """Pixels added on each side of a crop that :class:`RandomElastic` deforms: ``ceil(3 * sigma)``, so that
    displacements up to three standard deviations still find image pixels. 弹性形变前每侧多裁剪的像素数

    >>> elastic_margin(4), elastic_margin(0)
    (12, 0)
    """
    return math.ceil(3.0 * float(sigma))


class RandomElastic(v2.Transform):
    """Smooth random deformation of image and mask together, as in the U-Net paper: random displacements on a
    coarse ``grid x grid`` lattice, interpolated bicubically to one displacement per pixel.
    随机平滑形变（U-Net 论文的做法）：在粗网格上随机采样位移，再双三次插值到每个像素；图像与掩码同步

    Args:
        sigma: standard deviation of each coarse displacement, in pixels (the paper: 10 on 572-pixel tiles).
            粗网格位移的标准差（像素）
        grid: control points per side (the paper: 3). 每边控制点数
        fill: value for pixels moved in from outside, per type, e.g. ``{tv_tensors.Mask: 255}``. 越界像素填充值

    The image is interpolated bilinearly and the mask by nearest neighbour, so a 1-2 pixel line comes out fainter
    and wider in the image but sharp and jogged in the mask; on DRIVE's thin vessels this cost F1 (README).
    图像双线性插值、掩码最近邻：细线在图像中变淡变宽，在掩码中保持锐利但出现错位；在 DRIVE 上降低了 F1
    """

    def __init__(self, sigma: float, grid: int = 3, fill: dict | None = None) -> None:
        super().__init__()
        self.sigma = float(sigma)
        self.grid = int(grid)
        self.fill = fill or {}

    def make_params(self, flat_inputs: list) -> dict:
        h, w = next(x.shape[-2:] for x in flat_inputs if isinstance(x, torch.Tensor))
        coarse = torch.randn(1, 2, self.grid, self.grid) * self.sigma            # (1, 2, g, g) (dx, dy) in pixels
        field = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic",
                                                align_corners=True)             # (1, 2, H, W) one per pixel
        to_unit = torch.tensor([2.0 / w, 2.0 / h])                              # pixels -> grid_sample's [-1, 1]
        return {"displacement": field.permute(0, 2, 3, 1) * to_unit}            # (1, H, W, 2) as F.elastic takes

    def transform(self, inpt, params: dict):
        # the mask kernel of F.elastic always interpolates by nearest neighbour 掩码始终用最近邻插值
        fill = next((v for kind, v in self.fill.items() if isinstance(inpt, kind)), None)
        return F.elastic(inpt, params["displacement"], interpolation=v2.InterpolationMode.BILINEAR,
                         fill=None if fill is None else [float(fill)])


class RandomGamma(v2.Transform):
    """Gamma correction with a random exponent, image only (masks pass through).
    随机 gamma 校正，仅作用于图像
    """

    def __init__(self, gamma: tuple[float, float] = (0.8, 1.25)) -> None:
        super().__init__()
        self.gamma = (float(gamma[0]), float(gamma[1]))

    def make_params(self, flat_inputs: list) -> dict:
        lo, hi = np.log(self.gamma[0]), np.log(self.gamma[1])
        return {"gamma": float(np.exp(lo + (hi - lo) * torch.rand(()).item()))}  # 对数均匀采样

    def transform(self, inpt, params: dict):
        if isinstance(inpt, tv_tensors.Image):
            return F.adjust_gamma(inpt, params["gamma"])
        return inpt


class SegmentationTransform:
    """Turn ``(image uint8 (H, W, C), target int64 (H, W))`` into normalised tensors.
    把 (uint8 图像, int64 目标) 变换为归一化后的张量

    Args:
        train: random crop and augmentation (when ``augment``); False gives the evaluation pipeline.
            训练模式：启用随机裁剪与增强
        crop_size: square training crop in pixels (after ``scale``); images smaller than the crop are padded, the
            image with 0 and the mask with ``ignore_index``. ``None`` keeps the whole image. 训练裁剪大小
        scale: resize factor applied first (train and eval). 缩放比例
        mean, std: per-channel statistics in [0, 1] units. 逐通道均值与标准差
        augment: flips, 90-degree rotations, brightness/contrast (+-``jitter``) and gamma. 是否增强
        ignore_index: fill value for padded mask pixels. 掩码填充值
        jitter: brightness/contrast strength. 亮度/对比度扰动强度
        gamma: range of the random gamma. gamma 范围
        rotate: also rotate by an angle drawn uniformly from ``[-rotate, rotate]`` degrees (0: off; needs
            ``augment``). With a ``crop_size`` the random crop is first taken :func:`rotation_margin` larger and the
            centre ``crop_size`` square is kept after the rotation, so no corner of the patch is empty; the image
            is interpolated bilinearly, the mask by nearest neighbour. 随机旋转角度范围（度）；先裁剪更大的窗口，
            旋转后取中心，使图块没有空角；图像双线性插值，掩码最近邻
        elastic: also deform by :class:`RandomElastic` with this ``sigma`` in pixels (0: off; needs ``augment``),
            after the rotation. With a ``crop_size`` the window is :func:`elastic_margin` larger on each side and
            the centre ``crop_size`` square is kept. 弹性形变的位移标准差（像素，0 为关闭）；同样先裁剪更大的窗口

    Returns (when called):
        ``image`` float32 ``(C, h, w)`` and ``target`` int64 ``(h, w)`` (or ``None`` when no target was given).

    >>> import numpy as np
    >>> t = SegmentationTransform(train=True, crop_size=32, mean=(0.5,), std=(0.25,))
    >>> img, tgt = t(np.zeros((20, 40, 1), np.uint8), np.ones((20, 40), np.int64))
    >>> tuple(img.shape), tuple(tgt.shape), sorted(tgt.unique().tolist())
    ((1, 32, 32), (32, 32), [1, 255])
    """

    def __init__(self, train: bool = False, crop_size: int | None = None, scale: float = 1.0,
                 mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.25,), augment: bool = True,
                 ignore_index: int = 255, jitter: float = 0.2, gamma: tuple[float, float] = (0.8, 1.25),
                 rotate: float = 0.0, elastic: float = 0.0) -> None:
        if not (0.0 < float(scale) <= 4.0):
            raise ConfigError(f"scale must be in (0, 4], got {scale!r}.")
        if crop_size is not None and int(crop_size) < 1:
            raise ConfigError(f"crop_size must be a positive number of pixels or None, got {crop_size!r}.")
        rotate, elastic = check_warp("rotate", rotate), check_warp("elastic", elastic)
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ConfigError(f"mean {tuple(mean)} and std {tuple(std)} must have the same length and std > 0.")
        self.train = bool(train)
        self.crop_size = None if crop_size is None else int(crop_size)
        self.scale = float(scale)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augment = bool(augment)
        self.ignore_index = int(ignore_index)
        self.jitter = float(jitter)
        self.gamma = gamma
        self.rotate = float(rotate) if (self.train and self.augment) else 0.0
        self.elastic = float(elastic) if (self.train and self.augment) else 0.0
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: self.ignore_index}
        # each warp needs a larger window, cut first and trimmed after it 每种形变先裁剪更大的窗口，形变后再取中心
        bent = self.crop_size + 2 * elastic_margin(self.elastic) if self.crop_size else None
        window = rotation_margin(bent) if (bent and self.rotate) else bent
        self._crop = (v2.RandomCrop(window, pad_if_needed=True, fill=fill)
                      if (self.train and self.crop_size) else None)
        warps = []
        if self.rotate:                                   # 旋转较大的窗口，再取中心
            warps += [v2.RandomRotation(self.rotate, interpolation=v2.InterpolationMode.BILINEAR, fill=fill)]
            warps += [v2.CenterCrop(bent)] if bent else []
        if self.elastic:                                  # 弹性形变，再取中心的 crop_size 方块
            warps += [RandomElastic(self.elastic, fill=fill)]
            warps += [v2.CenterCrop(self.crop_size)] if bent else []
        self._warp = v2.Compose(warps) if warps else None
        self._geometry = (v2.Compose([v2.RandomHorizontalFlip(0.5), v2.RandomVerticalFlip(0.5), RandomRot90()])
                          if (self.train and self.augment) else None)
        self._colour = (v2.Compose([v2.ColorJitter(brightness=self.jitter, contrast=self.jitter), RandomGamma(gamma)])
                        if (self.train and self.augment and self.jitter > 0) else None)

    def __repr__(self) -> str:
        return (f"SegmentationTransform(train={self.train}, crop_size={self.crop_size}, scale={self.scale}, "
                f"augment={self.augment}, rotate={self.rotate}, "
                + (f"elastic={self.elastic}, " if self.elastic else "")
                + f"mean={self.mean}, std={self.std}, "
                f"ignore_index={self.ignore_index})")

    def __call__(self, image: np.ndarray, target: np.ndarray | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # 单张图像的小算子在多线程下同步开销大于计算本身（在繁忙的 2 核机器上慢 10 倍以上），
        # 因此变换期间临时使用单线程，结束后恢复
        threads = torch.get_num_threads()
        if threads > 1:
            torch.set_num_threads(1)
        try:
            return self._apply(image, target)
        finally:
            if threads > 1:
                torch.set_num_threads(threads)

    def _apply(self, image: np.ndarray, target: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if image.ndim == 2:
            image = image[:, :, None]
        channels = image.shape[2]
        if channels != len(self.mean):
            raise DataError(
                f"Image has {channels} channel(s) but the normalisation has {len(self.mean)} (mean={self.mean}); "
                "pass in_channels / mean / std that match the data."
            )
        if not image.flags.writeable:  # 缓存的只读数组：先复制，避免 torch 警告
            image = image.copy()
        if isinstance(target, np.ndarray) and not target.flags.writeable:
            target = target.copy()                        # 缓存的只读数组：先复制
        img = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))  # (C, H, W) uint8
        tgt = None if target is None else tv_tensors.Mask(torch.as_tensor(target, dtype=torch.int64))  # (H, W)
        if self.scale != 1.0:
            size = list(scaled_size(img.shape[-2], img.shape[-1], self.scale))
            img = F.resize(img, size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
            if tgt is not None:
                tgt = F.resize(tgt, size, interpolation=v2.InterpolationMode.NEAREST)  # 掩码只能用最近邻
        for step in (self._crop, self._warp, self._geometry):
            if step is not None:
                if tgt is None:
                    img = step(img)
                else:
                    img, tgt = step(img, tgt)
        x = F.to_dtype(img, torch.float32, scale=True)  # (C, h, w) in [0, 1]
        if self._colour is not None:
            x = self._colour(x)  # 颜色扰动只作用于图像；在浮点上做比在 uint8 上快
        x = F.normalize(x, list(self.mean), list(self.std))
        out_img = x.as_subclass(torch.Tensor).contiguous()
        out_tgt = None if tgt is None else tgt.as_subclass(torch.Tensor).contiguous()
        return out_img, out_tgt


def compute_mean_std(source, max_items: int | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, in [0, 1] units.
    计算 uint8 图像的逐通道均值与标准差（[0, 1] 单位）

    Args:
        source: a data set (uses ``raw(i)[0]``, all pixels) or an iterable of ``(H, W, C)`` / ``(H, W)`` arrays.
            数据集或图像数组的可迭代对象
        max_items: use at most this many images, evenly spaced. 最多使用的图像数

    Returns:
        ``(mean, std)``, two tuples with one float per channel.

    >>> import numpy as np
    >>> m, s = compute_mean_std([np.full((2, 2, 1), 255, np.uint8), np.zeros((2, 2, 1), np.uint8)])
    >>> m, s
    ((0.5,), (0.5,))
    """
    if hasattr(source, "raw") and hasattr(source, "__len__"):
        idx = range(len(source))
        if max_items is not None and len(source) > max_items:
            idx = np.linspace(0, len(source) - 1, max_items).round().astype(int).tolist()
        images: Iterable = (source.raw(i)[0] for i in idx)
    else:
        images = list(source)
        if max_items is not None and len(images) > max_items:
            images = [images[i] for i in np.linspace(0, len(images) - 1, max_items).round().astype(int)]
    total, sq, count = None, None, 0
    for im in images:
        a = np.asarray(im)
        if a.ndim == 2:
            a = a[:, :, None]
        a = a.reshape(-1, a.shape[-1]).astype(np.float64) / 255.0  # (H*W, C)
        if total is None:
            total, sq = a.sum(0), (a * a).sum(0)
        else:
            if a.shape[1] != total.shape[0]:
                raise DataError(f"compute_mean_std: images mix {total.shape[0]} and {a.shape[1]} channels.")
            total += a.sum(0)
            sq += (a * a).sum(0)
        count += a.shape[0]
    if total is None:
        raise DataError("compute_mean_std got no images.")
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean**2, 1e-12))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def preprocess_image(image: np.ndarray, mean: Sequence[float], std: Sequence[float], scale: float = 1.0,
                     in_channels: int | None = None) -> torch.Tensor:
    """Prepare one uint8 image for the model, exactly as the evaluation pipeline does.
    按评估流程预处理一张 uint8 图像，供预测使用

    Args:
        image: ``np.uint8`` ``(H, W, C)`` or ``(H, W)``. 输入图像
        mean, std: the training data's normalisation (stored in the checkpoint). 训练数据的归一化参数
        scale: resize factor used in training. 训练时的缩放比例
        in_channels: if given, a gray image is repeated to 3 channels when 3 are expected (RGB -> 1 raises).
            若给出，则在需要 3 通道时把灰度图复制为 RGB

    Returns:
        float32 tensor ``(1, C, h, w)`` with ``(h, w) = scaled_size(H, W, scale)``.

    >>> import numpy as np
    >>> tuple(preprocess_image(np.zeros((10, 8, 3), np.uint8), (0.5,) * 3, (0.2,) * 3, scale=0.5).shape)
    (1, 3, 5, 4)
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise DataError(f"preprocess_image expects a uint8 image, got dtype {arr.dtype}; read it with read_image().")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr = match_channels(arr, in_channels, "<input image>")
    x, _ = SegmentationTransform(train=False, scale=scale, mean=mean, std=std)(arr, None)
    return x.unsqueeze(0)  # (1, C, h, w)
