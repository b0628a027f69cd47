"""Tests for the mixed-precision policy and the shared training step. 混合精度策略与共享训练步骤的测试"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

import unet_course
import unet_course.precision as precision
from unet_course.errors import ConfigError
from unet_course.losses import SegmentationLoss
from unet_course.model import UNet
from unet_course.precision import AmpPolicy, amp_policy, autocast, make_scaler


@pytest.fixture
def fake_cuda(monkeypatch):
    """Pretend CUDA is available with or without bf16. 伪装 CUDA 可用（可设定是否支持 bf16）"""
    state = {"bf16": True}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: state["bf16"])
    return state


def test_cuda_policies(fake_cuda):
    cuda = torch.device("cuda")
    assert amp_policy(cuda, "auto") == AmpPolicy("cuda", True, torch.float16, True)
    assert amp_policy(torch.device("cuda", 1), "fp16") == AmpPolicy("cuda", True, torch.float16, True)
    assert amp_policy(cuda, "bf16") == AmpPolicy("cuda", True, torch.bfloat16, False)
    assert amp_policy(cuda, "off") == AmpPolicy("cuda", False, torch.float32, False)
    assert amp_policy(cuda, "auto").name == "fp16+scaler"
    assert precision.prefer_channels_last(cuda)
    fake_cuda["bf16"] = False
    with pytest.raises(ConfigError, match="bfloat16"):
        amp_policy(cuda, "bf16")
    assert amp_policy(cuda, "auto").dtype == torch.float16        # auto 不受影响


def test_cpu_policies(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert amp_policy(cpu, "auto") == AmpPolicy("cpu", True, torch.bfloat16, False)
    assert precision.prefer_channels_last(cpu)
    # 无原生 bf16（仅 AVX2）：auto 保持 fp32，NCHW；显式 bf16 仍然照办
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert amp_policy(cpu, "auto") == AmpPolicy("cpu", False, torch.float32, False)
    assert not precision.prefer_channels_last(cpu)
    assert not precision.prefer_channels_last(cpu, amp_policy(cpu, "auto"))
    assert amp_policy("cpu", "bf16") == AmpPolicy("cpu", True, torch.bfloat16, False)
    # bf16 计算时 oneDNN 的 NHWC 卷积更快，即使没有原生 bf16
    assert precision.prefer_channels_last(cpu, amp_policy(cpu, "bf16"))
    assert amp_policy(cpu, "off") == AmpPolicy("cpu", False, torch.float32, False)
    with pytest.raises(ConfigError, match="fp16"):
        amp_policy(cpu, "fp16")                                   # CPU 上明确拒绝 fp16
    with pytest.raises(ConfigError, match="Unknown amp"):
        amp_policy(cpu, "half")


def test_cuda_bf16_without_a_gpu_says_cuda_is_missing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        amp_policy("cuda", "bf16")                                  # 不是“GPU 不支持 bf16”
    # the policy for auto/fp16 is a description and needs no GPU (notebook 03 prints it on CPU machines)
    # auto/fp16 的策略只是描述，不需要 GPU
    assert amp_policy("cuda", "auto") == AmpPolicy("cuda", True, torch.float16, True)
    assert amp_policy("cuda", "off").enabled is False


def test_mps_policies(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    mps = torch.device("mps")
    assert amp_policy(mps, "auto") == AmpPolicy("mps", False, torch.float32, False)
    assert amp_policy(mps, "fp16") == AmpPolicy("mps", True, torch.float16, False)
    assert amp_policy(mps, "off").enabled is False
    assert not precision.prefer_channels_last(mps)
    with pytest.raises(ConfigError, match="MPS"):
        amp_policy(mps, "bf16")


def test_cpu_has_fast_bf16_is_a_bool():
    assert isinstance(precision.cpu_has_fast_bf16(), bool)


def test_autocast_and_scaler_objects():
    on = amp_policy("cpu", "bf16")
    off = amp_policy("cpu", "off")
    assert isinstance(autocast(off), contextlib.nullcontext)
    ctx = autocast(on)
    assert isinstance(ctx, torch.autocast)
    with ctx:
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    scaler = make_scaler(on)
    assert isinstance(scaler, torch.amp.GradScaler) and not scaler.is_enabled()


def test_scaler_enabled_for_cuda_fp16(fake_cuda):
    policy = amp_policy(torch.device("cuda"), "auto")
    scaler = make_scaler(policy)
    assert isinstance(scaler, torch.amp.GradScaler)
    assert scaler.is_enabled() and scaler._device == "cuda"


def _one_step(amp: str) -> float:
    torch.manual_seed(0)
    model = UNet(3, 2, base_channels=8, depth=2)
    torch.manual_seed(1)
    images = torch.randn(2, 3, 16, 16)
    target = (images[:, 0] > 0).long()
    policy = amp_policy("cpu", amp)
    scaler = make_scaler(policy)
    loss_fn = SegmentationLoss("multiclass")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model = model.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
    # 与训练引擎相同的一步：autocast 前向、fp32 损失、（缩放后）反向、更新
    optimizer.zero_grad(set_to_none=True)
    with autocast(policy):
        logits = model(images)
        loss = loss_fn(logits, target)
    assert logits.dtype == (torch.bfloat16 if amp == "bf16" else torch.float32)
    assert loss.dtype == torch.float32
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    return float(loss.detach())


def test_cpu_bf16_step_is_close_to_fp32():
    fp32 = _one_step("off")
    bf16 = _one_step("bf16")
    assert torch.isfinite(torch.tensor([fp32, bf16])).all()
    # bf16 有 8 位尾数（相对误差约 0.4%）；对一个约 1.5 的损失，2% 的相对容差足够宽松且仍有意义
    assert bf16 == pytest.approx(fp32, rel=0.02)


def test_no_torch_cuda_amp_anywhere():
    root = Path(unet_course.__file__).parent
    offenders = [str(p) for p in root.rglob("*.py") if "torch.cuda.amp" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_as_policy_passes_policies_through_and_reads_mode_strings():
    bf16 = amp_policy("cpu", "bf16")
    assert precision.as_policy(bf16, "cuda") is bf16                     # 策略对象原样返回
    assert precision.as_policy(None, "cpu").name == "fp32"
    assert precision.as_policy("auto", "cpu") == amp_policy("cpu", "auto")  # auto 只有一种含义
    with pytest.raises(ConfigError, match="amp"):
        precision.as_policy("fp8", "cpu")
