"""Look inside a U-Net: shape traces, parameter counts and the size formulas.
查看 U-Net 内部：形状追踪、参数量与尺寸公式

A convolution with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` maps a side of ``n`` pixels to

    out = floor((n + 2p - d(k - 1) - 1) / s) + 1

and a transposed convolution maps it to

    out = (n - 1)s - 2p + d(k - 1) + output_padding + 1

:func:`conv_output_size` and :func:`transposed_conv_output_size` write these down once. Every block in
:mod:`unet_course.model.parts` predicts its own output size with them (``block.output_hw``), and
:func:`describe` runs a real forward pass with hooks and checks the prediction against what PyTorch produced.
卷积与转置卷积的输出尺寸公式只写一次；每个模块用它们预测自己的输出尺寸，describe 用前向钩子记录真实形状并核对
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output side length of a convolution or pooling layer.
    卷积（或池化）层输出的边长

    Args:
        size: input side length ``n``. 输入边长
        kernel: kernel size ``k``. 卷积核大小
        stride: stride ``s``. 步幅
        padding: zero padding ``p`` added on each side. 每侧的填充
        dilation: dilation ``d``. 空洞率

    Returns:
        ``floor((n + 2p - d(k - 1) - 1) / s) + 1``.

    Raises:
        ConfigError: the kernel does not fit in the padded input (the result would be < 1).

    >>> conv_output_size(572, kernel=3)          # valid 3x3 conv of the paper: loses 2 pixels
    570
    >>> conv_output_size(572, kernel=3, padding=1)  # this package: size kept
    572
    >>> conv_output_size(568, kernel=2, stride=2)   # 2x2 max pooling
    284
    """
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise ConfigError(
            f"A {kernel}x{kernel} window (stride {stride}, padding {padding}, dilation {dilation}) does not fit "
            f"in a side of {size} pixels; use a larger input or a shallower model."
        )
    return out


def transposed_conv_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1
) -> int:
    """Output side length of a transposed convolution.
    转置卷积输出的边长

    Returns:
        ``(n - 1)s - 2p + d(k - 1) + output_padding + 1``.

    >>> transposed_conv_output_size(28, kernel=2, stride=2)   # the U-Net "up-conv 2x2" doubles the side
    56
    """
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (every element of every weight and bias).
    参数总数

    Args:
        model: any module. 任意模块
        trainable_only: count only parameters with ``requires_grad``. 只统计可训练参数

    >>> count_parameters(nn.Conv2d(3, 8, kernel_size=3, bias=False))
    216
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass
class ShapeRow:
    """One block of the trace. 追踪表中的一行（一个模块）"""

    name: str                      # qualified module name, e.g. "downs.0" 模块名
    kind: str                      # class name, e.g. "Down" 类名
    input_shapes: list[tuple[int, ...]]  # one shape per tensor argument (Up gets x and skip) 输入形状
    output_shape: tuple[int, ...]  # 输出形状
    params: int                    # parameters inside this block 该模块的参数量
    predicted_hw: tuple[int, int] | None = None  # (H, W) from the size formulas 公式预测的尺寸

    @property
    def formula_ok(self) -> bool | None:
        """True when the size formulas predicted the real output (None if the block has no formula)."""
        if self.predicted_hw is None:
            return None
        return tuple(self.output_shape[-2:]) == tuple(self.predicted_hw)


@dataclass
class ShapeTrace:
    """Rows of a shape trace plus totals; ``str(trace)`` is a readable table.
    形状追踪结果：逐行记录加合计，str() 输出可读的表格
    """

    rows: list[ShapeRow] = field(default_factory=list)
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    total_params: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, index: int) -> ShapeRow:
        return self.rows[index]

    def row(self, name: str) -> ShapeRow:
        """The row of the block called ``name``. 按模块名取一行"""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"No block named {name!r}; blocks are: {', '.join(r.name for r in self.rows)}")

    @property
    def all_formulas_ok(self) -> bool:
        """Every block with a formula produced the size the formula predicts. 所有模块的尺寸都符合公式"""
        return all(r.formula_ok is not False for r in self.rows)

    def __str__(self) -> str:
        def fmt(shape: tuple[int, ...]) -> str:
            return "(" + ", ".join(str(s) for s in shape) + ")"

        header = ("block", "type", "input", "output", "params", "formula")
        lines = []
        for r in self.rows:
            ok = {True: "ok", False: "MISMATCH", None: "-"}[r.formula_ok]
            lines.append((r.name, r.kind, " + ".join(fmt(s) for s in r.input_shapes), fmt(r.output_shape),
                          f"{r.params:,}", ok))
        widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]

        def join(cells: tuple[str, ...]) -> str:
            # 参数量右对齐，其余左对齐
            return "  ".join(c.rjust(w) if i == 4 else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        out = [join(header), rule, *(join(line) for line in lines), rule]
        out.append(f"input {fmt(self.input_shape)} -> output {fmt(self.output_shape)}; "
                   f"total parameters: {self.total_params:,} ({self.total_params / 1e6:.1f} M)")
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)


def describe(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 572, 572)) -> ShapeTrace:
    """Trace the shape through each named block of a U-Net with forward hooks.
    用前向钩子追踪张量形状在 U-Net 各个模块中的变化

    The blocks traced are the direct parts of :class:`~unet_course.model.unet.UNet`: ``pad``, ``inc``,
    ``downs.i``, ``ups.i`` and ``outc``. A random input of ``input_shape`` is pushed through the model in eval mode
    without gradients, on the model's device; the model's training mode is restored afterwards.
    追踪的是 UNet 的直接组成模块；在 eval 模式、无梯度下用随机输入做一次前向，结束后恢复原来的模式

    Args:
        model: a :class:`~unet_course.model.unet.UNet` (any module whose blocks define ``output_hw`` works).
        input_shape: ``(B, C, H, W)``; ``C`` must equal the model's ``in_channels``. 输入形状

    Returns:
        A :class:`ShapeTrace`; ``print(trace)`` shows the table, ``trace.total_params`` the total.

    Raises:
        ConfigError: ``input_shape`` is not 4-D.

    >>> from unet_course.model import UNet
    >>> trace = describe(UNet(in_channels=1, n_classes=2, base_channels=4, depth=2), (1, 1, 18, 19))
    >>> [r.name for r in trace]
    ['pad', 'inc', 'downs.0', 'downs.1', 'ups.0', 'ups.1', 'outc']
    >>> trace.row("pad").output_shape, trace.row("downs.1").output_shape, trace.output_shape
    ((1, 1, 20, 20), (1, 16, 5, 5), (1, 2, 18, 19))
    >>> trace.all_formulas_ok
    True
    """
    if len(input_shape) != 4:
        raise ConfigError(f"input_shape must be (B, C, H, W), got {tuple(input_shape)!r}.")
    blocks = [(name, module) for name, module in model.named_modules()
              if name and hasattr(module, "output_hw")]
    if not blocks:
        raise ConfigError(f"{type(model).__name__} has no blocks with an `output_hw` size formula to trace.")
    # 只保留最外层的模块（例如 downs.0，而不是 downs.0.conv）
    names = [n for n, _ in blocks]
    blocks = [(n, m) for n, m in blocks if not any(n.startswith(p + ".") for p in names if p != n)]

    rows: list[ShapeRow] = []

    def make_hook(name: str, module: nn.Module):
        def hook(mod, args, output):
            shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
            h, w = shapes[0][-2:]
            rows.append(ShapeRow(name=name, kind=type(mod).__name__, input_shapes=shapes,
                                 output_shape=tuple(output.shape), params=count_parameters(mod),
                                 predicted_hw=mod.output_hw(h, w)))
        return hook

    handles = [m.register_forward_hook(make_hook(n, m)) for n, m in blocks]
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.randn(*input_shape, device=device)
        model.eval()
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return ShapeTrace(rows=rows, input_shape=tuple(input_shape), output_shape=tuple(out.shape),
                      total_params=count_parameters(model))
