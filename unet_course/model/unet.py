"""U-Net: a contracting path that captures context and an expanding path that localises it.
U-Net：收缩路径获取上下文，扩张路径负责精确定位

Ronneberger, Fischer and Brox, *U-Net: Convolutional Networks for Biomedical Image Segmentation*, MICCAI 2015,
`arXiv:1505.04597 <https://arxiv.org/abs/1505.04597>`_.

The story in one picture: the encoder (``inc`` and ``downs``) halves the *特征图*（feature map）and doubles the
channels ``depth`` times, 64 → 128 → 256 → 512 → 1024 at the paper's width, so each pixel of the deepest map sees a
large *感受野*（receptive field）. The decoder (``ups``) walks back up. At each level it *上采样*（upsamples）, then
concatenates the encoder's map of the same size through a *跳跃连接*（skip connection）. Two 3×3 convolutions then
mix the coarse "what" with the fine "where". A final 1×1 convolution (``outc``) gives one logit per output
channel and pixel.
编码器 depth 次把特征图尺寸减半、通道加倍，使最深层每个像素拥有很大的感受野；解码器逐层上采样，
与编码器同尺寸的特征图通过跳跃连接拼接，再用两次 3×3 卷积融合“是什么”与“在哪里”；最后的 1×1 卷积输出逐像素 logits

Departures from the paper, all standard in modern re-implementations:

* padded 3×3 convolutions, so output size = input size and skips need no cropping (the paper maps 572² → 388²);
  卷积加填充，输出与输入同尺寸，跳跃连接不需裁剪（论文中 572² → 388²）
* batch normalisation after each convolution; 每次卷积后加批归一化
* any H × W is accepted: the input is mirror-padded to a multiple of ``2**depth`` and the logits are cropped back;
  接受任意 H × W：先镜像填充到 2**depth 的倍数，再把 logits 裁剪回来
* ``n_classes`` output channels: ``K`` for softmax ("multiclass"), ``1`` for sigmoid ("binary"); the paper used
  2 channels and a softmax. 输出通道数可选：多分类用 K，二分类（sigmoid）用 1
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from .parts import DoubleConv, Down, OutConv, PadToMultiple, Up

#: Constructor arguments of :class:`UNet`, in order; ``UNet.config`` holds exactly these keys.
CONFIG_KEYS = ("in_channels", "n_classes", "base_channels", "depth", "bilinear", "gradient_checkpointing")


@contextlib.contextmanager
def frozen_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    """Undo any update to BatchNorm running statistics made inside the block.
    还原代码块中对 BatchNorm 运行统计量的任何更新

    Used as the *recompute* context of gradient checkpointing. The recomputed forward in training mode
    normalises with the batch statistics (so it reproduces the first forward exactly), but it would also move
    ``running_mean``/``running_var`` a second time and count the batch twice in ``num_batches_tracked``. We save
    the buffers on entry and copy them back on exit, so one training step updates them exactly once, as without
    checkpointing.
    用作梯度检查点“重算”阶段的上下文：重算时按批量统计量归一化，结果与第一次前向一致，
    但会再次更新运行均值/方差；这里进入时保存、退出时写回，保证每步只更新一次
    """
    saved = [(buf, buf.detach().clone()) for m in module.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
             for buf in (m.running_mean, m.running_var, m.num_batches_tracked) if buf is not None]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


class UNet(nn.Module):
    """U-Net with padded convolutions, batch norm and any input size.
    带填充卷积、批归一化、支持任意输入尺寸的 U-Net

    Departures from the paper: see the module docstring (padding=1, BN, mirror-pad-and-crop, configurable
    output channels). The widths are ``base_channels * 2**i`` for level ``i = 0..depth``. With
    ``bilinear=True`` the deepest width is halved and each decoder DoubleConv narrows to half its skip width
    (all but the last), which gives 17.3 M instead of 31.0 M parameters at base 64, depth 4.
    与论文的差异见模块说明；第 i 层宽度为 base_channels * 2**i；bilinear=True 时最深层宽度减半

    Args:
        in_channels: image channels (3 for RGB, 1 for grey). 输入图像通道数
        n_classes: number of OUTPUT channels: ``K`` for "multiclass" (softmax), ``1`` for "binary" (sigmoid).
            输出通道数：多分类为 K，二分类 sigmoid 模式为 1
        base_channels: width of the first level (64 in the paper). 第一层宽度（论文为 64）
        depth: number of down-sampling steps (4 in the paper); inputs are padded to a multiple of ``2**depth``.
            下采样次数（论文为 4）
        bilinear: bilinear up-sampling instead of 2×2 transposed convolutions. 用双线性插值代替转置卷积
        gradient_checkpointing: recompute each encoder/decoder block in the backward pass instead of storing its
            activations (less memory, about one more forward of compute). Only active in training mode with
            gradients enabled; BatchNorm running statistics are still updated once per step
            (see :func:`frozen_batchnorm_stats`).
            梯度检查点：反向时重算各模块以节省内存，仅在训练且启用梯度时生效；BN 统计量每步仍只更新一次

    Shapes:
        input ``(B, in_channels, H, W)`` float → output ``(B, n_classes, H, W)`` logits (same H, W).

    Raises:
        ConfigError: a non-positive size argument.

    >>> model = UNet(in_channels=1, n_classes=2, base_channels=8, depth=3)
    >>> model(torch.randn(2, 1, 37, 50)).shape
    torch.Size([2, 2, 37, 50])
    >>> model.config["base_channels"]
    8
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 2, base_channels: int = 64, depth: int = 4,
                 bilinear: bool = False, gradient_checkpointing: bool = False) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("n_classes", n_classes),
                            ("base_channels", base_channels), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"UNet {name} must be an integer >= 1, got {value!r}.")
        if bilinear and base_channels < 2:
            raise ConfigError("UNet(bilinear=True) halves the widths; use base_channels >= 2.")
        self.config: dict[str, Any] = {
            "in_channels": in_channels, "n_classes": n_classes, "base_channels": base_channels,
            "depth": depth, "bilinear": bool(bilinear), "gradient_checkpointing": bool(gradient_checkpointing),
        }
        self.in_channels, self.n_classes, self.depth = in_channels, n_classes, depth
        self.bilinear = bool(bilinear)
        self.gradient_checkpointing = bool(gradient_checkpointing)

        widths = [base_channels * 2**i for i in range(depth + 1)]  # 例如 [64, 128, 256, 512, 1024]
        factor = 2 if bilinear else 1                               # 双线性时最深层宽度减半
        self.pad = PadToMultiple(2**depth)
        self.inc = DoubleConv(in_channels, widths[0])               # (B, in, H, W) -> (B, 64, H, W)
        self.downs = nn.ModuleList(
            Down(widths[i], widths[i + 1] // (factor if i == depth - 1 else 1)) for i in range(depth)
        )
        ups = []
        for i in reversed(range(depth)):                            # 从最深层往回走：i = depth-1 … 0
            if bilinear:
                # 输入 = 上一层输出（宽度 widths[i]）；输出宽度减半，最后一层除外
                out = widths[i] // 2 if i > 0 else widths[0]
                ups.append(Up(widths[i], widths[i], out, bilinear=True, mid_channels=widths[i]))
            else:
                # 转置卷积：widths[i+1] -> widths[i]，拼接后 2*widths[i] -> widths[i]
                ups.append(Up(widths[i + 1], widths[i], widths[i]))
        self.ups = nn.ModuleList(ups)
        self.outc = OutConv(widths[0], n_classes)                   # (B, 64, H, W) -> (B, K, H, W)

    # ------------------------------------------------------------------
    def _block(self, block: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        """Run one block, through gradient checkpointing when it applies. 运行一个模块（按需使用梯度检查点）"""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *inputs, use_reentrant=False,
                              context_fn=lambda: (contextlib.nullcontext(), frozen_batchnorm_stats(block)))
        return block(*inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:    # (B, C_in, H, W)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f"UNet expects input (B, {self.in_channels}, H, W), got {tuple(x.shape)}. Match the model's "
                f"in_channels to the images (e.g. in_channels=1 for grey images) or convert the images."
            )
        h, w = x.shape[-2:]
        left, _, top, _ = self.pad.pads(h, w)
        x = self.pad(x)                                     # (B, C_in, H', W')，H'、W' 为 2**depth 的倍数
        x = self._block(self.inc, x)                        # (B, c0, H', W')
        skips = []
        for down in self.downs:
            skips.append(x)                                 # 保存给跳跃连接
            x = self._block(down, x)                        # (B, 2c, H/2, W/2)
        for up in self.ups:
            x = self._block(up, x, skips.pop())             # (B, c/2, 2H, 2W)
        logits = self.outc(x)                               # (B, n_classes, H', W')
        return logits[..., top:top + h, left:left + w]      # (B, n_classes, H, W)，裁回原尺寸

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())


def build_model(config: dict[str, Any]) -> UNet:
    """Rebuild a :class:`UNet` from its ``.config`` dict (e.g. the ``model_config`` of a checkpoint).
    根据 config 字典（例如检查点中的 model_config）重建 UNet

    Args:
        config: keys from ``UNet.config``; missing keys take the constructor defaults. 缺省键使用默认值

    Raises:
        ConfigError: an unknown key (typo) or a bad value.

    >>> build_model({"in_channels": 1, "n_classes": 1, "base_channels": 4, "depth": 2}).config["n_classes"]
    1
    """
    if not isinstance(config, dict):
        raise ConfigError(f"Model config must be a dict, got {type(config).__name__}.")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"Unknown model config key(s): {', '.join(unknown)}. Known keys: {', '.join(CONFIG_KEYS)}.")
    return UNet(**config)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside ``DistributedDataParallel`` / ``torch.compile`` wrappers (unchanged otherwise).
    取出被 DDP 或 torch.compile 包装的原始模块（未包装时原样返回）

    >>> net = nn.Linear(2, 2)
    >>> unwrap_model(net) is net
    True
    """
    while True:
        inner = getattr(model, "module", None)                  # DistributedDataParallel
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)           # torch.compile 的 OptimizedModule
        if not isinstance(inner, nn.Module):
            return model
        model = inner
