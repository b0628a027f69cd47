"""Data-parallel training with ``torchrun``: one process per device, gradients averaged each step.
用 torchrun 做数据并行：每个设备一个进程，每步对梯度求平均

``torchrun --nproc_per_node=N -m unet_course train ...`` starts ``N`` copies of the same command and sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each one's environment. This module turns those variables into a
process group and the three things data parallelism needs:
torchrun 启动 N 个相同的进程并设置 RANK/WORLD_SIZE/LOCAL_RANK；本模块据此建立进程组，并提供数据并行所需的三件事：

1. a :class:`~torch.utils.data.distributed.DistributedSampler`, so each rank sees a different shard of every
   epoch (``set_epoch`` reshuffles per epoch); 每个进程看到每轮数据的不同分片
2. :class:`~torch.nn.parallel.DistributedDataParallel`, which all-reduces gradients during ``backward`` so every
   rank takes the same optimiser step (optionally with :class:`~torch.nn.SyncBatchNorm`); 反向传播时同步梯度
3. sum-reductions for validation, so the confusion matrix and loss cover the whole validation set.
   验证时把混淆矩阵与损失求和，得到整个验证集上的指标

Only rank 0 logs, writes checkpoints and talks to wandb. Backend: ``gloo`` on CPU, ``nccl`` on CUDA.
只有 0 号进程写日志、保存检查点并与 wandb 通信；CPU 用 gloo，CUDA 用 nccl
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from .errors import ConfigError
from .model import unwrap_model

logger = logging.getLogger("unet_course")

#: When set to a folder, every rank dumps its final ``state_dict`` there (used by the 2-process test).
#: 设置为目录时，每个进程把最终 state_dict 写到该目录（供双进程测试比较权重）
DEBUG_DUMP_ENV = "UNET_COURSE_DDP_DUMP"


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
    exactly once. 与 DistributedSampler 不同，不会重复样本，求和后的混淆矩阵中每个像素只计一次
    """

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, n, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _rebuild_loader(loader: DataLoader, sampler: Sampler, drop_last: bool) -> DataLoader:
    """Same dataset, batch size, workers and collate function, new sampler. 保持其余设置，只替换采样器"""
    workers = loader.num_workers
    return DataLoader(
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


def distributed_loaders(train_loader: DataLoader, val_loader: DataLoader | None, info: DistInfo,
                        seed: int) -> tuple[DataLoader, DataLoader | None]:
    """Re-make the loaders from :func:`unet_course.data.build_loaders` with per-rank samplers.
    用每个进程各自的采样器重建数据加载器

    Training uses :class:`DistributedSampler` (shuffled with ``seed``; call ``sampler.set_epoch(epoch)``);
    validation uses :class:`ShardSampler`. Unchanged when not distributed.
    训练集用 DistributedSampler（每轮调用 set_epoch），验证集用 ShardSampler；非分布式时不变
    """
    if not info.enabled:
        return train_loader, val_loader
    train_sampler = DistributedSampler(train_loader.dataset, num_replicas=info.world_size, rank=info.rank,
                                       shuffle=True, seed=seed, drop_last=False)
    train = _rebuild_loader(train_loader, train_sampler, drop_last=train_loader.drop_last)
    val = None
    if val_loader is not None:
        val = _rebuild_loader(val_loader, ShardSampler(len(val_loader.dataset), info.rank, info.world_size),
                              drop_last=False)
    return train, val


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell a :class:`DistributedSampler` which epoch it is (a no-op for other samplers). 设置采样器的轮次"""
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
