"""Data-parallel training with ``torchrun``: one process per device, gradients averaged each step.
用 torchrun 做数据并行：每个设备一个进程，每步对梯度求平均

``torchrun --nproc_per_node=N -m unet_course train ...`` starts ``N`` copies of the same command and sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each one's environment. This module turns those variables into a
process group and the three things data parallelism needs:
torchrun 启动 N 个相同的进程并设置 RANK/WORLD_SIZE/LOCAL_RANK；本模块据此建立进程组，并提供数据并行所需的三件事：

1. a per-rank sampler, so each rank sees a different shard of every epoch: :class:`EpochShardSampler` deals out
   the indices that the single-process sampler draws in that epoch (``samples_per_epoch`` included), and a
   :class:`~torch.utils.data.distributed.DistributedSampler` when the loader simply shuffles; both are reseeded
   from ``(seed, epoch)`` by ``set_epoch``; 每个进程看到每轮数据的不同分片，每轮按 (seed, epoch) 重新打乱
2. :class:`~torch.nn.parallel.DistributedDataParallel`, which all-reduces gradients during ``backward`` so every
   rank takes the same optimiser step (optionally with :class:`~torch.nn.SyncBatchNorm`); 反向传播时同步梯度
3. sum-reductions for validation, so the confusion matrix and loss cover the whole validation set.
   验证时把混淆矩阵与损失求和，得到整个验证集上的指标

Only rank 0 logs, writes checkpoints and talks to wandb. Backend: ``gloo`` on CPU, ``nccl`` on CUDA.
只有 0 号进程写日志、保存检查点并与 wandb 通信；CPU 用 gloo，CUDA 用 nccl

The one rule of collectives: every rank calls every collective, in the same order, whatever its own data
(an empty validation shard still joins the sums) and whatever happened on rank 0 (a failed write is announced
with :func:`main_does`, so the other ranks stop too instead of waiting forever). Values that steer training
(a stop flag, the planned number of epochs) are agreed with :func:`any_rank` / :func:`from_main`.
集合通信的规则：每个进程按相同顺序参加每一次集合通信，与其数据多少无关；0 号进程写文件失败时用 main_does
通知其他进程一起停止；影响训练的取值（停止标志、计划轮数）由 any_rank / from_main 统一
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, RandomSampler, Sampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from .errors import ConfigError, UNetCourseError
from .model import unwrap_model

logger = logging.getLogger("unet_course")

#: When set to a folder, every rank dumps its final ``state_dict`` there (used by the 2-process test).
#: 设置为目录时，每个进程把最终 state_dict 写到该目录（供双进程测试比较权重）
DEBUG_DUMP_ENV = "UNET_COURSE_DDP_DUMP"

T = TypeVar("T")


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 32-bit seed derived from ``(seed, epoch, rank)``; the one rule for per-epoch seeds.
    由 (seed, epoch, rank) 派生的 32 位种子（每轮种子的唯一规则）

    >>> epoch_seed(0, 1) == epoch_seed(0, 1) != epoch_seed(0, 2)
    True
    """
    return int(np.random.SeedSequence([int(seed) % 2**32, int(epoch), int(rank)]).generate_state(1)[0])


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job. 当前进程在任务中的位置

    Attributes:
        rank: global index of this process (0 is the main one). 全局进程编号
        world_size: number of processes. 进程总数
        local_rank: index on this machine; picks the GPU. 本机内编号，用于选择 GPU
        backend: ``"gloo"``, ``"nccl"`` or ``""`` when not distributed. 通信后端
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Read ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` set by ``torchrun`` (defaults: a single process).
    读取 torchrun 设置的环境变量（默认单进程）
    """
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc}); launch with torchrun.") from None
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank. 是否处于多进程分布式训练中"""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """Rank 0, or a single process. 是否为 0 号进程（或单进程）"""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def setup(device: torch.device) -> tuple[DistInfo, torch.device, bool]:
    """Initialise the process group when launched by ``torchrun``.
    若由 torchrun 启动则初始化进程组

    Args:
        device: the device picked for this run; on CUDA each rank moves to ``cuda:LOCAL_RANK``.
            本次运行的设备；CUDA 上每个进程使用 cuda:LOCAL_RANK

    Returns:
        ``(info, device, created)``: ``created`` is True when this call made the group (and so the caller must
        call :func:`cleanup`). 若本次调用创建了进程组则 created 为 True，调用者负责清理
    """
    info = env_info()
    if not info.enabled:
        return info, device, False
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed support.")
    if device.type == "cuda":
        if info.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={info.local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                "use --nproc_per_node <= the number of GPUs."
            )
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"   # CPU（以及 MPS）上使用 gloo
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        created = True
    info = DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=info.local_rank,
                    backend=dist.get_backend())
    return info, device, created


def cleanup(created: bool = True) -> None:
    """Destroy the process group if this run created it. 若进程组由本次运行创建则销毁它"""
    if created and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (a no-op in a single process). 等待所有进程（单进程时不做任何事）"""
    if is_distributed():
        dist.barrier()


# ----------------------------------------------------------------------------------------------------------------
# Model 模型
# ----------------------------------------------------------------------------------------------------------------
def wrap_model(model: torch.nn.Module, info: DistInfo, device: torch.device,
               sync_batchnorm: bool = False) -> torch.nn.Module:
    """Wrap ``model`` in DDP (after optional SyncBatchNorm conversion); unchanged when not distributed.
    用 DDP 包装模型（可选先转换为 SyncBatchNorm）；非分布式时原样返回

    DDP broadcasts rank 0's weights at construction, so every rank starts from the same parameters.
    DDP 构造时广播 0 号进程的权重，所有进程从相同参数开始
    """
    if not info.enabled:
        return model
    if sync_batchnorm and device.type != "cuda":
        logger.warning("sync_batchnorm needs CUDA (torch's SyncBatchNorm runs on GPUs only); on %s each rank keeps "
                       "its own BatchNorm statistics and rank 0's are broadcast at the end of every epoch.",
                       device.type)
    elif sync_batchnorm:
        # 把 BatchNorm 换成跨进程同步统计量的 SyncBatchNorm
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def broadcast_buffers(model: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running stats) to every rank.
    把 src 进程的缓冲区（BatchNorm 运行统计量）复制到所有进程

    DDP syncs buffers at the start of each forward, so after the last step of an epoch each rank still holds the
    stats of its own last batch; calling this at the end of an epoch makes all ranks identical again.
    DDP 在每次前向开始时同步缓冲区，因此每轮结束时各进程的统计量略有不同；轮末调用本函数使其一致
    """
    if not is_distributed():
        return
    for buf in model.buffers():
        dist.broadcast(buf.data, src=src)


# ----------------------------------------------------------------------------------------------------------------
# Data 数据
# ----------------------------------------------------------------------------------------------------------------
class ShardSampler(Sampler[int]):
    """Every ``world_size``-th index starting at ``rank``, without padding (for evaluation).
    评估用的分片采样器：从 rank 开始每隔 world_size 取一个索引，不补齐

    Unlike :class:`DistributedSampler`, no sample is repeated, so summed confusion matrices count each pixel
    exactly once. A rank may get no index at all (fewer items than ranks); it still joins the sums in
    ``evaluate``. 与 DistributedSampler 不同，不会重复样本；某个进程可能分不到样本，但仍参加求和
    """

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, n, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class EpochShardSampler(Sampler[int]):
    """Rank ``r``'s share of what the single-process sampler ``base`` draws in an epoch: items ``r::world``.
    单进程采样器在一轮中抽取的索引，第 r 个进程取其中的 r::world

    Before each epoch ``base`` gets a generator seeded from ``(seed, epoch)`` only (not the rank), so every rank
    draws the same list and takes a different slice of it: together the ranks cover exactly the epoch that a
    single process would train, ``samples_per_epoch`` included (a ``RandomSampler(num_samples=N)`` repeats the
    data set in fresh permutations), and a resumed run draws the same lists again. The list is padded by
    wrapping around to a multiple of ``world``, so every rank takes the same number of steps.
    每轮开始前，base 的随机数发生器只按 (seed, epoch) 设定（与进程号无关），所有进程抽到同一列表并各取一片：
    合起来正好是单进程的一轮（含 samples_per_epoch）；列表循环补齐到 world 的整数倍，各进程步数相同

    Args:
        base: the single-process sampler (``RandomSampler``, ``WeightedRandomSampler``, ...). 单进程采样器
        rank, world_size: this process and the number of processes. 进程号与进程数
        seed: the run's seed. 随机种子

    >>> base = RandomSampler(range(10), num_samples=40)
    >>> shards = [EpochShardSampler(base, r, 2, seed=0) for r in range(2)]
    >>> [len(s) for s in shards], sorted(set(list(shards[0]) + list(shards[1]))) == list(range(10))
    ([20, 20], True)
    """

    def __init__(self, base: Sampler, rank: int, world_size: int, seed: int = 0) -> None:
        self.base, self.rank, self.world_size, self.seed = base, rank, world_size, int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose indices :meth:`__iter__` deals out. 设置轮次"""
        self.epoch = int(epoch)

    def epoch_indices(self) -> list[int]:
        """Every index of this epoch, as a single process would draw them. 本轮全部索引（与单进程相同）"""
        generator = torch.Generator()
        generator.manual_seed(epoch_seed(self.seed, self.epoch))
        if hasattr(self.base, "generator"):
            self.base.generator = generator            # 所有进程使用同一发生器
        with torch.random.fork_rng(devices=[]):       # 不用 generator 的采样器使用全局随机状态
            torch.manual_seed(epoch_seed(self.seed, self.epoch))
            return [int(i) for i in self.base]

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices()
        if not indices:
            return iter([])
        total = len(self) * self.world_size
        padded = (indices * (total // len(indices) + 1))[:total]   # 循环补齐到 world 的整数倍
        return iter(padded[self.rank::self.world_size])

    def __len__(self) -> int:
        return -(-len(self.base) // self.world_size)     # 向上取整


def _rebuild_loader(loader: DataLoader, sampler: Sampler, drop_last: bool) -> DataLoader:
    """Same class, dataset, batch size, workers and collate function, new sampler. 保持其余设置，只替换采样器"""
    workers = loader.num_workers
    return type(loader)(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=drop_last,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers if workers > 0 else False,
        generator=loader.generator,
    )


def train_sampler(loader: DataLoader, info: DistInfo, seed: int) -> Sampler:
    """The per-rank sampler that keeps the single-process epoch of ``loader``. 保持单进程语义的分片采样器

    A plain shuffle (``RandomSampler`` over the whole data set once) becomes a :class:`DistributedSampler`
    shuffled with ``seed + epoch``; a fixed order stays unshuffled; every other sampler (``samples_per_epoch``,
    weighted sampling, custom ones) is dealt out by :class:`EpochShardSampler`.
    普通打乱用 DistributedSampler；顺序采样不打乱；其余采样器（samples_per_epoch 等）用 EpochShardSampler
    """
    base = loader.sampler
    plain = isinstance(base, RandomSampler) and not base.replacement and base._num_samples is None
    if plain or isinstance(base, SequentialSampler):
        return DistributedSampler(loader.dataset, num_replicas=info.world_size, rank=info.rank,
                                  shuffle=plain, seed=seed, drop_last=False)
    return EpochShardSampler(base, info.rank, info.world_size, seed)


def distributed_loaders(train_loader: DataLoader, val_loader: DataLoader | None, info: DistInfo,
                        seed: int) -> tuple[DataLoader, DataLoader | None]:
    """Re-make the loaders from :func:`unet_course.data.build_loaders` with per-rank samplers.
    用每个进程各自的采样器重建数据加载器

    Training uses :func:`train_sampler` (each rank gets ``1/world`` of the single-process epoch; call
    ``sampler.set_epoch(epoch)``); ``drop_last`` stays on only while a rank's share is larger than a batch, so a
    small share still takes a step. Validation uses :class:`ShardSampler`. Unchanged when not distributed.
    训练集每个进程取单进程一轮的 1/world（每轮调用 set_epoch）；验证集用 ShardSampler；非分布式时不变
    """
    if not info.enabled:
        return train_loader, val_loader
    sampler = train_sampler(train_loader, info, seed)
    drop_last = train_loader.drop_last and len(sampler) > (train_loader.batch_size or 1)
    train = _rebuild_loader(train_loader, sampler, drop_last=drop_last)
    val = None
    if val_loader is not None:
        val = _rebuild_loader(val_loader, ShardSampler(len(val_loader.dataset), info.rank, info.world_size),
                              drop_last=False)
    return train, val


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell a per-rank sampler which epoch it is (a no-op for other samplers). 设置采样器的轮次"""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


# ----------------------------------------------------------------------------------------------------------------
# Reductions 归约
# ----------------------------------------------------------------------------------------------------------------
def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place and return it (unchanged in a single process).
    对所有进程的张量求和（原地），单进程时不变

    gloo cannot reduce every dtype on every device, so the sum runs on a float64/int64 copy when needed.
    gloo 不支持所有类型，必要时在 float64/int64 副本上求和
    """
    if not is_distributed():
        return tensor
    work = tensor
    if dist.get_backend() == "gloo" and (tensor.device.type != "cpu" or tensor.dtype not in (torch.float64, torch.int64,
                                                                                             torch.float32)):
        work = tensor.detach().to("cpu", torch.float64 if tensor.is_floating_point() else torch.int64)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    if work is not tensor:
        tensor.copy_(work.to(tensor.device, tensor.dtype))
    return tensor


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on any rank (keeps ranks in step when one must stop).
    任一进程为 True 则所有进程都返回 True（一个进程需要停止时保持同步）
    """
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    all_reduce_sum(t)
    return bool(t.item() > 0)


def from_main(value: float, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank (e.g. the planned number of epochs, which each rank would time alike
    only by luck). 所有进程都得到 0 号进程的取值（如计划轮数）
    """
    if not is_distributed():
        return value
    t = torch.tensor([float(value) if is_main_process() else 0.0], dtype=torch.float64, device=device)
    return float(all_reduce_sum(t).item())


class MainProcessFailed(UNetCourseError):
    """Raised on ranks > 0 when rank 0 failed a step that only it performs (e.g. writing a checkpoint).
    0 号进程独自执行的步骤（如写检查点）失败时，其他进程抛出此错误
    """


def main_does(action: Callable[[], T], device: torch.device, what: str) -> T | None:
    """Run ``action`` on rank 0 only, then tell every rank whether it worked.
    只在 0 号进程执行 action，再告诉所有进程是否成功

    Without this, a checkpoint write that fails on rank 0 (a full disk) leaves the other ranks waiting in the
    next collective until the process group times out. 否则 0 号进程写文件失败时，其他进程会一直等待

    Returns:
        ``action()`` on rank 0, None elsewhere.

    Raises:
        the error of ``action`` on rank 0; :class:`MainProcessFailed` on the other ranks.
    """
    result: Any = None
    failure: BaseException | None = None
    if is_main_process():
        try:
            result = action()
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the other ranks know
            failure = exc
    if any_rank(failure is not None, device):
        if failure is not None:
            raise failure
        raise MainProcessFailed(f"Rank 0 failed while {what}; see its error message. This rank stopped with it.")
    return result


def debug_dump(model: torch.nn.Module) -> Path | None:
    """If ``$UNET_COURSE_DDP_DUMP`` is set, save this rank's ``state_dict`` to ``<dir>/rank<R>.pt``.
    若设置了 UNET_COURSE_DDP_DUMP，则把本进程的 state_dict 保存到 <dir>/rank<R>.pt

    A test hook: comparing the files proves that all ranks finished with the same weights.
    测试用钩子：比较这些文件可证明所有进程的最终权重相同
    """
    folder = os.environ.get(DEBUG_DUMP_ENV)
    if not folder:
        return None
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    path = Path(folder) / f"rank{rank}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}
    torch.save(state, path)
    return path
