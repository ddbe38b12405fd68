"""One run where this process is (the CLI's, a pool worker's or a Ray worker's): reused from the
finished-run cache if this exact run finished, else trained under the run's lock (here, or on W
processes through torchrun), resuming from its checkpoint if it was cut."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from deba_pipeline.engine import ddp
from deba_pipeline.engine.cache import keep
from deba_pipeline.engine.checkpoint import Checkpointer
from deba_pipeline.engine.loop import Trainer
from deba_pipeline.engine.spec import RunSpec
from deba_pipeline.engine.tracking import tracker_for
from deba_pipeline.execution.process import prepare
from deba_pipeline.timing.steptime import probe_round

log = logging.getLogger(__name__)


def reuse_finished(cfg, specs, write, order, tracking) -> tuple[dict, list]:
    """({index: record} of the specs that already finished, taken from the cache and written,
    [indices of the rest, in `order`]): a stage with nothing left to train starts no worker."""
    from deba_pipeline.execution.invocation import wandb_group

    records, to_train = {}, []
    for index in order:
        if Checkpointer(Path(cfg.tracking.dir), specs[index]).finished() is None:
            to_train.append(index)
            continue
        records[index] = train(
            specs[index], state_dir=cfg.tracking.dir, tracking=tracking, experiment=wandb_group(cfg)
        )
        write(specs[index], records[index])
    return records, to_train


def note_placement(state_dir, spec: RunSpec, record: dict, placement: dict) -> None:
    """Say in `record`, and in its finished-run cache entry, how its run was placed: a run that
    shared the machine with others has a measured time they may have slowed (its modelled time,
    and its numbers, do not depend on it)."""
    record["execution"] = placement
    checkpointer = Checkpointer(Path(state_dir), spec)
    keep(checkpointer.done_path, record, checkpointer.identity())


def train(
    spec: RunSpec,
    state_dir=".deba",
    tracking: dict | None = None,
    experiment: str = "default",
    progress: bool = True,
) -> dict:
    """The record of `spec`: reused if this exact run already finished, resumed if it was cut."""
    checkpointer = Checkpointer(Path(state_dir), spec)
    done = checkpointer.finished()
    if done is not None:
        if progress:
            log.info(
                "%s: reused the finished run %s (same configuration and training code)",
                spec.name,
                checkpointer.done_path,
            )
        record = copy.deepcopy(done)
        record.update(variant=spec.variant, config=spec.config())
        return record
    with checkpointer.lock():
        if spec.train.processes > 1 and ddp.rank_and_world()[1] == 1:
            from deba_pipeline.execution.torchrun import launch

            return launch(spec, state_dir, tracking or {"wandb": "disabled"}, experiment, progress)
        prepare(spec.threads)  # wherever it is called from, a run computes with its own threads
        trainer = Trainer(spec, state_dir)
        tracker = tracker_for(spec, state_dir, tracking, experiment)
        # a fixed baseline's step is timed beside it, an epoch at a time (docs/method.md)
        probe = probe_round if (spec.method, spec.variant) == ("fixed", "baseline") else None
        try:
            return trainer.run(tracker, progress, after_epoch=probe)
        finally:
            tracker.finish()
