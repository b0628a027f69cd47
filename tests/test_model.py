"""Tests for the U-Net model, its parts and the shape tools. U-Net 模型、组成模块与形状工具的测试"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unet_course.errors import ConfigError
from unet_course.model import (
    CONFIG_KEYS,
    DoubleConv,
    Down,
    OutConv,
    PadToMultiple,
    UNet,
    Up,
    UpConv2x2,
    build_model,
    conv_output_size,
    count_parameters,
    describe,
    transposed_conv_output_size,
)


def double_conv_params(c_in: int, c_out: int, c_mid: int | None = None) -> int:
    """Parameters of conv3x3(no bias)-BN-ReLU x2, counted by hand. 手工计算的双卷积参数量"""
    c_mid = c_mid or c_out
    return 9 * c_in * c_mid + 2 * c_mid + 9 * c_mid * c_out + 2 * c_out


def test_exact_parameter_counts_base64():
    # 论文宽度（base 64, depth 4）下的精确参数量：转置卷积 31.0 M，双线性 17.3 M
    assert count_parameters(UNet(3, 2, 64, 4, bilinear=False)) == 31_037_698
    assert count_parameters(UNet(3, 2, 64, 4, bilinear=True)) == 17_263_042


def test_parameter_count_matches_hand_formula():
    # 逐块手工求和，独立于 count_parameters 的实现
    c = [8 * 2**i for i in range(4)]  # base 8, depth 3
    enc = double_conv_params(3, c[0]) + sum(double_conv_params(c[i], c[i + 1]) for i in range(3))
    dec = sum(c[i + 1] * c[i] * 4 + c[i] + double_conv_params(2 * c[i], c[i]) for i in range(3))
    head = c[0] * 2 + 2
    model = UNet(3, 2, base_channels=8, depth=3)
    assert count_parameters(model) == enc + dec + head
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_bilinear_widths():
    model = UNet(3, 2, 64, 4, bilinear=True)
    assert model.downs[-1].conv.conv2.out_channels == 512          # 最深层宽度减半
    assert [u.conv.conv2.out_channels for u in model.ups] == [256, 128, 64, 64]
    assert [u.conv.conv1.out_channels for u in model.ups] == [512, 256, 128, 64]  # mid = in // 2


@pytest.mark.parametrize("bilinear", [False, True])
def test_any_input_size_is_padded_and_cropped(bilinear):
    torch.manual_seed(0)
    model = UNet(3, 2, base_channels=4, depth=4, bilinear=bilinear).eval()
    x = torch.randn(1, 3, 584, 565)                              # DRIVE 尺寸，不是 16 的倍数
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 2, 584, 565)
    assert model.pad.pads(584, 565) == (5, 6, 4, 4)               # 填充到 592 x 576，两侧平分


def test_tiny_input_falls_back_to_replicate_padding():
    model = UNet(1, 1, base_channels=2, depth=3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 3, 5)).shape == (2, 1, 3, 5)


def test_pad_is_reflect_and_crop_recovers_centre():
    pad = PadToMultiple(8)
    x = torch.arange(6.0).reshape(1, 1, 1, 6).expand(1, 1, 8, 6).contiguous()
    y = pad(x)
    assert y.shape == (1, 1, 8, 8)
    assert y[0, 0, 0].tolist() == [1.0, 0, 1, 2, 3, 4, 5, 4]       # 镜像（不重复边缘像素）
    same = torch.zeros(1, 1, 16, 8)
    assert pad(same) is same                                      # 已是整数倍时不复制


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = UNet(3, 3, base_channels=8, depth=3).eval()
    x = torch.randn(2, 3, 40, 36)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        assert model_cl.inc.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        out = model_cl(x_cl)
        assert model.pad(torch.randn(1, 3, 37, 35).contiguous(memory_format=torch.channels_last)).is_contiguous(
            memory_format=torch.channels_last)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_channels_last_training_step_runs():
    model = UNet(3, 2, base_channels=4, depth=2).to(memory_format=torch.channels_last).train()
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    model(x).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _grads_and_stats(checkpointing: bool):
    torch.manual_seed(0)
    model = UNet(1, 2, base_channels=4, depth=3, gradient_checkpointing=checkpointing).train()
    torch.manual_seed(1)
    x = torch.randn(2, 1, 24, 24)
    loss = model(x).square().mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    stats = {n: b.clone() for n, b in model.named_buffers()}
    return loss.detach(), grads, stats


def test_gradient_checkpointing_gives_same_grads_and_bn_stats():
    loss_a, grads_a, stats_a = _grads_and_stats(False)
    loss_b, grads_b, stats_b = _grads_and_stats(True)
    torch.testing.assert_close(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-6, msg=name)
    # BN 运行统计量只更新一次：与不使用检查点时完全相同
    for name in stats_a:
        torch.testing.assert_close(stats_a[name], stats_b[name], rtol=0, atol=0, msg=name)
    assert int(stats_b["inc.bn1.num_batches_tracked"]) == 1


def test_gradient_checkpointing_only_when_training_with_grad(monkeypatch):
    import unet_course.model.unet as unet_module

    calls = []
    real = unet_module.checkpoint

    def spy(*args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return real(*args, **kwargs)

    monkeypatch.setattr(unet_module, "checkpoint", spy)
    model = UNet(1, 1, base_channels=2, depth=2, gradient_checkpointing=True)
    x = torch.randn(1, 1, 8, 8)
    model.eval()
    model(x)
    model.train()
    with torch.no_grad():
        model(x)
    assert calls == []                                            # 推理或无梯度时不使用检查点
    model(x)
    assert calls and all(c is False for c in calls)              # 非重入实现
    assert len(calls) == 1 + 2 + 2                                # inc + 2 个 Down + 2 个 Up


def test_config_roundtrip_and_errors():
    model = UNet(1, 3, base_channels=8, depth=2, bilinear=True)
    assert set(model.config) == set(CONFIG_KEYS)
    assert model.config == {"in_channels": 1, "n_classes": 3, "base_channels": 8, "depth": 2, "bilinear": True,
                            "gradient_checkpointing": False}
    rebuilt = build_model(dict(model.config))
    rebuilt.load_state_dict(model.state_dict())                   # 结构完全一致
    with pytest.raises(ConfigError, match="base_chanels"):
        build_model({"base_chanels": 8})
    with pytest.raises(ConfigError, match="depth"):
        UNet(depth=0)
    with pytest.raises(ConfigError, match="in_channels=1"):
        UNet(1, 2, base_channels=2, depth=1)(torch.randn(1, 3, 8, 8))


def test_output_is_raw_logits():
    model = UNet(3, 1, base_channels=4, depth=2).eval()
    with torch.no_grad():
        model.outc.conv.bias.fill_(-50.0)                         # 偏置很负：sigmoid/softmax 之后不可能为负
        y = model(torch.randn(2, 3, 16, 16))
    assert y.shape == (2, 1, 16, 16)
    assert (y < 0).all()                                          # 输出的是未经激活的 logits


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "dilation", "expected"),
    [(572, 3, 1, 0, 1, 570), (572, 3, 1, 1, 1, 572), (568, 2, 2, 0, 1, 284), (7, 3, 2, 1, 1, 4), (10, 3, 1, 0, 2, 6)],
)
def test_conv_output_size_matches_pytorch(size, kernel, stride, padding, dilation, expected):
    assert conv_output_size(size, kernel, stride, padding, dilation) == expected
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
    assert conv(torch.zeros(1, 1, size, 3 + 2 * dilation)).shape[-2] == expected


@pytest.mark.parametrize(("size", "kernel", "stride", "padding", "output_padding"),
                         [(28, 2, 2, 0, 0), (5, 3, 2, 1, 1), (4, 4, 2, 1, 0)])
def test_transposed_conv_output_size_matches_pytorch(size, kernel, stride, padding, output_padding):
    layer = nn.ConvTranspose2d(1, 1, kernel, stride=stride, padding=padding, output_padding=output_padding)
    got = layer(torch.zeros(1, 1, size, size)).shape[-1]
    assert transposed_conv_output_size(size, kernel, stride, padding, output_padding) == got
    assert transposed_conv_output_size(28, 2, 2) == 56


def test_conv_output_size_rejects_too_small_input():
    with pytest.raises(ConfigError, match="does not fit"):
        conv_output_size(2, kernel=5)


def test_describe_trace():
    model = UNet(3, 2, base_channels=4, depth=3)
    model.train()
    trace = describe(model, (1, 3, 50, 45))
    assert [r.name for r in trace] == ["pad", "inc", "downs.0", "downs.1", "downs.2", "ups.0", "ups.1", "ups.2",
                                       "outc"]
    assert model.training                                         # 恢复原来的模式
    assert trace.row("pad").output_shape == (1, 3, 56, 48)
    assert trace.row("downs.2").output_shape == (1, 32, 7, 6)
    assert trace.row("ups.0").input_shapes == [(1, 32, 7, 6), (1, 16, 14, 12)]
    assert trace.output_shape == (1, 2, 50, 45)
    assert trace.all_formulas_ok
    assert sum(r.params for r in trace) == trace.total_params == count_parameters(model)
    text = str(trace)
    assert "downs.2" in text and f"{trace.total_params:,}" in text and "MISMATCH" not in text
    with pytest.raises(KeyError):
        trace.row("nope")
    with pytest.raises(ConfigError):
        describe(model, (3, 50, 45))


def test_parts_shapes():
    x = torch.randn(2, 8, 12, 10)
    assert DoubleConv(8, 16)(x).shape == (2, 16, 12, 10)
    assert Down(8, 16)(x).shape == (2, 16, 6, 5)
    assert Up(8, 4, 4)(torch.randn(2, 8, 6, 5), torch.randn(2, 4, 12, 10)).shape == (2, 4, 12, 10)
    # 单独使用、奇数尺寸时对上采样结果补零
    assert Up(8, 4, 4, bilinear=True)(torch.randn(2, 8, 6, 5), torch.randn(2, 4, 13, 11)).shape == (2, 4, 13, 11)
    assert OutConv(8, 3)(x).shape == (2, 3, 12, 10)
    assert DoubleConv(8, 16).conv1.bias is None                   # BN 前的卷积无偏置


@pytest.mark.parametrize("channels_last", [False, True])
def test_upconv_matmul_equals_the_library_transposed_convolution(channels_last):
    """UpConv2x2's one matrix product gives ConvTranspose2d's values and gradients (fp32, both memory formats).
    一次矩阵乘法的结果与梯度都与 ConvTranspose2d 相同"""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ours = UpConv2x2(6, 4)
    ref = nn.ConvTranspose2d(6, 4, kernel_size=2, stride=2)
    ref.load_state_dict(ours.state_dict())                              # 同一组参数，同一 state_dict 键名
    x = torch.randn(2, 6, 5, 7).contiguous(memory_format=fmt)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), ref(x2)
    assert y1.shape == y2.shape == (2, 4, 10, 14)
    assert y1.is_contiguous(memory_format=fmt)                          # 输出保持输入的内存格式
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y2)
    y1.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-5, atol=1e-5)
    ours.matmul = False                                                 # 库的卷积核：同样的结果
    torch.testing.assert_close(ours(x), y2.detach(), rtol=1e-5, atol=1e-5)


def test_upconv_matmul_under_bf16_autocast_matches_the_library_kernel():
    torch.manual_seed(0)
    up = UpConv2x2(16, 8)
    x = torch.randn(2, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = up(x)
        up.matmul = False
        ref = up(x)
    assert ours.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), ref.float(), rtol=2e-2, atol=2e-2)


def test_unet_decoder_uses_the_matmul_upconv_and_loads_old_state_dicts():
    model = UNet(3, 2, base_channels=4, depth=2)
    assert all(isinstance(up.up, UpConv2x2) for up in model.ups)
    old_keys = {k for k in model.state_dict() if ".up." in k}
    assert old_keys == {f"ups.{i}.up.{p}" for i in range(2) for p in ("weight", "bias")}  # 键名与旧检查点相同
