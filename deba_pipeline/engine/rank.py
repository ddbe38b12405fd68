"""One process of a run on W processes (docs/cluster.md), as torchrun starts it: join the process
group, train this rank's share, and (rank 0) leave the record in the finished-run cache."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

from deba_pipeline.core.errors import DebaError


def run_rank(
    spec,
    state_dir,
    tracking: dict,
    experiment: str,
    progress: bool = True,
    raise_errors: bool = False,
) -> int:
    """This process's rank of `spec`, under torchrun or `launch`; rank 0 leaves the record in
    the finished-run cache. Returns the exit status (or raises, with `raise_errors`)."""
    from deba_pipeline.engine.ddp import resolve_device
    from deba_pipeline.engine.loop import Trainer
    from deba_pipeline.engine.tracking import tracker_for

    if int(os.environ.get("WORLD_SIZE", 1)) != spec.train.processes:
        print(
            f"deba: error: {spec.name}: torchrun started {os.environ.get('WORLD_SIZE', 1)} "
            f"processes but train.processes is {spec.train.processes}: make them equal "
            f"(--nnodes × --nproc-per-node).",
            file=sys.stderr,
            flush=True,
        )
        return 2
    cuda = resolve_device(spec.train.device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    tracker = None
    try:
        trainer = Trainer(spec, state_dir)
        if dist.get_rank() == 0:
            tracker = tracker_for(spec, state_dir, tracking, experiment)
        trainer.run(tracker, progress and dist.get_rank() == 0)
    except DebaError as exc:
        if raise_errors:
            raise
        print(f"deba: error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        if tracker is not None:
            tracker.finish()
        dist.destroy_process_group()
    return 0
