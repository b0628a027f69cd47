"""Data-parallel training: two CPU processes (gloo) end with the same weights; only rank 0 writes.
数据并行训练：两个 CPU 进程（gloo）结束时权重相同；只有 0 号进程写文件
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from unet_course.checkpoint import load_checkpoint, load_model
from unet_course.config import TrainConfig
from unet_course.data.synthetic import SyntheticSegmentation
from unet_course.distributed import (
    DEBUG_DUMP_ENV,
    DistInfo,
    EpochShardSampler,
    ShardSampler,
    distributed_loaders,
    env_info,
)
from unet_course.losses import SegmentationLoss
from unet_course.training import evaluate, fit

REPO = Path(__file__).resolve().parents[1]


def test_single_process_defaults(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = env_info()
    assert info == DistInfo() and not info.enabled and info.is_main
    loader = torch.utils.data.DataLoader(list(range(10)), batch_size=2)
    assert distributed_loaders(loader, loader, info, seed=0) == (loader, loader)   # 单进程时不变


def test_shard_sampler_covers_every_index_once():
    shards = [list(ShardSampler(10, r, 3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(10))
    assert [len(s) for s in shards] == [4, 3, 3]


def test_two_process_gloo_training(tmp_path):
    out, dump = tmp_path / "out", tmp_path / "dump"
    env = {**os.environ, DEBUG_DUMP_ENV: str(dump), "OMP_NUM_THREADS": "1", "UNET_COURSE_QUIET": "1",
           "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "unet_course", "train", "--dataset", "synthetic", "--image-size", "32", "--train-samples", "16",
           "--val-samples", "8", "--base-channels", "4", "--depth", "2", "--batch-size", "4", "--epochs", "1",
           "--max-steps", "2", "--amp", "off", "--device", "cpu", "--num-workers", "0", "--out-dir", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    rank0 = torch.load(dump / "rank0.pt", weights_only=True)
    rank1 = torch.load(dump / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name        # 两个进程的权重（含 BN 统计量）完全相同

    # 只有 0 号进程写文件：一个 last.pt，没有临时文件或重复文件
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.json", "last.pt", "metrics.json",
                                                     "metrics.jsonl"]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["global_step"] == 2
    assert not any(k.startswith("module.") for k in ckpt["model_state"])
    for name, value in ckpt["model_state"].items():
        assert torch.equal(value, rank0[name]), name
    report = json.loads((out / "metrics.json").read_text())
    assert report["hardware"]["world_size"] == 2
    assert report["final"]["val_metrics"]["n_images"] == 8            # 两个进程各评估 4 张，汇总后为 8
    assert report["final"]["val_metrics"]["n_pixels"] == 8 * 32 * 32
    assert proc.stdout.count("best val Dice") == 1                   # 只有 0 号进程打印结果


@pytest.mark.parametrize("rank", [0, 1])
def test_a_one_process_command_under_torchrun_is_refused_once(monkeypatch, tmp_path, capsys, rank):
    """``torchrun -m unet_course predict`` ran the whole prediction in every process, each writing the same files.
    以前 torchrun 下的 predict 会在每个进程中完整运行一遍
    """
    from unet_course import cli

    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "masks"
    assert cli.main(["predict", "-m", str(tmp_path / "any.pt"), "-i", str(tmp_path / "a.png"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert not out.exists()
    if rank == 0:                                                   # one message for the job, not one per rank
        assert err.startswith("error: `predict` runs in one process") and "without torchrun" in err
    else:
        assert err == ""


@pytest.mark.parametrize("rank", [0, 1])
def test_env_info_reads_torchrun_variables(monkeypatch, rank):
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    info = env_info()
    assert info.enabled and info.rank == rank and info.is_main == (rank == 0)


# ----------------------------------------------------------------------------------------------------------------
# Per-rank share of samples_per_epoch; a validation set smaller than the number of ranks
# 每个进程分到 samples_per_epoch 的一份；验证集比进程数少
# ----------------------------------------------------------------------------------------------------------------
def test_epoch_shard_sampler_deals_out_one_epoch():
    base = RandomSampler(range(10), num_samples=40)
    ranks = [EpochShardSampler(base, r, 2, seed=3) for r in range(2)]
    for s in ranks:
        s.set_epoch(1)
    epoch1 = [list(s) for s in ranks]
    assert [len(x) for x in epoch1] == [20, 20]                       # 40 个样本，每个进程 20 个
    assert Counter(epoch1[0] + epoch1[1]) == {i: 4 for i in range(10)}  # 合起来 = 4 个完整排列
    assert epoch1[0] != epoch1[1]
    again = EpochShardSampler(RandomSampler(range(10), num_samples=40), 0, 2, seed=3)
    again.set_epoch(1)
    assert list(again) == epoch1[0]                                   # 只取决于 (seed, epoch)：续训可精确重现
    again.set_epoch(2)
    assert list(again) != epoch1[0]                                   # 每轮重新抽取
    odd = EpochShardSampler(RandomSampler(range(5), num_samples=7), 1, 2, seed=0)
    assert len(odd) == 4 and len(list(odd)) == 4                      # 补齐到 world 的整数倍，各进程步数相同


def test_train_sampler_keeps_the_single_process_semantics():
    data = list(range(10))
    info = DistInfo(rank=1, world_size=2)
    spe = DataLoader(data, batch_size=2, sampler=RandomSampler(data, num_samples=40), drop_last=True)
    train, _ = distributed_loaders(spe, None, info, seed=0)
    assert isinstance(train.sampler, EpochShardSampler) and len(train) == 10   # 原来是 DistributedSampler 的 2 步
    plain = DataLoader(data, batch_size=2, shuffle=True)
    assert len(distributed_loaders(plain, None, info, seed=0)[0]) == 3          # 5 个样本 -> 3 个批量
    ordered = DataLoader(data, batch_size=2, sampler=SequentialSampler(data))
    assert list(distributed_loaders(ordered, None, info, seed=0)[0].sampler) == [1, 3, 5, 7, 9]   # 不打乱
    small = DataLoader(data[:3], batch_size=4, sampler=RandomSampler(data[:3], num_samples=6), drop_last=True)
    assert len(distributed_loaders(small, None, info, seed=0)[0]) == 1          # 每个进程 3 个 < 批量，仍走一步


class _Recording(SyntheticSegmentation):
    """Writes each index it serves to ``log`` (one list per epoch is cut out of it later). 记录取过的索引"""

    log: list[int]

    def __getitem__(self, index):
        self.log.append(int(index))
        return super().__getitem__(index)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train = _Recording(10, 32, seed=0, split="train")
    train.log = []
    val = SyntheticSegmentation(1, 32, seed=0, split="val")            # 1 张验证图像，2 个进程
    sampler = RandomSampler(train, num_samples=40, generator=torch.Generator())   # samples_per_epoch=40
    loaders = (DataLoader(train, batch_size=2, sampler=sampler, drop_last=True), DataLoader(val, batch_size=2))
    cfg = TrainConfig(epochs=2, base_channels=4, depth=2, batch_size=2, amp="off", progress="none", device="cpu",
                      out_dir=out, seed=0, num_workers=0)
    history = fit(cfg, train_loader=loaders[0], val_loader=loaders[1])
    torch.save({"indices": train.log, "global_step": history.global_step, "metrics": history.val_metrics[-1]},
               Path(out) / f"seen{rank}.pt")


def test_two_process_samples_per_epoch_and_a_one_item_val_set(tmp_path):
    """Items 1 and 2 of issue #12 in one 2-process gloo run: each rank takes 10 steps per epoch (40 samples, batch 2;
    DistributedSampler gave 2), and a 1-item val set (rank 1's shard is empty) gives the single-process metrics.
    双进程 gloo：每个进程每轮 10 步（以前为 2 步）；只有 1 张验证图像时，指标与单进程评估相同
    """
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    seen = [torch.load(out / f"seen{r}.pt", weights_only=True) for r in range(2)]
    assert [s["global_step"] for s in seen] == [20, 20]                  # 2 轮 × 10 步，两个进程相同
    for epoch in range(2):
        shares = [s["indices"][epoch * 20:(epoch + 1) * 20] for s in seen]
        assert Counter(shares[0] + shares[1]) == {i: 4 for i in range(10)}   # 合起来是 40 个样本
        assert shares[0] != shares[1]                                       # 各进程样本不同
    assert seen[0]["indices"][:20] != seen[0]["indices"][20:]               # 每轮重新抽取
    model, _ = load_model(out / "last.pt")
    val = DataLoader(SyntheticSegmentation(1, 32, seed=0, split="val"), batch_size=2)
    single = evaluate(model, val, SegmentationLoss(), torch.device("cpu"), n_classes=2)
    for rank in range(2):
        ddp = seen[rank]["metrics"]
        assert ddp["n_images"] == 1 and ddp["n_pixels"] == single["n_pixels"]
        assert ddp["dice"] == pytest.approx(single["dice"], abs=1e-6)
        assert ddp["loss"] == pytest.approx(single["loss"], rel=1e-5)


def test_the_stop_message_of_a_torchrun_job_resumes_with_torchrun():
    """A data-parallel run stopped by its scheduler told the user to resume with plain ``unet-course``.
    以前分布式训练被停止时，消息给出的是单进程的续训命令
    """
    import signal
    from types import SimpleNamespace

    from unet_course.training.fit import stop_message

    run = SimpleNamespace(kept=(Path("runs/ddp/last.pt"), 3), dinfo=SimpleNamespace(world_size=2))
    assert stop_message(run, signal.SIGTERM).endswith(
        "Continue with: torchrun <the same options> -m unet_course train --resume runs/ddp/last.pt")
    run.dinfo.world_size = 1
    assert stop_message(run, signal.SIGINT).startswith("Training was stopped by Ctrl-C (SIGINT) after epoch 3;")
    assert stop_message(run).endswith("Continue with: unet-course train --resume runs/ddp/last.pt")
