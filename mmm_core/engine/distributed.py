"""Data-parallel training helpers (PyTorch DDP under torchrun; gloo on CPU, NCCL on CUDA).

Only the train step runs distributed: every rank reads the same round targets, draws its own
batches (the sampler seed includes the rank), and gathers features and labels from all ranks
before the memory update, so the memory banks stay identical everywhere.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_cat",
    "init_from_environment",
    "is_distributed",
    "rank",
    "shutdown",
    "world_size",
]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_from_environment(device_type: str) -> bool:
    """Join the process group described by torchrun's variables; False when not launched so."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return is_distributed()
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return True


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every rank along dim 0, in rank order (identity alone).

    All ranks must pass the same shape (P x K batches guarantee it).
    """
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)
