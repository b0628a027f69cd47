"""Small images, tiny checkpoints and a direct ``predict`` runner shared by the CLI tests.
命令行测试共用的小图像、微型检查点与 predict 调用函数
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unet_course.checkpoint import save_checkpoint
from unet_course.cli.predict import configure_parser, run_cli
from unet_course.model import UNet

MEAN, STD = (0.4, 0.4, 0.4), (0.2, 0.2, 0.2)


def toy_sample(h: int, w: int, seed: int = 0, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs on a noisy background: uint8 image ``(H, W, C)`` and a {0, 255} mask. 噪声背景上的亮圆盘"""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(max(2, h * w // 600)):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, 7)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    base = rng.normal(80, 25, (h, w)) + 90 * mask
    img = np.clip(base[..., None] + rng.normal(0, 10, (h, w, channels)), 0, 255).astype(np.uint8)
    return img, mask.astype(np.uint8) * 255


def write_checkpoint(path: Path, model: nn.Module, mask_values: list[int], in_channels: int, mode: str = "multiclass",
                     mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> Path:
    """Save ``model`` in the project's checkpoint format. 以项目的检查点格式保存模型"""
    state = {
        "format_version": 1,
        "model_config": dict(model.config),
        "model_state": model.state_dict(),
        "mask_values": list(mask_values),
        "class_names": [f"class_{i}" for i in range(len(mask_values))],
        "normalization": {"mean": list(mean or MEAN[:in_channels]), "std": list(std or STD[:in_channels])},
        "preprocess": {"scale": 1.0, "in_channels": in_channels, "mode": mode, "threshold": 0.5},
    }
    return save_checkpoint(path, state)


def rgb_checkpoint(folder: Path) -> Path:
    """A random 3-channel, 2-class U-Net with mask values [0, 255]. 随机三通道二类 U-Net"""
    torch.manual_seed(0)
    return write_checkpoint(folder / "rgb.pt", UNet(3, 2, base_channels=4, depth=2), [0, 255], in_channels=3)


def gray_checkpoint(folder: Path) -> Path:
    """A random 1-channel binary U-Net with mask values [255, 0]. 随机单通道二分类 U-Net"""
    torch.manual_seed(0)
    return write_checkpoint(folder / "gray.pt", UNet(1, 1, base_channels=4, depth=2), [255, 0], in_channels=1,
                            mode="binary", mean=(0.5,), std=(0.2,))


def predict_cli(*argv: str) -> int:
    """Run ``unet-course predict`` without the top-level error handler (errors propagate). 直接运行 predict"""
    parser = configure_parser(argparse.ArgumentParser(prog="unet-course predict"))
    return run_cli(parser.parse_args(list(argv)))
