"""Data-parallel training: two CPU processes (gloo) end with the same weights; only rank 0 writes.
数据并行训练：两个 CPU 进程（gloo）结束时权重相同；只有 0 号进程写文件
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unet_course.checkpoint import load_checkpoint
from unet_course.distributed import DEBUG_DUMP_ENV, DistInfo, ShardSampler, distributed_loaders, env_info

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
def test_env_info_reads_torchrun_variables(monkeypatch, rank):
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    info = env_info()
    assert info.enabled and info.rank == rank and info.is_main == (rank == 0)
