"""*混合精度*（mixed precision）: one policy object decides autocast dtype and *损失缩放*（loss scaling）per device.
混合精度：用一个策略对象按设备决定 autocast 的数据类型以及是否需要损失缩放

Autocast runs the matrix-heavy operations (convolutions) in a 16-bit type and keeps the sensitive ones (softmax,
losses, BN statistics) in float32. Which 16-bit type to use depends on the device:
autocast 让卷积等计算密集的算子用 16 位类型，softmax、损失、BN 统计量等仍用 float32；具体类型取决于设备

=========  =================================  ===================================================================
device     ``amp="auto"`` gives               notes
=========  =================================  ===================================================================
CUDA       fp16 + ``GradScaler``              fp16 has a narrow exponent: small gradients underflow to 0 unless the
                                              loss is scaled up first. ``"bf16"`` (Ampere+) needs no scaler.
CPU        bf16, no scaler, **if the CPU has  bf16 keeps fp32's exponent, so no loss scaling. Without AVX-512-BF16
           native bf16**; otherwise fp32      or AMX (e.g. an AVX2-only CPU) PyTorch has no fast bf16 convolution
                                              and falls back to a generic kernel about 2× *slower* than fp32, so
                                              ``"auto"`` stays in fp32 there; an explicit ``"bf16"`` is honoured.
                                              ``"fp16"`` on CPU raises ConfigError (slow, and would need a scaler).
MPS        fp32 (autocast off)                ``"fp16"`` is an explicit opt-in (autocast fp16, no scaler);
                                              ``"bf16"`` raises ConfigError.
=========  =================================  ===================================================================

``amp="off"`` disables autocast everywhere. Nothing here uses the deprecated CUDA-only AMP namespace: autocast is
``torch.autocast(device_type, dtype)`` and the scaler is ``torch.amp.GradScaler(device_type)``.
amp="off" 在所有设备上关闭混合精度；本模块只使用 torch.autocast 与 torch.amp.GradScaler
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .config import AMP_MODES
from .env import cpu_has_fast_bf16
from .errors import ConfigError


@dataclass(frozen=True)
class AmpPolicy:
    """What autocast does on one device. 某设备上的自动混合精度策略

    Attributes:
        device_type: ``"cuda"``, ``"cpu"`` or ``"mps"`` (what ``torch.autocast`` expects). 设备类型
        enabled: whether autocast is on. 是否启用 autocast
        dtype: the 16-bit type autocast uses (``torch.float32`` when disabled). autocast 使用的数据类型
        use_scaler: whether a ``GradScaler`` scales the loss (fp16 on CUDA only). 是否使用梯度缩放器
    """

    device_type: str
    enabled: bool
    dtype: torch.dtype
    use_scaler: bool

    @property
    def name(self) -> str:
        """Short label: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"fp16+scaler"``. 简短名称"""
        if not self.enabled:
            return "fp32"
        label = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, str(self.dtype))
        return label + ("+scaler" if self.use_scaler else "")


def prefer_channels_last(device: torch.device | str, policy: AmpPolicy | None = None) -> bool:
    """Whether NHWC (``channels_last``) is the faster memory format for *training* on ``device``.
    在该设备上训练时 NHWC（channels_last）是否更快

    CUDA: yes (tensor-core convolutions are NHWC). CPU: with native bf16, or whenever the policy computes in bf16
    (oneDNN's bf16 convolutions are NHWC: a bf16 training step took 5.3 s NHWC vs 10.2 s NCHW on a 2-core AVX2
    EPYC). In fp32 on AVX2-only CPUs NHWC is slower (a base-32 U-Net step on 8x128x128: 1.81 s vs 1.67 s). MPS: no.
    CUDA 上是；CPU 上在原生 bf16 或以 bf16 计算时是；仅 AVX2 的 fp32 下 NHWC 更慢；MPS 上否

    Args:
        device: the training device. 训练设备
        policy: the AMP policy (used on CPU only). 混合精度策略（仅 CPU 使用）
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return True
    if kind == "cpu":
        bf16 = policy is not None and policy.enabled and policy.dtype == torch.bfloat16
        return bf16 or cpu_has_fast_bf16()
    return False


def nhwc_for_inference(model: torch.nn.Module, device: torch.device | str, policy: AmpPolicy) -> bool:
    """Put ``model``'s weights in NHWC where that is faster, and say whether the inputs should follow.
    在 NHWC 更快时把模型权重转为 channels_last，并返回输入是否也应转为 NHWC

    A channels-last input alone does not decide the layout: a one-channel input (DRIVE's green channel) is
    contiguous in both formats, so with NCHW weights the convolutions run NCHW, and oneDNN's bf16 kernels then
    reorder every activation (flip-TTA prediction of the 20 DRIVE test images with the earlier recipe's base-32
    U-Net: 47.8 s against 22.7 s with NHWC weights on the README's 2-core CPU; the command is in its benchmark
    section). The weights change layout in place (same values, same parameter objects); in fp32 on CPUs without
    native bf16 nothing changes.
    单通道输入在两种格式下都连续，不能决定布局；权重为 NCHW 时卷积按 NCHW 运行，bf16 下每个激活都要重排

    Args:
        model: the network; converted in place when NHWC is preferred. 网络（需要时原地转换）
        device: where it runs. 推理设备
        policy: the AMP policy. 混合精度策略
    """
    if not prefer_channels_last(device, policy):
        return False
    model.to(memory_format=torch.channels_last)                      # 权重也用 NHWC（值不变）
    return True


def amp_policy(device: torch.device | str, amp: str = "auto") -> AmpPolicy:
    """Choose the mixed-precision policy for ``device``.
    为设备选择混合精度策略

    Args:
        device: a :class:`torch.device` or a string such as ``"cuda:0"``, ``"cpu"``, ``"mps"``. 设备
        amp: ``"auto"``, ``"off"``, ``"fp16"`` or ``"bf16"`` (the ``TrainConfig.amp`` field). 混合精度模式

    Returns:
        An :class:`AmpPolicy`; see the module docstring for the table.

    Raises:
        ConfigError: unknown ``amp``; ``"bf16"`` on a GPU without bf16 support; ``"fp16"`` on CPU; ``"bf16"`` on
            MPS; an unsupported device type.

    >>> amp_policy("cpu", "bf16")
    AmpPolicy(device_type='cpu', enabled=True, dtype=torch.bfloat16, use_scaler=False)
    >>> amp_policy("cpu", "auto").name == ("bf16" if cpu_has_fast_bf16() else "fp32")
    True
    >>> amp_policy("cpu", "off").name
    'fp32'
    """
    if amp not in AMP_MODES:
        raise ConfigError(f"Unknown amp {amp!r}; choose one of: {', '.join(AMP_MODES)}.")
    kind = torch.device(device).type
    if kind not in ("cuda", "cpu", "mps"):
        raise ConfigError(f"Mixed precision is not set up for device type {kind!r}; use amp='off'.")
    off = AmpPolicy(kind, False, torch.float32, False)
    if amp == "off":
        return off
    if kind == "cuda":
        if amp == "bf16":
            # bf16 support is a property of the GPU, so it can only be asked with one present
            # bf16 支持取决于 GPU 本身，没有 GPU 时无法查询
            if not torch.cuda.is_available():
                raise ConfigError(
                    "amp='bf16' was requested for a CUDA device, but PyTorch sees no CUDA GPU here "
                    "(torch.cuda.is_available() is False); use device='cpu' or run on a GPU machine."
                )
            if not torch.cuda.is_bf16_supported():
                raise ConfigError(
                    "amp='bf16' was requested but this GPU has no bfloat16 support (it needs compute capability "
                    "8.0+, e.g. A100/RTX 30xx); use amp='fp16' or amp='auto' (fp16 with loss scaling)."
                )
            return AmpPolicy("cuda", True, torch.bfloat16, False)
        return AmpPolicy("cuda", True, torch.float16, True)          # auto / fp16：fp16 + 损失缩放
    if kind == "cpu":
        if amp == "fp16":
            raise ConfigError(
                "amp='fp16' is not supported on CPU (slow on most CPUs and it would need loss scaling); "
                "use amp='bf16' or amp='auto' (bf16 autocast), or amp='off'."
            )
        if amp == "auto" and not cpu_has_fast_bf16():
            return off                                              # 无原生 bf16：自动模式保持 fp32（更快）
        return AmpPolicy("cpu", True, torch.bfloat16, False)         # bf16：无需损失缩放
    # MPS
    if amp == "bf16":
        raise ConfigError("amp='bf16' is not supported on MPS; use amp='fp16' (opt-in) or amp='off'/'auto'.")
    if amp == "fp16":
        return AmpPolicy("mps", True, torch.float16, False)          # 显式选择才启用
    return off                                                      # auto：MPS 上默认 fp32


def autocast(policy: AmpPolicy) -> contextlib.AbstractContextManager:
    """The autocast context for ``policy`` (a ``nullcontext`` when it is disabled).
    返回策略对应的 autocast 上下文（未启用时为 nullcontext）

    >>> with autocast(amp_policy("cpu", "bf16")):
    ...     y = torch.nn.functional.linear(torch.randn(2, 4), torch.randn(3, 4))
    >>> y.dtype
    torch.bfloat16
    """
    if not policy.enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=policy.device_type, dtype=policy.dtype)


def make_scaler(policy: AmpPolicy) -> torch.amp.GradScaler:
    """A ``torch.amp.GradScaler`` that is active only when the policy needs loss scaling.
    创建梯度缩放器；只有策略需要损失缩放时才真正启用

    A disabled scaler is a pass-through (``scale(loss)`` returns ``loss``, ``step`` calls ``optimizer.step()``),
    so training code can always call it the same way.
    未启用的缩放器什么也不做，训练代码因此可以始终以同样方式调用
    """
    return torch.amp.GradScaler(policy.device_type, enabled=policy.use_scaler)


def as_policy(amp: str | AmpPolicy | None, device: torch.device | str) -> AmpPolicy:
    """An :class:`AmpPolicy` passes through; a mode string goes through :func:`amp_policy` (``None`` is ``"off"``).
    已是策略对象则原样返回；字符串交给 amp_policy（None 表示关闭）

    >>> as_policy(None, "cpu").name
    'fp32'
    """
    if isinstance(amp, AmpPolicy):
        return amp
    return amp_policy(device, "off" if amp is None else amp)
