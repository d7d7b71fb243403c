"""Multi-process training under torchrun: gloo on CPU, NCCL on GPU.

The Trainer averages gradients itself (``Updater`` all-reduces one flat
buffer per optimizer step), which is what DistributedDataParallel does, but
also works for families that own several optimizers and several backward
passes per step (GANs, EBMs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> DistInfo:
    """Join the process group if torchrun started us (or the caller already did)."""
    if not dist.is_available():
        return DistInfo()
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return DistInfo()
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def shutdown() -> None:
    """Leave the process group together: a rank that tears gloo down while another still
    works (rank 0 saving) can abort ("terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every process start from rank 0's weights."""
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, 0)


def agree(value: float, info: DistInfo, op=dist.ReduceOp.MAX if dist.is_available() else None) -> float:
    """A scalar every process agrees on (e.g. a stop flag or a step estimate)."""
    if info.world_size == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, op=op)
    return float(t.item())


def agree_flags(flags: list[bool], info: DistInfo) -> list[bool]:
    """Each flag true on every process when it is true on any (one all-reduce for all of them)."""
    if info.world_size == 1:
        return flags
    t = torch.tensor([float(f) for f in flags], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def gather_objects(obj, info: DistInfo) -> list:
    """Every process's ``obj`` (picklable), in rank order, on every process."""
    if info.world_size == 1:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def mean_metrics(metrics: dict[str, float], info: DistInfo) -> dict[str, float]:
    if info.world_size == 1 or not metrics:
        return metrics
    keys = sorted(metrics)
    t = torch.tensor([metrics[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t)}
