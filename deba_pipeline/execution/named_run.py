"""One run of the study, named, trained here: `deba run resnet18/cifar10/deba/2`.

Its use is a run on several machines (docs/cluster.md), which no stage launches by itself: on each
machine, from the project folder on a shared filesystem,

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HEAD:29500 \
        --rdzv-id resnet18-deba-2 -m deba_pipeline.cli run resnet18/cifar10/deba/2

Rank 0 leaves the record in the finished-run cache (`tracking.dir`), and the stage that owns the
run takes it from there at the next `dvc repro`. Names are ARCH/DATASET/METHOD/SEED, the method
followed by `-VARIANT` for profile and ablation runs (`deba-cooldown2`, `fixed-profile`).
"""

from __future__ import annotations

import logging
import os

from omegaconf import OmegaConf

from deba_pipeline.core.errors import DebaError
from deba_pipeline.execution.study import (
    ablate_specs,
    load_thresholds,
    profile_specs,
    train_specs,
)

log = logging.getLogger(__name__)


def find(cfg, name: str, thresholds: str | None = None):
    archs = list(cfg.study.archs)
    specs = profile_specs(cfg, archs)
    if not any(spec.name == name for spec in specs) and _could_be_a_run(cfg, name):
        calibrated = load_thresholds(cfg, thresholds)
        specs += train_specs(cfg, archs, calibrated) + ablate_specs(cfg, archs, calibrated)
    for spec in specs:
        if spec.name == name:
            return spec
    examples = " or ".join(dict.fromkeys([specs[-1].name, specs[0].name]))
    raise DebaError(
        f"no run named {name!r} in this study: a name is ARCH/DATASET/METHOD/SEED "
        f"as a stage prints it, e.g. {examples}."
    )


def _could_be_a_run(cfg, name: str) -> bool:
    """Whether `name` holds one of the study's architectures, datasets and seeds: a name that does
    not is refused as a name, before the calibrated thresholds that train and ablate runs need."""
    parts, s = name.split("/"), cfg.study
    seeds = {str(seed) for seed in [*s.seeds, *s.profile_seeds]}
    return len(parts) == 4 and parts[0] in s.archs and parts[1] in s.datasets and parts[3] in seeds


def run(cfg, name: str, thresholds: str | None = None) -> int:
    """Train run `name` here; as a rank when torchrun started this process."""
    from deba_pipeline.execution.invocation import wandb_group
    from deba_pipeline.execution.one_run import train as train_run

    spec = find(cfg, name, thresholds)
    tracking = OmegaConf.to_container(cfg.tracking, resolve=True, enum_to_str=True)
    if "LOCAL_RANK" in os.environ:  # a rank torchrun started: set up as every rank is
        from deba_pipeline.engine.rank import run_rank
        from deba_pipeline.execution.process import prepare

        prepare(spec.threads)
        return run_rank(spec, cfg.tracking.dir, tracking, wandb_group(cfg))
    record = train_run(spec, cfg.tracking.dir, tracking, wandb_group(cfg))
    log.info(
        "%s: accuracy %.2f%%; the stage that owns it takes it from %s at the next `dvc repro`.",
        spec.name,
        record["final_test_accuracy"],
        cfg.tracking.dir,
    )
    return 0
