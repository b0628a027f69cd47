"""Bad input and bad luck during training: each case gives one clear message and loses no input or checkpoint.
训练中的错误输入与意外：每种情况给出一条清楚的消息，且不丢失任何输入或检查点

A full disk, a one-image data set, SIGTERM from a job scheduler, a bad time budget (the resume refusals are in
tests/test_resume.py, the DDP cases in tests/test_distributed.py).
磁盘写满、只有一张图像的数据集、作业调度器的 SIGTERM、错误的时间预算
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_carvana_fixture

from unet_course import files, tracking
from unet_course.checkpoint import load_checkpoint
from unet_course.cli import main
from unet_course.config import TrainConfig
from unet_course.errors import ConfigError
from unet_course.training import TrainingStopped, fit

REPO = Path(__file__).resolve().parents[1]

#: The flags of a tiny CLI run. 小规模命令行运行的参数
FLAGS = ["--image-size", "32", "--train-samples", "8", "--val-samples", "4", "--base-channels", "4", "--depth", "2",
         "--batch-size", "4", "--amp", "off", "--device", "cpu", "--num-workers", "0", "--progress", "none"]


pytestmark = pytest.mark.usefixtures("one_thread")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# A full disk 磁盘写满
# ----------------------------------------------------------------------------------------------------------------
class _FullDisk:
    """A file handle whose writes fail with ENOSPC, as on a full disk. 写入时报 ENOSPC 的文件句柄"""

    def __init__(self, handle) -> None:
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self.handle.fileno()


def _fail_writes_of(monkeypatch, marker: str, nth: int) -> None:
    """From the ``nth`` atomic write whose temporary name holds ``marker`` on, writes fail with ENOSPC.
    从第 nth 次写入名称含 marker 的临时文件开始，写入失败（ENOSPC）
    """
    real_fdopen, count = os.fdopen, [0]

    def fdopen(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        if marker in os.readlink(f"/proc/self/fd/{fd}"):
            count[0] += 1
            if count[0] >= nth:
                return _FullDisk(handle)
        return handle

    monkeypatch.setattr(files.os, "fdopen", fdopen)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name the file being written")
@pytest.mark.parametrize("marker, nth, what", [(".last.pt.", 2, "checkpoint"), (".history.json.", 2, "history"),
                                               (".metrics.json.", 1, "metrics report")])
def test_disk_full_during_training(tmp_path, monkeypatch, capsys, marker, nth, what):
    out = tmp_path / "run"
    _fail_writes_of(monkeypatch, marker, nth)
    assert main(["train", *FLAGS, "--epochs", "2", "--max-steps", "1", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: Could not write the {what} ")   # 一行，无回溯
    assert f"the disk holding {str(out)!r} is full (" in err and " free). Free some space" in err
    assert load_checkpoint(out / "last.pt")["epoch"] >= 1                                  # 上一轮的检查点仍可加载
    assert not list(out.glob(".*.tmp"))                                                    # 没有遗留临时文件


def test_disk_full_in_the_metrics_log(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    calls = [0]

    def full_open(path, mode="r", *args, **kwargs):
        calls[0] += 1
        if calls[0] >= 2:                                     # 第 2 行开始磁盘已满
            raise OSError(errno.ENOSPC, "No space left on device")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(tracking, "open", full_open, raising=False)
    assert main(["train", *FLAGS, "--epochs", "3", "--max-steps", "1", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metrics log" in err and f"{str(out)!r} is full" in err
    assert load_checkpoint(out / "last.pt")["epoch"] >= 1


def test_a_file_no_run_wrote_is_not_overwritten_and_a_new_run_starts_its_own_log(tmp_path, capsys):
    """``train --out-dir .`` beside a project's own metrics.json overwrote it; and a second run in one folder
    appended its lines to the first run's metrics.jsonl, so reading the log back mixed two runs.
    以前会覆盖输出目录中不是训练写出的同名文件；同一目录中的新运行会接在旧运行的 metrics.jsonl 之后
    """
    out = tmp_path / "project"
    out.mkdir()
    for name, text in (("metrics.json", '{"accuracy": 0.9}'), ("history.json", "[1, 2]"),
                       ("metrics.jsonl", "my notes\n"), ("best.pt", "not a checkpoint")):
        (out / name).write_text(text)
        assert main(["train", *FLAGS, "--epochs", "1", "--max-steps", "1", "--out-dir", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"holds '{out / name}', which no training run wrote" in err and "another --out-dir" in err
        assert (out / name).read_text() == text and not (out / "last.pt").exists()
        (out / name).unlink()
    run = tmp_path / "run"
    for epochs in (2, 1):                                     # an earlier run's files are replaced, log included
        assert main(["train", *FLAGS, "--epochs", str(epochs), "--max-steps", "1", "--out-dir", str(run)]) == 0
    rows = tracking.read_metrics_jsonl(run)
    assert {row["epoch"] for row in rows if "epoch" in row} == {1} and rows[0]["step"] == 1
    assert main(["train", *FLAGS, "--epochs", "2", "--max-steps", "1", "--resume", "last", "--out-dir", str(run)]) == 0
    assert {row["epoch"] for row in tracking.read_metrics_jsonl(run) if "epoch" in row} == {1, 2}   # resume appends


# ----------------------------------------------------------------------------------------------------------------
# A one-image data set; training without validation 只有一张图像；不做验证的训练
# ----------------------------------------------------------------------------------------------------------------
def test_one_image_data_set_says_what_to_do(tmp_path):
    root = write_carvana_fixture(tmp_path / "carvana", n=1)
    before = {p: sha(p) for p in root.rglob("*") if p.is_file()}
    cfg = dict(dataset="carvana", data_dir=str(root), batch_size=1, base_channels=4, depth=2, amp="off",
               progress="none", device="cpu", num_workers=0, out_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError) as err:
        fit(TrainConfig(**cfg))
    msg = str(err.value)
    assert "val_fraction=0.2 on 1 item(s)" in msg and "--val-fraction 0" in msg and "0.00" not in msg
    history = fit(TrainConfig(**cfg, val_fraction=0.0, samples_per_epoch=2, epochs=2))     # 照消息去做：能训练
    assert history.monitor == "train_loss" and history.best_epoch in (1, 2)
    assert history.best_metric == min(history.train_loss)
    assert {p: sha(p) for p in root.rglob("*") if p.is_file()} == before                  # 输入未被改动



def test_whole_images_of_different_sizes_are_refused_before_training_with_the_flag_that_fixes_it(tmp_path):
    import numpy as np
    from PIL import Image

    from unet_course.data import build_loaders

    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for i in range(6):
        h, w = 32 + 8 * (i % 2), 40                        # two sizes 两种尺寸
        mask = np.zeros((h, w), np.uint8)
        mask[4:20, 6:30] = 255
        Image.fromarray(np.stack([mask] * 3, -1)).save(tmp_path / "data" / "images" / f"{i}.png")
        Image.fromarray(mask).save(tmp_path / "data" / "masks" / f"{i}.png")
    cfg = dict(dataset="folder", data_dir=str(tmp_path / "data"), dataset_options={"mask_suffix": ""},
               batch_size=2, base_channels=4, depth=2, num_workers=0)
    with pytest.raises(ConfigError) as err:                # before: a collate error at the first batch 之前：首批才报错
        build_loaders(TrainConfig(**cfg))
    assert "differ in size" in str(err.value) and "--crop-size N" in str(err.value) and "--batch-size 1" in str(err.value)
    for fix, batch in ((dict(crop_size=32), (2, 3, 32, 32)), (dict(batch_size=1), (1, 3))):  # each fix gives batches
        train_loader, _, _ = build_loaders(TrainConfig(**{**cfg, **fix}))           # 两种修正都能取到批次
        for item in train_loader:
            assert tuple(item["image"].shape[: len(batch)]) == batch


def test_training_without_validation_picks_best_by_training_loss(tmp_path, caplog):
    root = write_carvana_fixture(tmp_path / "carvana", n=3)
    cfg = TrainConfig(dataset="carvana", data_dir=str(root), val_fraction=0.0, batch_size=2, samples_per_epoch=4,
                      epochs=3, base_channels=4, depth=2, amp="off", progress="line", device="cpu", num_workers=0,
                      scheduler="plateau", out_dir=str(tmp_path / "run"))
    with caplog.at_level("INFO", logger="unet_course"):
        history = fit(cfg)
    text = "\n".join(caplog.messages)
    assert "3 train, 0 val" in text and "best.pt on a new best train loss: no validation split" in text
    assert "(no validation)" in text and "Finished: best train loss" in text
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["best"]["monitor"] == "train_loss" and report["best"]["val_dice"] is None
    assert report["best"]["value"] == pytest.approx(min(history.train_loss))
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == history.best_epoch
    sched = load_checkpoint(tmp_path / "run" / "last.pt")["scheduler_state"]
    assert sched["mode"] == "min"                                  # ReduceLROnPlateau 监控训练损失


def test_drive_trains_on_all_20_images_without_validation(tmp_path, drive_root):
    cfg = TrainConfig(dataset="drive", data_dir=str(drive_root), val_fraction=0.0, crop_size=64, batch_size=2,
                      samples_per_epoch=2, epochs=1, max_steps=1, base_channels=4, depth=2, amp="off",
                      progress="none", device="cpu", num_workers=0, out_dir=str(tmp_path / "run"))
    history = fit(cfg)
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["data"]["n_train"] == 20 and report["data"]["n_val"] == 0
    assert history.monitor == "train_loss" and (tmp_path / "run" / "best.pt").is_file()


# ----------------------------------------------------------------------------------------------------------------
# SIGTERM 作业调度器的停止信号
# ----------------------------------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNET_COURSE_QUIET": "1", "WANDB_MODE": "disabled",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    return env


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize(("signum", "how", "workers"), [(signal.SIGTERM, "SIGTERM", "0"),
                                                        (signal.SIGTERM, "SIGTERM", "2"),
                                                        (signal.SIGINT, "Ctrl-C (SIGINT)", "2")])
def test_stop_signal_keeps_the_last_checkpoint_and_names_the_resume_command(tmp_path, signum, how, workers):
    """The signal goes to the whole process group, as Ctrl-C and schedulers send it. With DataLoader workers a
    worker killed by it used to add PyTorch's "DataLoader worker ... is killed by signal" tracebacks after the
    message, and Ctrl-C gave a general line instead of the checkpoint kept.
    信号发给整个进程组（与 Ctrl-C 和作业调度器相同）；以前有数据加载进程时消息后会出现 PyTorch 的回溯
    """
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "unet_course", "train", *FLAGS, "--num-workers", workers, "--train-samples", "64",
           "--epochs", "500", "--out-dir", str(out)]                 # the later flags win 后给出的参数优先
    # its own process group, signalled as a whole; fit's handler works even where a background job ignores SIGINT
    # 独立的进程组，整组发送信号；即使后台任务忽略 SIGINT，fit 的处理函数仍然有效
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    _wait_for(out / "history.json", proc)                        # 第 1 轮的文件已写完
    time.sleep(0.5)                                              # in the middle of an epoch, workers running 轮中
    os.killpg(proc.pid, signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: Training was stopped by {how} after epoch "), lines
    epoch = int(lines[0].split("after epoch ")[1].split(";")[0])
    assert f"the last complete checkpoint {str(out / 'last.pt')!r} (epoch {epoch}) is kept" in lines[0]
    assert lines[0].endswith(f"Continue with: unet-course train --resume {out / 'last.pt'}")
    assert load_checkpoint(out / "last.pt")["epoch"] == epoch                              # 没有半轮的检查点
    assert json.loads((out / "history.json").read_text())["epoch"][-1] == epoch
    assert not list(out.glob(".*.tmp"))
    assert main(["train", "--resume", str(out / "last.pt"), "--epochs", str(epoch + 1)]) == 0   # 按消息续训
    assert load_checkpoint(out / "last.pt")["epoch"] == epoch + 1


_SLOW_DATA = """
import sys, time, torch
from torch.utils.data import DataLoader
from unet_course.config import TrainConfig
from unet_course.data.synthetic import SyntheticSegmentation
from unet_course.training import TrainingStopped, fit

class Slow(SyntheticSegmentation):
    slow = False
    def __getitem__(self, i):
        if Slow.slow:
            time.sleep(600)                    # 等数据时收到 SIGTERM
        return super().__getitem__(i)

def after_first(state):
    Slow.slow = True

train = Slow(8, 32, seed=0, split="train")
val = SyntheticSegmentation(4, 32, seed=0, split="val")
cfg = TrainConfig(epochs=5, base_channels=4, depth=2, batch_size=4, amp="off", progress="none", device="cpu",
                  out_dir=sys.argv[1])
try:
    fit(cfg, train_loader=DataLoader(train, batch_size=4), val_loader=DataLoader(val, batch_size=4),
        callbacks=[after_first])
except TrainingStopped as exc:
    print(exc, file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def test_sigterm_while_waiting_for_data_stops_at_once(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_DATA, str(out)], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(out / "history.json", proc)
    time.sleep(0.5)                                              # 此时正在等待第 2 轮的数据
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and time.monotonic() - sent < 20, stderr[-3000:]
    assert "after epoch 1" in stderr and load_checkpoint(out / "last.pt")["epoch"] == 1


def test_a_worker_that_ended_just_before_the_stop_is_not_reported(monkeypatch):
    """A SIGCHLD (a DataLoader worker ending) pending when the stop signal is handled: with SIGCHLD reset to its
    default, Python printed "OSError: Signal 17 ignored due to race condition" with a traceback (seen under
    torchrun). Both signals are made pending together, so the race happens every time.
    停止信号处理时已有待处理的 SIGCHLD：以前 Python 会打印 "Signal 17 ignored due to race condition"
    """
    from unet_course.training.stop import StopOnSignal

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    old_child = signal.signal(signal.SIGCHLD, lambda signum, frame: None)    # PyTorch's handler stands here
    try:
        with pytest.raises(TrainingStopped, match="stopped"):
            with StopOnSignal(lambda signum: "stopped", (signal.SIGUSR1,)):
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGCHLD})
                os.kill(os.getpid(), signal.SIGCHLD)
                os.kill(os.getpid(), signal.SIGUSR1)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1, signal.SIGCHLD})   # both at once
                for _ in range(1000):                                 # the handlers run between bytecodes
                    time.sleep(0)
        for _ in range(1000):                                         # the pending SIGCHLD is handled now
            time.sleep(0)
    finally:
        signal.signal(signal.SIGCHLD, old_child)
    assert reported == []


def test_fit_ends_its_loader_workers_before_it_returns(tmp_path):
    """The loaders' persistent workers outlived ``fit`` until the garbage collector ran (the stop handler refers
    back to the run), so ``cv``'s next fold forked copies of them and printed "AssertionError: can only test a
    child process" four times per fold. The collector is off here, so only ``fit`` itself can end them.
    以前 fit 返回后数据加载进程仍然存活，直到垃圾回收；cv 的下一折会复制它们并报错
    """
    import gc
    import multiprocessing

    cfg = TrainConfig(epochs=1, image_size=32, train_samples=8, val_samples=4, base_channels=4, depth=2,
                      batch_size=4, amp="off", progress="none", device="cpu", num_workers=1,
                      out_dir=str(tmp_path / "run"))
    gc.collect()
    gc.disable()
    try:
        fit(cfg)
        assert multiprocessing.active_children() == []
    finally:
        gc.enable()


def test_fit_restores_the_previous_sigterm_handler(tmp_path):
    def mine(signum, frame):
        pass

    old = signal.signal(signal.SIGTERM, mine)
    try:
        fit(TrainConfig(epochs=1, image_size=32, train_samples=4, val_samples=4, base_channels=4, depth=2,
                        batch_size=4, amp="off", progress="none", device="cpu", out_dir=str(tmp_path / "run")))
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)


# ----------------------------------------------------------------------------------------------------------------
# Time budget 时间预算
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget, says", [(0, "must be a number of seconds > 0 (or None), got 0.0"),
                                          (-5, "must be a number of seconds > 0 (or None), got -5.0"),
                                          (float("inf"), "must be a finite number or None, got inf"),
                                          (float("nan"), "must be a finite number or None, got nan")])
def test_bad_time_budget(budget, says):
    with pytest.raises(ConfigError) as err:
        TrainConfig(time_budget=budget)
    assert "time_budget" in str(err.value) and says in str(err.value)


def test_bad_time_budget_flag(capsys, tmp_path):
    assert main(["train", "--time-budget", "-1", "--out-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == "error: time_budget must be a number of seconds > 0 (or None), got -1.0.\n"
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").iterdir())     # 什么都没写


def test_a_worker_does_not_report_the_connection_the_stopping_main_process_dropped(monkeypatch, capsys):
    """About one Ctrl-C in fifteen with two workers printed a worker's ``ConnectionResetError`` traceback (its
    file-descriptor server lost the stopping main process mid-batch) after the stop message; other errors still
    show. 主进程停止时工作进程的连接错误不再打印回溯，其他错误照常显示
    """
    from unet_course.data import workers

    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    monkeypatch.setattr(workers, "_ACTIVE", None)                # restored after the test 测试后恢复
    workers.WorkerSetup()(0)                                     # what each DataLoader worker runs first
    sys.excepthook(ConnectionResetError, ConnectionResetError(104, "Connection reset by peer"), None)
    sys.excepthook(EOFError, EOFError(), None)
    assert capsys.readouterr().err == ""
    sys.excepthook(ValueError, ValueError("a real error"), None)
    assert "ValueError: a real error" in capsys.readouterr().err


def test_a_threshold_on_data_with_more_than_two_classes_is_refused_not_ignored(tmp_path):
    # it was stored in the checkpoint and ignored: labels of K > 2 classes are the most probable class
    # 过去会被存进检查点却被忽略
    cfg = dict(dataset="synthetic-multiclass", train_samples=8, val_samples=4, image_size=32, batch_size=4,
               base_channels=4, depth=2, epochs=1, amp="off", progress="none", device="cpu", num_workers=0,
               out_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"threshold=0.3 applies to two classes, but the data have 3"):
        fit(TrainConfig(**cfg, threshold=0.3))
    assert not (tmp_path / "run" / "last.pt").exists()
    assert fit(TrainConfig(**cfg)).best_epoch == 1                       # the default threshold trains 默认阈值可以训练
