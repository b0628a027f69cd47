"""The named building blocks of U-Net: ``DoubleConv``, ``Down``, ``UpConv2x2``, ``Up``, ``OutConv`` and ``PadToMultiple``.
U-Net 的组成模块：双卷积、下采样、上采样、输出卷积与填充

Each block knows how big its output will be: ``output_hw(h, w)`` applies the size formulas of
:mod:`unet_course.model.describe`, so :func:`~unet_course.model.describe.describe` can check them against a real
forward pass.
每个模块都能用尺寸公式预测自己的输出大小（output_hw），describe 会用真实前向结果核对
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .describe import conv_output_size, transposed_conv_output_size


class DoubleConv(nn.Module):
    """Two 3×3 convolutions, each followed by batch normalisation and ReLU.
    双卷积：两次「3×3 卷积 → 批归一化 → ReLU」

    The paper's basic unit is "two 3×3 convolutions (unpadded), each followed by a ReLU".
    论文的基本单元是两次不加填充的 3×3 卷积，每次后接 ReLU

    Departures from the paper:

    * ``padding=1``, so the *特征图*（feature map）keeps its size and no skip connection has to be cropped.
      卷积使用 padding=1，特征图尺寸不变，跳跃连接无需裁剪
    * Batch normalisation after each convolution (not in the 2015 paper; it makes training from scratch with a
      large learning rate stable). The convolution then has ``bias=False``: BN's shift would cancel any bias.
      每次卷积后加批归一化（2015 年论文中没有），卷积因此不用偏置，BN 的平移项会抵消它
    * ``ReLU(inplace=True)`` overwrites the BN output instead of allocating a new tensor (saves memory; BN's
      backward needs its input, not its output).
      原地 ReLU 节省内存；BN 的反向传播只需要它的输入

    Args:
        in_channels: channels of the input. 输入通道数
        out_channels: channels of the output. 输出通道数
        mid_channels: channels after the first convolution; defaults to ``out_channels``
            (the bilinear decoder uses fewer). 第一次卷积后的通道数，默认等于输出通道数
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None) -> None:
        super().__init__()
        mid_channels = mid_channels or out_channels
        self.conv1 = nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W)
        x = self.relu1(self.bn1(self.conv1(x)))           # (B, C_mid, H, W)
        return self.relu2(self.bn2(self.conv2(x)))        # (B, C_out, H, W)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        """Two 3×3 convolutions with padding 1: the size is kept. 两次 3×3、填充 1 的卷积：尺寸不变"""
        def side(n: int) -> int:
            return conv_output_size(conv_output_size(n, kernel=3, padding=1), kernel=3, padding=1)
        return side(h), side(w)


class Down(nn.Module):
    """Halve the spatial size, then widen the features.
    下采样：先用 2×2 最大池化把尺寸减半，再用双卷积把通道数加倍

    Departure from the paper: convolutions use padding=1, so H and W only change at the pooling
    (the paper loses 4 pixels per level to its unpadded convolutions).
    与论文不同：卷积使用 padding=1，尺寸只在池化时改变（论文每层因无填充卷积损失 4 个像素）
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        x = self.pool(x)                                  # (B, C, H/2, W/2)
        return self.conv(x)                               # (B, 2C, H/2, W/2)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        """2×2 max pooling with stride 2, then a size-keeping DoubleConv. 2×2 池化后接保持尺寸的双卷积"""
        return self.conv.output_hw(conv_output_size(h, kernel=2, stride=2), conv_output_size(w, kernel=2, stride=2))


class UpConv2x2(nn.ConvTranspose2d):
    """The paper's "up-conv 2×2": a 2×2 transposed convolution with stride 2, computed as **one matrix product**.
    论文中的 “2×2 上卷积”（步幅 2 的 2×2 转置卷积），用一次矩阵乘法计算

    With kernel = stride = 2 the four output pixels ``(2i+di, 2j+dj)`` of input pixel ``(i, j)`` depend on that
    pixel alone: ``y[o, 2i+di, 2j+dj] = b[o] + Σ_c x[c, i, j] · W[c, o, di, dj]``. Every pixel is therefore one row
    times a ``(C, 4·O)`` matrix, and the whole layer is one GEMM followed by a reshuffle of the four sub-pixels.
    Same parameters, same ``state_dict`` and the same values as :class:`torch.nn.ConvTranspose2d` (the tests check
    it). On the CPU the GEMM is faster than the library's transposed-convolution kernel, forward and backward
    (the bench lever ``upconv_native`` measures the whole train step with the library kernel instead); other
    devices keep the library kernel. ``matmul = False`` switches the CPU path off.
    k = s = 2 时，输入像素 (i, j) 的四个输出子像素只依赖它自己：每个像素是一行乘以 (C, 4·O) 的矩阵，
    整层就是一次矩阵乘法加一次子像素重排；参数、state_dict 与数值都与 ConvTranspose2d 相同，CPU 上更快
    （基准测试的 upconv_native 手段对比库的卷积核）；matmul = False 时使用库的卷积核

    Args:
        in_channels: ``C``, channels of the input. 输入通道数
        out_channels: ``O``, channels of the output. 输出通道数
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=2, stride=2)
        self.matmul = True

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:  # (B, C, h, w)
        if not self.matmul or x.device.type != "cpu" or x.dim() != 4 or output_size is not None:
            return super().forward(x, output_size)                    # 其他设备：沿用库的卷积核
        b, c, h, w = x.shape
        o = self.out_channels
        rows = x.permute(0, 2, 3, 1).reshape(b * h * w, c)            # (B·h·w, C)，NHWC 输入时是视图、不复制
        weight = self.weight.permute(0, 2, 3, 1).reshape(c, 4 * o)   # (C, 2, 2, O) -> (C, 4·O)，列序 (di, dj, o)
        y = torch.addmm(self.bias.repeat(4), rows, weight)           # (B·h·w, 4·O) 一次矩阵乘法（autocast 下为 bf16）
        y = y.view(b, h, w, 2, 2, o).permute(0, 1, 3, 2, 4, 5)       # (B, h, di, w, dj, O) 子像素就位
        y = y.reshape(b, 2 * h, 2 * w, o).permute(0, 3, 1, 2)        # (B, O, 2h, 2w)，NHWC 内存布局
        if not x.is_contiguous(memory_format=torch.channels_last):
            y = y.contiguous()                                        # NCHW 输入得到 NCHW 输出
        return y


class Up(nn.Module):
    """Double the spatial size, join the *跳跃连接*（skip connection）, then mix with a DoubleConv.
    上采样：尺寸加倍，与跳跃连接的特征图拼接，再做双卷积

    Two ways to up-sample:

    * ``bilinear=False`` (the paper's "up-conv 2×2"): a 2×2 *转置卷积*（transposed convolution）with stride 2
      that also halves the channels, ``C -> C/2``. It has weights of its own.
      转置卷积：2×2、步幅 2，同时把通道数减半，有可学习参数
    * ``bilinear=True``: fixed bilinear interpolation that keeps the channels; the DoubleConv after it does the
      narrowing. With this choice :class:`~unet_course.model.unet.UNet` halves the deepest width, as in the widely
      used PyTorch re-implementations (17.3 M instead of 31.0 M parameters at base 64).
      双线性插值：无参数、通道数不变，由随后的双卷积减少通道；此时 UNet 把最深层宽度减半

    Departures from the paper: the skip is concatenated as is (no crop: padding=1 keeps sizes equal), and the
    skip comes first in the concatenation. If the sizes still differ (odd inputs when ``Up`` is used on its own)
    the up-sampled map is zero-padded to the skip's size.
    与论文不同：跳跃连接不裁剪直接拼接；若单独使用时尺寸不一致，则对上采样结果补零

    Args:
        in_channels: channels of the deeper feature map. 较深层特征图的通道数
        skip_channels: channels of the skip connection. 跳跃连接的通道数
        out_channels: channels of the output. 输出通道数
        bilinear: bilinear interpolation instead of a transposed convolution. 是否使用双线性插值
        mid_channels: channels inside the DoubleConv (default ``out_channels``). 双卷积中间通道数
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, bilinear: bool = False,
                 mid_channels: int | None = None) -> None:
        super().__init__()
        self.bilinear = bilinear
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            up_channels = in_channels                                  # 插值不改变通道数
        else:
            self.up = UpConv2x2(in_channels, in_channels // 2)
            up_channels = in_channels // 2                             # 转置卷积把通道数减半
        self.conv = DoubleConv(skip_channels + up_channels, out_channels, mid_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:  # x (B, C, h, w), skip (B, S, 2h, 2w)
        x = self.up(x)                                    # (B, C or C/2, 2h, 2w)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dh or dw:
            # 单独使用且尺寸为奇数时，把上采样结果补零到跳跃连接的大小
            x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
        x = torch.cat([skip, x], dim=1)                   # (B, S + C', 2h, 2w)
        return self.conv(x)                               # (B, C_out, 2h, 2w)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        """Bilinear ×2, or the transposed-convolution formula with k=2, s=2: both give 2h × 2w.
        双线性放大两倍，或 k=2、s=2 的转置卷积公式：都得到 2h × 2w
        """
        if self.bilinear:
            return 2 * h, 2 * w
        return (transposed_conv_output_size(h, kernel=2, stride=2),
                transposed_conv_output_size(w, kernel=2, stride=2))


class OutConv(nn.Module):
    """A 1×1 convolution from the last feature map to one score (logit) per output channel.
    1×1 卷积：把最后的特征图映射为每个输出通道的分数（logits）

    As in the paper. The output is raw logits: softmax / sigmoid live in the loss and in
    :func:`~unet_course.metrics.logits_to_labels`.
    与论文相同；输出的是未归一化的 logits，softmax / sigmoid 在损失和指标中完成
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        return self.conv(x)                               # (B, n_classes, H, W)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        return conv_output_size(h, kernel=1), conv_output_size(w, kernel=1)


class PadToMultiple(nn.Module):
    """Mirror-pad H and W up to a multiple of ``multiple`` so that every pooling divides evenly.
    镜像填充：把 H、W 补到 multiple 的整数倍，使每次池化都能整除

    With ``depth`` poolings the input side must be a multiple of ``2**depth``; otherwise a 2×2 pooling drops a row
    and the decoder cannot line up with the skip connections. The padding is split between the two sides
    (top/bottom, left/right) and :class:`~unet_course.model.unet.UNet` crops the logits back.
    有 depth 次池化时边长须为 2**depth 的倍数；填充平均分到两侧，UNet 最后把 logits 裁剪回原尺寸

    Why reflect and not zeros: the paper extrapolates missing context at the border "by mirroring the input
    image" (overlap-tile). Mirroring keeps the image statistics at the border, while zeros draw an artificial
    dark frame that the network would see as an edge. When the input is too small to mirror (a pad as large as
    the side) we fall back to replicating the border pixels.
    为什么用镜像而不是补零：论文在边界处同样用镜像补全上下文（重叠切片）；补零会造成一条人为的暗边。
    输入太小无法镜像时退回到复制边缘像素

    Args:
        multiple: the side lengths after padding are multiples of this. 填充后边长为它的倍数
    """

    def __init__(self, multiple: int) -> None:
        super().__init__()
        self.multiple = multiple

    def pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` padding for an ``h × w`` input. 返回四个方向的填充量"""
        ph, pw = -h % self.multiple, -w % self.multiple
        return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        pads = self.pads(*x.shape[-2:])
        if not any(pads):
            return x                                      # 已经是整数倍：不复制
        mode = "reflect" if max(pads) < min(x.shape[-2:]) else "replicate"
        out = F.pad(x, pads, mode=mode)                   # (B, C, H', W')，H'、W' 为 multiple 的倍数
        if x.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)  # 保持 NHWC 内存格式
        return out

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        left, right, top, bottom = self.pads(h, w)
        return h + top + bottom, w + left + right

    def extra_repr(self) -> str:
        return f"multiple={self.multiple}"
