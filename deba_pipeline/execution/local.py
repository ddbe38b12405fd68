"""One run where this process is: reused from the finished-run cache if this exact run finished,
else trained under the run's lock (here, or on W processes through torchrun), resuming from its
checkpoint if it was cut."""
from __future__ import annotations

import copy
import logging
from pathlib import Path

from deba_pipeline.engine import ddp
from deba_pipeline.engine.checkpoint import Checkpointer
from deba_pipeline.engine.loop import Trainer
from deba_pipeline.engine.spec import RunSpec
from deba_pipeline.engine.tracking import tracker_for

log = logging.getLogger(__name__)


def train(spec: RunSpec, state_dir=".deba", tracking: dict | None = None,
          experiment: str = "default", progress: bool = True) -> dict:
    """The record of `spec`: reused if this exact run already finished, resumed if it was cut."""
    checkpointer = Checkpointer(Path(state_dir), spec)
    done = checkpointer.finished()
    if done is not None:
        if progress:
            log.info("%s: reused the finished run %s (same configuration and training code)",
                     spec.name, checkpointer.done_path)
        record = copy.deepcopy(done)
        record.update(variant=spec.variant, config=spec.config())
        return record
    with checkpointer.lock():
        if spec.train.processes > 1 and ddp.rank_and_world()[1] == 1:
            from deba_pipeline.execution.torchrun import launch
            return launch(spec, state_dir, tracking or {"wandb": "disabled"}, experiment,
                          progress)
        trainer = Trainer(spec, state_dir)
        tracker = tracker_for(spec, state_dir, tracking, experiment)
        try:
            return trainer.run(tracker, progress)
        finally:
            tracker.finish()


