"""Data-parallel training under ``torchrun``: DistributedDataParallel, gloo on CPU, NCCL on GPU.

    torchrun --nproc_per_node 2 stages/train.py --family mr --projections data/projections \
        --index data/index --model-dir models/mr --report-dir reports/train/mr    # 2 processes, one machine

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; without
them (plain ``python stages/train.py``) everything here is a no-op and training is single-process.

How the epoch is split: every rank draws the *same* global epoch order from the same seeded
generator (the class-balanced draw of ``willis.train.sampler``), then takes every ``world``-th
series starting at its rank, padded by wrap-around to equal length, the way
``torch.utils.data.DistributedSampler`` shards an index list. Equal lengths matter: DDP's gradient
all-reduce is collective, so a rank with one step more would wait forever. Only rank 0 logs and
writes files; early stopping is rank 0's decision, broadcast so every rank stops together.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device, init_method: str | None = None, rank: int | None = None,
          world: int | None = None) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun (or given rank/world); pick this rank's GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1")) if world is None else world
    if world <= 1:
        return DistInfo(), device
    rank = int(os.environ["RANK"]) if rank is None else rank
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world)
    log.info("rank %d/%d on %s (%s)", rank, world, device, dist.get_backend())
    return DistInfo(rank, world, local), device


def wrap(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DDP around ``model`` when distributed (it broadcasts rank 0's weights and buffers at start)."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def shard(order: np.ndarray, info: DistInfo) -> np.ndarray:
    """This rank's part of the global epoch order: ``order[rank::world]``, padded to equal length."""
    if not info.enabled:
        return order
    per = -(-len(order) // info.world)  # ceil
    padded = np.resize(order, per * info.world)  # wrap-around padding, as DistributedSampler does
    return padded[info.rank::info.world]


def agree(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank (early stopping must stop all ranks at the same epoch)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def sync_buffers(model: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP keeps the *parameters* identical (it all-reduces gradients) and broadcasts buffers at the
    start of each forward, but the last forward of an epoch leaves each rank's running statistics
    updated from its own shard; call this at the end of every epoch so validation and the saved
    checkpoint see one model on every rank."""
    if not info.enabled:
        return
    for buf in unwrap(model).buffers():
        dist.broadcast(buf.data, src=0)


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
