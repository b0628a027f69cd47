"""Checkpoints: weights_only round trip, atomic writes, clear errors, bit-exact resume.
检查点：weights_only 往返、原子写入、清晰的错误信息、逐位一致的续训
"""

from __future__ import annotations

import datetime
import hashlib
import os

import pytest
import torch
from torch.utils.data import DataLoader

from unet_course.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_model,
    restore_rng_state,
    save_checkpoint,
)
from unet_course.config import TrainConfig
from unet_course.data.synthetic import SyntheticSegmentation
from unet_course.errors import CheckpointError
from unet_course.training import fit

pytestmark = pytest.mark.usefixtures("one_thread")


def loaders(n_train: int = 16, n_val: int = 8, size: int = 32, batch: int = 4):
    train = SyntheticSegmentation(n_train, size, seed=0, split="train")
    val = SyntheticSegmentation(n_val, size, seed=0, split="val")
    return (DataLoader(train, batch_size=batch, shuffle=True, generator=torch.Generator()),
            DataLoader(val, batch_size=batch))


def tiny_cfg(tmp_path, name: str, **kw) -> TrainConfig:
    values = dict(epochs=2, base_channels=4, depth=2, batch_size=4, amp="off", progress="none",
                  out_dir=str(tmp_path / name), seed=0)
    values.update(kw)
    return TrainConfig(**values)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run shared by the tests below. 下面的测试共用的一次小训练"""
    tmp = tmp_path_factory.mktemp("ckpt")
    torch.set_num_threads(1)
    tl, vl = loaders()
    history = fit(tiny_cfg(tmp, "run", epochs=1), train_loader=tl, val_loader=vl)
    return tmp / "run", history


def test_weights_only_round_trip(trained):
    out, history = trained
    raw = torch.load(out / "last.pt", map_location="cpu", weights_only=True)   # 不需要 pickle 任意对象
    for key in ("format_version", "model_config", "model_state", "mask_values", "class_names", "normalization",
                "preprocess", "train_config", "versions", "epoch", "global_step", "optimizer_state",
                "scheduler_state", "scaler_state", "rng_state", "best_metric", "wandb_run_id", "history"):
        assert key in raw, key
    assert raw["mask_values"] == [0, 255]
    assert raw["epoch"] == 1 and raw["global_step"] == 4
    assert isinstance(raw["rng_state"]["numpy"][1], list)
    model, meta = load_model(out / "best.pt")
    assert not model.training
    assert meta["model_config"]["base_channels"] == 4 and meta["preprocess"]["mode"] == "multiclass"
    assert meta["normalization"]["mean"] and meta["train_config"]["epochs"] == 1
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (1, 2, 32, 32)
    # 重建的模型与保存的权重完全一致
    saved = load_checkpoint(out / "best.pt")["model_state"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_truncated_checkpoint_gives_clear_error(trained, tmp_path):
    out, _ = trained
    data = (out / "last.pt").read_bytes()
    broken = tmp_path / "last.pt"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(broken)
    msg = str(err.value)
    assert str(broken) in msg and "truncated or corrupt" in msg and "Pass a good checkpoint" in msg


def test_missing_checkpoint_and_bare_state_dict(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    bare = tmp_path / "bare.pt"
    torch.save({"w": torch.zeros(2)}, bare)
    with pytest.raises(CheckpointError, match=r"not a unet-course checkpoint.*weights only \(a bare state_dict"):
        load_checkpoint(bare)


def test_empty_random_and_folder_give_clear_errors(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"truncated or corrupt \(the file is empty, 0 bytes\)"):
        load_checkpoint(empty)
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(noise)
    assert "truncated or corrupt" in str(err.value) and "1024 bytes" in str(err.value)
    assert "pickled" not in str(err.value)
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(run)
    msg = str(err.value)
    assert "is a folder" in msg and str(run / "last.pt") in msg and "does not exist" not in msg


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"model_state": {}, "when": datetime.date(2024, 1, 1)}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(path)


def test_save_follows_umask_and_removes_stale_temporaries(trained, tmp_path):
    out, _ = trained
    state = load_checkpoint(out / "last.pt")
    stale = tmp_path / ".last.pt.deadbeef.tmp"          # kill -9 在写入中途留下的临时文件
    stale.write_bytes(b"half a checkpoint")
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "last.pt", state)
    finally:
        os.umask(old)
    assert (tmp_path / "last.pt").stat().st_mode & 0o777 == 0o644       # 遵循 umask，而不是 mkstemp 的 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_failed_save_keeps_previous_file(trained, tmp_path, monkeypatch):
    out, _ = trained
    target = tmp_path / "last.pt"
    target.write_bytes((out / "last.pt").read_bytes())
    before = sha(target)
    state = load_checkpoint(target)

    def exploding_save(obj, f, *a, **k):
        f.write(b"partial bytes")           # 写到一半失败
        raise OSError("disk full")

    monkeypatch.setattr("unet_course.checkpoint.torch.save", exploding_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(target, state)
    assert sha(target) == before                                  # 旧文件完好
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]    # 没有残留临时文件
    monkeypatch.undo()
    load_checkpoint(target)


def test_refuses_non_finite_weights(trained, tmp_path):
    out, _ = trained
    state = load_checkpoint(out / "last.pt")
    name = next(k for k, v in state["model_state"].items() if v.is_floating_point())
    state["model_state"][name] = state["model_state"][name].clone().fill_(float("nan"))
    with pytest.raises(CheckpointError, match="NaN"):
        save_checkpoint(tmp_path / "bad.pt", state)
    assert not (tmp_path / "bad.pt").exists()


def test_rng_state_round_trip():
    state = capture_rng_state()
    a = (torch.rand(3), __import__("numpy").random.rand(2).tolist(), __import__("random").random())
    restore_rng_state(state)
    b = (torch.rand(3), __import__("numpy").random.rand(2).tolist(), __import__("random").random())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_exact_resume_with_persistent_dataloader_workers(tmp_path):
    """The same with the package's own loaders and two workers, which live from one epoch to the next. Their random
    state ran on across epochs and the reused iterator skipped the generator draw a new one takes, so from the
    first resumed epoch on the crops, flips and shuffle differed from the run that never stopped.
    使用本包的数据加载器与两个常驻工作进程时，续训同样逐位一致（以前续训后的增强与打乱顺序都不同）
    """
    kw = dict(deterministic=True, num_workers=2, train_samples=16, val_samples=8, image_size=32)
    straight = fit(tiny_cfg(tmp_path, "straight", epochs=4, **kw))
    fit(tiny_cfg(tmp_path, "resumed", epochs=2, **kw))
    resumed = fit(tiny_cfg(tmp_path, "resumed", epochs=4, resume="last", **kw))
    assert straight.train_loss == resumed.train_loss and resumed.epoch == [1, 2, 3, 4]
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model_state"]
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")["model_state"]
    assert all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_exact_resume(tmp_path, amp):
    """4 epochs straight == 2 epochs + resume + 2 epochs, bit for bit. 连续训练 4 轮与 2+2 轮续训逐位一致"""
    kw = dict(amp=amp, deterministic=True, epochs=4)
    tl, vl = loaders()
    straight = fit(tiny_cfg(tmp_path, "straight", **kw), train_loader=tl, val_loader=vl)
    tl, vl = loaders()
    fit(tiny_cfg(tmp_path, "resumed", **{**kw, "epochs": 2}), train_loader=tl, val_loader=vl)
    tl, vl = loaders()                       # 新的 loader 与生成器，如同新进程
    resumed = fit(tiny_cfg(tmp_path, "resumed", **kw, resume="last"), train_loader=tl, val_loader=vl)

    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["epoch"] == b["epoch"] == 4 and a["global_step"] == b["global_step"] == 16
    assert a["model_state"].keys() == b["model_state"].keys()
    for name in a["model_state"]:
        assert torch.equal(a["model_state"][name], b["model_state"][name]), name
    assert straight.train_loss == resumed.train_loss
    assert straight.val_dice == resumed.val_dice
    assert resumed.epoch == [1, 2, 3, 4]
