"""Segmentation losses: cross-entropy (or BCE) plus soft Dice, with ignored pixels and fp32 math.
分割损失：交叉熵（或 BCE）加软 Dice，支持忽略像素，始终以 fp32 计算

Cross-entropy scores every pixel on its own; it is smooth and well-behaved early in training. Dice scores the
overlap of whole regions, so a thin, rare foreground (retinal vessels, cell membranes) weighs as much as the large
background. The sum of the two is the usual recipe for U-Net training.
交叉熵逐像素计算，训练早期稳定；Dice 衡量整个区域的重叠，稀少细小的前景（血管、细胞膜）与大面积背景同等重要；
两者之和是训练 U-Net 的常用做法

Conventions shared by everything here (see ``docs/ARCHITECTURE.md``):
本模块的约定

* ``logits``: raw scores straight from the model, **not** probabilities. ``"multiclass"``: ``(B, K, H, W)``,
  softmax over ``K >= 2`` channels. ``"binary"``: ``(B, 1, H, W)``, a sigmoid per pixel.
  logits 是模型的原始输出而不是概率
* ``target``: ``(B, H, W)`` integer class indices ``0..K-1`` (binary: ``{0, 1}``); pixels equal to
  ``ignore_index`` (default 255) count nowhere, neither in the CE/BCE mean nor in any Dice sum.
  target 为整数类别索引；等于 ignore_index 的像素完全不参与计算
* The math runs in float32 with autocast switched off, even when the model ran under bf16/fp16 autocast.
  即使模型在 bf16/fp16 自动混合精度下运行，损失也以 float32 计算
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, DataError

MODES = ("multiclass", "binary")


def _fp32(logits: torch.Tensor) -> torch.Tensor:
    return logits.float()


def check_inputs(logits: torch.Tensor, target: torch.Tensor, mode: str, ignore_index: int = 255,
                 check_values: bool = True) -> None:
    """Validate logits/target shapes, dtypes and label values; raise a clear error otherwise.
    检查 logits 与 target 的形状、类型和取值，出错时给出清晰的提示

    Raises:
        ConfigError: unknown ``mode``, or the logits' channel count does not fit the mode.
        DataError: target not ``(B, H, W)`` integer, sizes differ, or labels outside ``0..K-1`` that are not
            ``ignore_index``.
    """
    if mode not in MODES:
        raise ConfigError(f"Unknown loss mode {mode!r}; choose one of: {', '.join(MODES)}.")
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise DataError(f"logits must be a (B, C, H, W) tensor, got {shape}.")
    channels = logits.shape[1]
    if mode == "binary" and channels != 1:
        raise ConfigError(
            f"mode='binary' expects logits with 1 channel (sigmoid), got {channels}. Build the model with "
            f"n_classes=1, or use mode='multiclass' for {channels} output channels."
        )
    if mode == "multiclass" and channels < 2:
        raise ConfigError(
            "mode='multiclass' expects logits with K >= 2 channels (softmax), got 1. Use mode='binary' for a "
            "single-channel model, or build the model with n_classes=2."
        )
    if not isinstance(target, torch.Tensor):
        raise DataError(f"target must be a tensor of class indices, got {type(target).__name__}.")
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise DataError(
            f"target must hold integer class indices (torch.long), got dtype {target.dtype}. Convert masks with "
            f"unet_course.data.masks.values_to_indices (or target.long()) instead of passing 0/1 floats."
        )
    if target.ndim != 3 or target.shape[0] != logits.shape[0] or target.shape[1:] != logits.shape[2:]:
        raise DataError(
            f"target must be (B, H, W) = {(logits.shape[0], *logits.shape[2:])} to match logits "
            f"{tuple(logits.shape)}, got {tuple(target.shape)}. Drop any channel axis: target[:, 0]."
        )
    if check_values:
        n_classes = 2 if mode == "binary" else channels
        bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
        if bool(bad.any()):
            values = torch.unique(target[bad])[:8].tolist()
            raise DataError(
                f"target holds label(s) {values} outside 0..{n_classes - 1} that are not ignore_index="
                f"{ignore_index}. Map raw mask values to class indices with mask_values (e.g. 255 -> 1), or "
                f"check n_classes / mode."
            )


def dice_coefficient(probs: torch.Tensor, onehot: torch.Tensor, valid: torch.Tensor | None = None,
                     smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice per channel, summed over the batch and the pixels.
    按通道计算软 Dice（在整个批量和全部像素上求和）

    ``dice_c = (2 Σ p·t + smooth) / (Σ p + Σ t + smooth)`` over the valid pixels of all images in the batch.
    Summing over the whole batch (not per image) keeps images without foreground from producing 0/0.

    Empty-mask rule: a channel with no truth and no predicted mass scores 1.0 (nothing to find and nothing
    falsely found). With ``smooth > 0`` this follows from the formula; with ``smooth = 0`` it is enforced.
    空掩码规则：某通道既无真值又无预测时得 1.0；smooth > 0 时由公式自然得到，smooth = 0 时强制设定

    Args:
        probs: ``(B, C, H, W)`` probabilities in ``[0, 1]`` (after softmax/sigmoid, *not* logits). 概率
        onehot: ``(B, C, H, W)`` 0/1 truth, same shape as ``probs``. 独热真值
        valid: optional ``(B, H, W)`` bool mask; pixels where it is False are removed from every sum.
            可选的有效像素掩码，False 的像素不参与任何求和
        smooth: added to numerator and denominator (``>= 0``). 平滑项

    Returns:
        ``(C,)`` Dice per channel, float32 when the inputs are.

    >>> p = torch.tensor([[[[0.9, 0.1], [0.8, 0.3]]]])    # (1, 1, 2, 2)
    >>> t = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    >>> dice_coefficient(p, t, smooth=0.0)                 # 2*1.7 / (2.1 + 2)
    tensor([0.8293])
    """
    if probs.shape != onehot.shape:
        raise DataError(f"probs {tuple(probs.shape)} and onehot {tuple(onehot.shape)} must have the same shape.")
    if smooth < 0:
        raise ConfigError(f"smooth must be >= 0, got {smooth!r}.")
    onehot = onehot.to(probs.dtype)
    if valid is not None:
        weight = valid.unsqueeze(1).to(probs.dtype)       # (B, 1, H, W)
        probs, onehot = probs * weight, onehot * weight
    dims = (0, *range(2, probs.ndim))                     # 对批量和空间维求和
    intersection = (probs * onehot).sum(dims)             # (C,)
    denominator = probs.sum(dims) + onehot.sum(dims)      # (C,)
    dice = (2 * intersection + smooth) / (denominator + smooth).clamp_min(torch.finfo(probs.dtype).tiny)
    return torch.where(denominator + smooth > 0, dice, torch.ones_like(dice))  # 0/0 -> 1（空掩码规则）


def _dice_terms(logits: torch.Tensor, target: torch.Tensor, mode: str, ignore_index: int,
                include_background: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Probabilities, one-hot truth and valid mask for the Dice classes. 计算 Dice 所需的概率、独热真值与有效掩码"""
    valid = target != ignore_index                        # (B, H, W)
    labels = torch.where(valid, target, torch.zeros_like(target))  # 忽略像素暂记为 0，稍后由 valid 去掉
    if mode == "binary":
        fg = torch.sigmoid(logits)                        # (B, 1, H, W) 前景概率
        truth = labels.unsqueeze(1).to(fg.dtype)          # (B, 1, H, W)
        if include_background:
            return torch.cat([1 - fg, fg], 1), torch.cat([1 - truth, truth], 1), valid
        return fg, truth, valid
    probs = torch.softmax(logits, dim=1)                  # (B, K, H, W)
    onehot = F.one_hot(labels, probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)  # (B, K, H, W)
    if not include_background:
        probs, onehot = probs[:, 1:], onehot[:, 1:]       # 去掉背景类 0
    return probs, onehot, valid


def dice_loss(logits: torch.Tensor, target: torch.Tensor, mode: str = "multiclass", ignore_index: int = 255,
              include_background: bool = False, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss, ``1 - mean Dice`` over the scored classes, from logits.
    软 Dice 损失：1 减去各类 Dice 的平均值（输入为 logits）

    Shapes:
        ``"multiclass"``: logits ``(B, K, H, W)``, target ``(B, H, W)`` long in ``0..K-1`` or ``ignore_index``.
        ``"binary"``: logits ``(B, 1, H, W)``, target ``(B, H, W)`` long in ``{0, 1}`` or ``ignore_index``.

    Pass **logits**: softmax (multiclass) or sigmoid (binary) is applied here. Passing probabilities would apply it
    twice and silently flatten the loss.
    请传入 logits，本函数内部做 softmax / sigmoid；传入概率会被重复归一化

    Pixels equal to ``ignore_index`` are removed from numerator and denominator. Empty-mask rule: see
    :func:`dice_coefficient` (a class absent from truth and prediction scores Dice 1.0, loss 0 for it). If
    every pixel is ignored the loss is 0.
    忽略像素不参与分子分母；空掩码规则见 dice_coefficient；全部像素被忽略时损失为 0

    Args:
        logits: model output, see Shapes. 模型输出
        target: class indices, see Shapes. 类别索引
        mode: ``"multiclass"`` or ``"binary"``. 模式
        ignore_index: target value never scored. 忽略的标签值
        include_background: also score class 0 (binary: the background ``1 - p``). Default False: Dice on the
            foreground classes only, which is what the metrics report. 是否计入背景类
        smooth: Laplace smoothing added to numerator and denominator, ``>= 0``. 平滑项

    Returns:
        A float32 scalar in ``[0, 1]``.

    Raises:
        ConfigError: unknown mode, or the channel count does not fit the mode.
        DataError: target with the wrong shape/dtype or labels out of range.

    >>> logits = torch.tensor([[[[4.0, -4.0], [4.0, -4.0]]]])   # (1, 1, 2, 2): confident left column
    >>> target = torch.tensor([[[1, 0], [1, 255]]])             # bottom-right pixel ignored
    >>> round(dice_loss(logits, target, mode="binary", smooth=0.0).item(), 4)
    0.0136
    """
    check_inputs(logits, target, mode, ignore_index)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        probs, onehot, valid = _dice_terms(_fp32(logits), target, mode, ignore_index, include_background)
        return 1.0 - dice_coefficient(probs, onehot, valid, smooth).mean()


class SegmentationLoss(nn.Module):
    """Weighted sum of cross-entropy (multiclass) or BCE (binary) and soft Dice, ignoring ``ignore_index``.
    交叉熵（多分类）或 BCE（二分类）与软 Dice 的加权和，忽略 ignore_index 像素

    ``loss = ce_weight * CE + dice_weight * Dice loss``.

    Shapes:
        ``"multiclass"``: logits ``(B, K, H, W)`` with ``K >= 2``; softmax + cross-entropy.
        ``"binary"``: logits ``(B, 1, H, W)``; sigmoid + binary cross-entropy. Only for 2-class tasks.
        target ``(B, H, W)`` long class indices, ``ignore_index`` where a pixel is not scored.

    Pass **logits**, not probabilities. The loss is computed in float32 with autocast off, so it returns a float32
    scalar even inside a bf16/fp16 autocast region.
    输入 logits；损失在关闭 autocast 的 float32 下计算，因此在混合精度区域内也返回 float32

    Ignored pixels: CE uses PyTorch's ``ignore_index``; for BCE the per-pixel loss is masked by hand; Dice drops
    them from every sum. When a batch has no valid pixel at all the CE/BCE term is 0 (PyTorch would give NaN).
    忽略像素：CE 使用 ignore_index；BCE 手动屏蔽；Dice 从求和中去掉；批量中无有效像素时该项为 0

    Args:
        mode: ``"multiclass"`` or ``"binary"``. 模式
        ce_weight: weight of the CE/BCE term, ``>= 0``. 交叉熵项权重
        dice_weight: weight of the Dice term, ``>= 0``. Dice 项权重
        ignore_index: target value never scored. 忽略的标签值
        class_weights: optional per-class weights for the CE/BCE term only: ``K`` values (multiclass) or 2
            values ``[background, foreground]`` (binary). Weighted means divide by the total weight of the
            valid pixels, as ``F.cross_entropy`` does. 可选的类别权重（仅用于交叉熵项）
        include_background: also score the background class in Dice. Dice 是否计入背景
        smooth: Dice smoothing. Dice 平滑项
        check_values: check label ranges on every call (one device sync; switch off in tight loops once the data
            is known to be clean). 每次调用时检查标签取值

    Raises:
        ConfigError: bad mode, negative weights, both weights 0, wrong number of class weights.

    >>> loss_fn = SegmentationLoss(mode="multiclass")
    >>> logits = torch.zeros(2, 3, 4, 4, requires_grad=True)   # uniform softmax
    >>> target = torch.randint(0, 3, (2, 4, 4))
    >>> loss = loss_fn(logits, target)
    >>> loss.dtype, round(loss_fn.components(logits, target)["ce"].item(), 4)   # CE = log(3)
    (torch.float32, 1.0986)
    """

    def __init__(self, mode: str = "multiclass", ce_weight: float = 1.0, dice_weight: float = 1.0,
                 ignore_index: int = 255, class_weights: Sequence[float] | torch.Tensor | None = None,
                 include_background: bool = False, smooth: float = 1.0, check_values: bool = True) -> None:
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"Unknown loss mode {mode!r}; choose one of: {', '.join(MODES)}.")
        if ce_weight < 0 or dice_weight < 0 or (ce_weight == 0 and dice_weight == 0):
            raise ConfigError(
                f"ce_weight and dice_weight must be >= 0 and not both 0, got {ce_weight!r} and {dice_weight!r}."
            )
        self.mode, self.ce_weight, self.dice_weight = mode, float(ce_weight), float(dice_weight)
        self.ignore_index, self.include_background = int(ignore_index), bool(include_background)
        self.smooth, self.check_values = float(smooth), bool(check_values)
        if class_weights is not None:
            weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
            if (weights < 0).any() or not torch.isfinite(weights).all() or weights.sum() <= 0:
                raise ConfigError(f"class_weights must be finite, >= 0 and not all 0, got {weights.tolist()}.")
            if mode == "binary" and weights.numel() != 2:
                raise ConfigError(
                    f"mode='binary' takes 2 class_weights [background, foreground], got {weights.numel()}."
                )
            self.register_buffer("class_weights", weights)
        else:
            self.class_weights = None

    def _ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.ignore_index               # (B, H, W)
        if not bool(valid.any()):
            return logits.sum() * 0.0                     # 没有有效像素：返回 0 并保留计算图
        if self.mode == "multiclass":
            return F.cross_entropy(logits, target, weight=self.class_weights, ignore_index=self.ignore_index)
        labels = torch.where(valid, target, torch.zeros_like(target)).to(logits.dtype)  # (B, H, W)
        per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], labels, reduction="none")  # (B, H, W)
        weight = valid.to(logits.dtype)
        if self.class_weights is not None:
            weight = weight * self.class_weights.to(logits.device)[labels.long()]  # 按类别加权
        return (per_pixel * weight).sum() / weight.sum().clamp_min(torch.finfo(logits.dtype).tiny)

    def components(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The terms of the loss: ``{"ce", "dice", "loss"}`` (float32 scalars; "ce" is BCE in binary mode).
        返回损失的各项：ce、dice 与总损失
        """
        check_inputs(logits, target, self.mode, self.ignore_index, check_values=self.check_values)
        if self.class_weights is not None and self.mode == "multiclass" and \
                self.class_weights.numel() != logits.shape[1]:
            raise ConfigError(
                f"class_weights has {self.class_weights.numel()} values but the logits have {logits.shape[1]} "
                f"classes; give one weight per class."
            )
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = _fp32(logits)                        # (B, C, H, W) float32
            zero = logits.new_zeros(())
            ce = self._ce(logits, target) if self.ce_weight > 0 else zero
            if self.dice_weight > 0:
                probs, onehot, valid = _dice_terms(logits, target, self.mode, self.ignore_index,
                                                   self.include_background)
                dice = 1.0 - dice_coefficient(probs, onehot, valid, self.smooth).mean()
            else:
                dice = zero
            return {"ce": ce, "dice": dice, "loss": self.ce_weight * ce + self.dice_weight * dice}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Combined loss, a float32 scalar. 组合损失（float32 标量）"""
        return self.components(logits, target)["loss"]

    def extra_repr(self) -> str:
        return (f"mode={self.mode!r}, ce_weight={self.ce_weight}, dice_weight={self.dice_weight}, "
                f"ignore_index={self.ignore_index}, include_background={self.include_background}")
