"""Device selection and ``torchrun`` multi-process training (DistributedDataParallel) for the recipes.

Launch with ``torchrun --nproc_per_node=N -m examples.hovernext.train ...``: :func:`init_distributed` reads the
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``) variables torchrun sets and initialises
the process group (NCCL on CUDA, gloo on CPU). Without them everything runs in one process. Only rank 0 writes logs
and checkpoints.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from nucfuse_datasets.errors import ArgumentError

__all__ = [
    "DistEnv",
    "DistributedReplacementSampler",
    "all_gather_objects",
    "all_reduce_mean",
    "barrier",
    "cleanup_distributed",
    "init_distributed",
    "resolve_device",
    "sync_buffers",
    "unwrap",
    "wrap_ddp",
]

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DistEnv:
    """Where this process runs: rank, world size, local rank and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        """Whether a process group with more than one process is active."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes logs and checkpoints."""
        return self.rank == 0


def resolve_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"`` → a device (``cuda:<local_rank>``).

    Raises:
        ArgumentError: unknown preference, or ``"cuda"`` without a CUDA device.
    """
    if preference not in DEVICES:
        raise ArgumentError(f"device must be one of {DEVICES}, got {preference!r}")
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ArgumentError("device 'cuda' requested but torch.cuda.is_available() is False; use --device cpu|auto")
    return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))


def init_distributed(preference: str = "auto") -> DistEnv:
    """Initialise the process group from torchrun's environment variables when present (else a single process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(preference, local_rank)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    """Destroy the process group if one is active."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    """Wait for every rank (no-op in a single process)."""
    if env.distributed:
        dist.barrier()


def all_gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(total: float, count: int, env: DistEnv) -> float:
    """``Σ total / Σ count`` over ranks (NaN when the count is 0)."""
    if env.distributed:
        t = torch.tensor([float(total), float(count)], dtype=torch.float64, device=env.device)
        dist.all_reduce(t)
        total, count = float(t[0]), int(t[1])
    return total / count if count else math.nan


def sync_buffers(module: nn.Module, env: DistEnv) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each training forward pass, so after the last step of an epoch every
    rank holds statistics updated by its own batch; validation and the saved weights should use rank 0's.
    """
    if env.distributed:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def wrap_ddp(module: nn.Module, env: DistEnv) -> nn.Module:
    """Wrap in :class:`~torch.nn.parallel.DistributedDataParallel` when distributed (else return ``module``).

    DDP registers the parameters that require gradients when it is built, so the trainer re-wraps after every
    change of the encoder-freezing state.
    """
    if not env.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (or the module itself)."""
    return module.module if hasattr(module, "module") and isinstance(module.module, nn.Module) else module


class DistributedReplacementSampler(Sampler[int]):
    """Uniform sampling *with replacement*, ``num_samples`` draws per epoch, sharded over ranks.

    CellViT's sampler (``WeightedRandomSampler`` with all-ones weights, ``num_samples = len(train)``,
    ``replacement=True``) for ``torchrun`` runs: all ranks draw the same epoch sequence from ``seed + epoch`` and each
    keeps every ``world_size``-th index, so together they see ``num_samples`` draws (rounded up to a multiple of the
    world size). Call :meth:`set_epoch` every epoch.
    """

    def __init__(self, n: int, num_samples: int | None = None, *, rank: int = 0, world_size: int = 1, seed: int = 0):
        if n < 1:
            raise ArgumentError("cannot sample from an empty dataset")
        self.n = int(n)
        self.num_samples = int(num_samples if num_samples is not None else n)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's draw."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.world_size)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        total = len(self) * self.world_size
        idx = torch.randint(0, self.n, (total,), generator=g).tolist()
        return iter(idx[self.rank : total : self.world_size])
