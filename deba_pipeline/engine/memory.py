"""What a run does when the device runs out of memory mid-epoch: it goes on at the last batch
size that fit, and says so in its record and its log."""

from __future__ import annotations

import logging

import torch

from deba_pipeline.core.errors import DebaError

log = logging.getLogger(__name__)


def fall_back(trainer, epoch: int, batch_size: int) -> int:
    """After out-of-memory at `batch_size`: the last size that fit, capping max_batch there
    (one process only: under DDP the other ranks wait in the step's all-reduce)."""
    trainer.optimizer.zero_grad(set_to_none=True)
    if trainer.device.type == "cuda":
        torch.cuda.empty_cache()
    fallback = trainer.last_fit
    if trainer.world > 1:
        raise DebaError(
            f"{trainer.spec.name}: out of device memory at global batch "
            f"{batch_size} ({batch_size // trainer.world} a process) in "
            f"epoch {epoch}: lower deba.max_batch."
        ) from None
    if fallback is None or fallback >= batch_size:
        raise DebaError(
            f"{trainer.spec.name}: out of device memory at batch size "
            f"{batch_size} in epoch {epoch}, with no smaller size known "
            f"to fit: lower train.batch_size."
        ) from None
    trainer.scheduler.cap_max_batch(fallback)
    trainer.record["events"].append(
        {
            "epoch": epoch,
            "event": "out_of_memory",
            "batch_size": batch_size,
            "fallback": fallback,
        }
    )
    log.warning(
        "%s: out of memory at batch %d; continuing at %d and capping max_batch there",
        trainer.spec.name,
        batch_size,
        fallback,
    )
    return fallback
