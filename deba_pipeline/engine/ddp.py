"""One run on W processes (docs/cluster.md), inside a rank: DistributedDataParallel (NCCL on CUDA,
gloo on the CPU) and the few collectives the loop needs.

The batch size is global: each rank takes B/W samples a step from its share of the same
permutation of the device-resident data, so every sample is seen once an epoch across ranks. DDP
averages the gradients in the backward pass, so every rank computes the signals from the same
synchronized gradients and must reach the same decision (checked each epoch, one small
collective). Only rank 0 writes the record, checkpoints and W&B.

The processes are started by torchrun (execution/torchrun.py on one machine; `deba run NAME`
under torchrun over several); each runs `rank.run_rank`.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from deba_pipeline.core.errors import DebaError


def rank_and_world() -> tuple:
    """(this process's rank, the number of processes): (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(name: str) -> torch.device:
    """The device `train.device` names; "auto" is a GPU where one is visible."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DebaError(
            f"train.device is {name!r} but no CUDA device is visible: set "
            f"train.device to auto or cpu."
        )
    return torch.device(name)


def local_device(device: torch.device) -> torch.device:
    """A rank's own GPU (torchrun's LOCAL_RANK) when the run is on CUDA under torchrun."""
    if device.type == "cuda" and rank_and_world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def sync_batchnorm(model, device, name: str):
    """BatchNorm layers that average their statistics over every rank's share of the global
    batch (PyTorch's SyncBatchNorm, which runs on GPUs only)."""
    if device.type != "cuda":
        raise DebaError(
            f"{name}: train.sync_batchnorm needs GPUs (PyTorch's SyncBatchNorm does "
            f"not run on {device.type}): set it to false, and BatchNorm keeps its "
            f"statistics per rank."
        )
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap(model, device):
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of `tensor` over every rank: one collective."""
    dist.all_reduce(tensor)
    return tensor / dist.get_world_size()


def check_agreement(name: str, epoch: int, decision: str, next_batch: int) -> None:
    """docs/cluster.md: every rank must reach the same decision; a mismatch stops the run."""
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, (decision, next_batch))
    if any(theirs != (decision, next_batch) for theirs in everyone):
        seen = ", ".join(f"rank {r}: {d} to {b}" for r, (d, b) in enumerate(everyone))
        raise DebaError(
            f"{name}: the processes disagree at epoch {epoch} ({seen}). Every rank "
            f"decides from the same synchronized gradients, so a signal or rule "
            f"plugin that reads rank-local state (its own randomness, a rank's loss) "
            f"is at fault: make it depend only on what it observes."
        )
