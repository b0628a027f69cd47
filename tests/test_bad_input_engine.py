"""Bad input to the training layer: each case raises a clear, actionable error.
训练层的错误输入：每种情况都给出清晰、可操作的错误信息
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from unet_course.config import TrainConfig
from unet_course.data.synthetic import SyntheticSegmentation
from unet_course.errors import CheckpointError, ConfigError
from unet_course.training import build_optimizer, build_scheduler, fit

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(tmp_path, **kw) -> TrainConfig:
    values = dict(epochs=1, image_size=32, train_samples=8, val_samples=4, base_channels=4, depth=2, batch_size=4,
                  amp="off", progress="none", device="cpu", num_workers=0, out_dir=str(tmp_path / "run"))
    values.update(kw)
    return TrainConfig(**values)


def test_unknown_optimizer():
    with pytest.raises(ConfigError, match=r"Unknown optimizer 'adagrad'; choose one of: adam, adamw, rmsprop, sgd"):
        TrainConfig(optimizer="adagrad")
    cfg = TrainConfig()
    cfg.optimizer = "adagrad"                    # 绕过 __post_init__ 的校验，构建函数仍然拦截
    with pytest.raises(ConfigError, match=r"Unknown optimizer 'adagrad'; choose one of: adam, adamw"):
        build_optimizer(nn.Linear(2, 2), cfg)


def test_unknown_scheduler():
    with pytest.raises(ConfigError, match=r"Unknown scheduler 'step'; choose one of: plateau, cosine, poly, none"):
        TrainConfig(scheduler="step")
    cfg = TrainConfig()
    cfg.scheduler = "step"
    with pytest.raises(ConfigError, match=r"Unknown scheduler 'step'; choose one of: plateau, cosine, poly, none"):
        build_scheduler(torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), cfg)


def test_resume_path_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere" / "last.pt"
    with pytest.raises(CheckpointError) as err:
        fit(tiny(tmp_path, resume=str(missing)))
    msg = str(err.value)
    assert str(missing) in msg and "does not exist" in msg and "drop --resume" in msg
    with pytest.raises(CheckpointError, match=r"resume='last' looks in out_dir"):
        fit(tiny(tmp_path, resume="last"))      # 输出目录中还没有 last.pt


def test_checkpoint_from_a_different_number_of_classes(tmp_path):
    fit(tiny(tmp_path, max_steps=1))                                     # 二分类：2 个类别
    ckpt = tmp_path / "run" / "last.pt"
    with pytest.raises(ConfigError) as err:                              # 换数据集：续训规则直接拒绝
        fit(tiny(tmp_path, dataset="synthetic-multiclass", resume=str(ckpt), out_dir=str(tmp_path / "other")))
    assert "--dataset synthetic-multiclass (the checkpoint has synthetic)" in str(err.value)
    # 同一数据集名称、但掩码换成了 3 类（如 data_dir 指向别的数据）：检查点与数据不符
    train = SyntheticSegmentation(8, 32, task="multiclass", seed=0, split="train")
    val = SyntheticSegmentation(4, 32, task="multiclass", seed=0, split="val")
    with pytest.raises(CheckpointError) as err:
        fit(tiny(tmp_path, resume=str(ckpt), out_dir=str(tmp_path / "other")),
            train_loader=DataLoader(train, batch_size=4), val_loader=DataLoader(val, batch_size=4))
    msg = str(err.value)
    assert str(ckpt) in msg and "2 classes" in msg and "3 classes" in msg
    assert "[0, 255]" in msg and "[0, 128, 255]" in msg


def test_batch_size_larger_than_dataset(tmp_path):
    with pytest.raises(ConfigError, match=r"batch_size=16 is larger than the training set \(8 items"):
        fit(tiny(tmp_path, batch_size=16))


def test_output_dir_not_writable(tmp_path):
    blocker = tmp_path / "a-file.txt"
    blocker.write_text("not a folder")
    target = blocker / "run"                     # 路径中间是普通文件，无法创建目录（root 也不行）
    with pytest.raises(ConfigError) as err:
        fit(tiny(tmp_path, out_dir=str(target)))
    msg = str(err.value)
    assert str(target) in msg and "not writable" in msg and "--out-dir" in msg
