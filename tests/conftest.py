"""Shared fixtures. 共享测试夹具

The real data sets are found through ``UNET_COURSE_DATA`` (default ``../shared/data``). Outside CI a missing data
root skips the real-data tests; in CI (``CI`` set) it is a failure, never a skip.
真实数据通过 UNET_COURSE_DATA 查找；CI 中缺失数据会导致失败而不是跳过
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("UNET_COURSE_QUIET", "1")

from unet_course.env import data_root  # noqa: E402


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    msg = f"{what} not found at {path}. Set UNET_COURSE_DATA to the folder that holds DRIVE/ and isbi2012/."
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def one_thread():
    """One torch thread for the test: faster and steadier on a shared 2-core CPU. 单线程：在共享的双核 CPU 上更快更稳定"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared real data (``DRIVE/``, ``isbi2012/``). 共享真实数据根目录"""
    return _require(data_root(), "Shared data root")


@pytest.fixture(scope="session")
def drive_root(shared_data: Path) -> Path:
    return _require(shared_data / "DRIVE", "DRIVE")


@pytest.fixture(scope="session")
def isbi_root(shared_data: Path) -> Path:
    return _require(shared_data / "isbi2012", "ISBI-2012")


def write_carvana_fixture(root: Path, n: int = 6) -> Path:
    """A tiny data set in Kaggle's Carvana layout: ``train/<id>.jpg`` + ``train_masks/<id>_mask.gif`` (0/1).
    Kaggle Carvana 目录结构的小型数据集
    """
    import numpy as np
    from PIL import Image

    (root / "train").mkdir(parents=True)
    (root / "train_masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 80, (48, 64, 3), dtype=np.uint8)
        mask = np.zeros((48, 64), np.uint8)
        mask[10:30, 12 + i : 50] = 1
        img[mask == 1] = (210, 170, 50)
        Image.fromarray(img).save(root / "train" / f"car_{i:02d}.jpg", quality=95)
        Image.fromarray(mask).save(root / "train_masks" / f"car_{i:02d}_mask.gif")
    return root
