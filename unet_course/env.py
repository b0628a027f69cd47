"""Where are we running? Device choice, seeding and run-environment detection.
运行环境：设备选择、随机种子与运行平台（Kaggle / Colab / 本地）检测

- Device: CUDA > MPS > CPU unless the caller names one. 设备优先级 CUDA > MPS > CPU，可手动指定
- ``seed_everything`` seeds Python, NumPy and torch (and CUDA) in one call. 一次调用设置全部随机种子
- Kaggle mounts inputs read-only under ``/kaggle/input`` and keeps outputs in ``/kaggle/working``.
  Kaggle 的输入目录只读，输出应写入 /kaggle/working
- The shared real data sets are found through ``UNET_COURSE_DATA``, defaulting to ``../shared/data`` next to
  the repository. 真实数据集通过 UNET_COURSE_DATA 查找，默认是仓库旁边的 ../shared/data
"""

from __future__ import annotations

import os
import platform
import random
import sys
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError

#: Folder that holds this package's source checkout (``<repo>/unet_course`` -> ``<repo>``).
REPO_ROOT = Path(__file__).resolve().parents[1]

KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")


def pick_device(preference: str | torch.device | None = "auto") -> torch.device:
    """Choose the compute device.
    选择计算设备

    Args:
        preference: ``"auto"`` (CUDA > MPS > CPU), or an explicit ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"``.

    Returns:
        A :class:`torch.device`.

    Raises:
        ConfigError: the requested device is not available here.

    >>> pick_device("cpu")
    device(type='cpu')
    """
    if isinstance(preference, torch.device):
        return preference
    pref = (preference or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = pref.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={preference!r} was requested but CUDA is not available here; use device='auto' or 'cpu'.")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError(f"device={preference!r} was requested but MPS is not available here; use device='auto' or 'cpu'.")
    if kind not in {"cuda", "mps", "cpu"}:
        raise ConfigError(f"Unknown device {preference!r}; choose one of 'auto', 'cuda', 'cuda:N', 'mps', 'cpu'.")
    return torch.device(pref)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally ask torch for deterministic kernels.
    设置 Python、NumPy 和 torch 的随机种子；可选地要求确定性算子

    Args:
        seed: the seed. 种子
        deterministic: if True, ``torch.use_deterministic_algorithms(True, warn_only=True)`` and cuDNN
            benchmarking off. Slower on GPU, needed for bit-exact resume tests.
            为 True 时启用确定性算法并关闭 cuDNN benchmark（GPU 上更慢，精确续训测试需要）
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        torch.use_deterministic_algorithms(False)


def run_environment() -> str:
    """Return ``"kaggle"``, ``"colab"`` or ``"local"``. 返回运行平台名称"""
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") or KAGGLE_WORKING.is_dir():
        return "kaggle"
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return "colab"
    return "local"


def default_out_dir(name: str = "train") -> Path:
    """Where run outputs go: ``/kaggle/working/runs/<name>`` on Kaggle, else ``runs/<name>``.
    输出目录：Kaggle 上写到 /kaggle/working，其余情况写到当前目录下的 runs/
    """
    if run_environment() == "kaggle":
        return KAGGLE_WORKING / "runs" / name
    return Path("runs") / name


def data_root(path: str | os.PathLike | None = None) -> Path:
    """Root folder of the real data sets (DRIVE/, isbi2012/, ...).
    真实数据集的根目录

    Order: the explicit ``path``; ``$UNET_COURSE_DATA``; ``/kaggle/input`` on Kaggle; ``<repo>/../shared/data``.
    The folder is not required to exist here; dataset builders raise a clear error if it does not.
    """
    if path:
        return Path(path).expanduser()
    env = os.environ.get("UNET_COURSE_DATA")
    if env:
        return Path(env).expanduser()
    if run_environment() == "kaggle":
        return KAGGLE_INPUT
    return (REPO_ROOT.parent / "shared" / "data").resolve()


def is_interactive() -> bool:
    """True when progress bars make sense: a TTY or a live Jupyter kernel, but not CI or papermill.
    是否适合显示进度条：终端或交互式 Jupyter，而非 CI 或 papermill
    """
    if os.environ.get("CI") or os.environ.get("PAPERMILL_EXECUTION") or os.environ.get("UNET_COURSE_QUIET"):
        return False
    if in_notebook():
        return True
    return sys.stderr.isatty()


def in_notebook() -> bool:
    """True inside a live Jupyter kernel (not merely when ``ipykernel`` was imported, as nbval does).
    是否运行在 Jupyter 内核中（仅导入 ipykernel 不算，例如 nbval 插件）
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


#: Set to "1" by headless notebook runs (papermill, ``unet-course course``): widgets draw static figures instead.
#: 无界面运行时设为 "1"：控件改为静态图
HEADLESS_ENV = "UNET_COURSE_HEADLESS"


def is_headless() -> bool:
    """True inside a headless notebook run (:data:`HEADLESS_ENV` set). 是否处于无界面运行"""
    return bool(os.environ.get(HEADLESS_ENV))


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX-512-BF16 or AMX, through oneDNN).
    本机 CPU 是否原生支持 bf16 卷积（AVX-512-BF16 或 AMX）

    On CPUs without it (AVX2-only machines, most laptops before 2020) bf16 autocast is *slower* than fp32.
    不支持时 bf16 自动混合精度反而比 fp32 慢
    """
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # 旧版本或未编译 oneDNN
        return False


def cpu_info() -> dict:
    """Facts about this CPU for benchmarks and ``metrics.json``: model, cores, threads, SIMD level, native bf16.
    本机 CPU 信息：型号、核心数、线程数、指令集级别、是否原生支持 bf16

    >>> sorted(cpu_info())[:3]
    ['affinity_cores', 'capability', 'logical_cores']
    """
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:                                     # no /proc (macOS, Windows)
        pass
    return {
        "model": name,
        "logical_cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn_enabled": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "native_bf16": cpu_has_fast_bf16(),
    }
