"""Predict stage (docs/method.md "prediction"): before any strategy trains, what each one will
do and save, from the profile runs and a step-time table over every size a strategy may reach
(the ladder from train.batch_size, as far as the scheduler's cadence lets a strategy go in
train.epochs, measured here and kept like the step-time stage's tables).
`deba predict --runs runs/profile --steptime results/steptime_ladder
--out results/prediction.json`
"""

from __future__ import annotations

import copy

from omegaconf import OmegaConf

from deba_pipeline.core.errors import DebaError
from deba_pipeline.engine.files import write_json
from deba_pipeline.execution.study import read_records
from deba_pipeline.prediction.check import profiles_by_cell
from deba_pipeline.prediction.forecast import cell
from deba_pipeline.prediction.strategies import adaptations
from deba_pipeline.stages import steptime
from deba_pipeline.timing.steptime import ladder

NO_PARTS = (
    "its profile runs lack the noise scale's parts (records from before they were kept, "
    "or epochs of fewer than 4 steps): rerun the profile stage with more data or a "
    "smaller train.batch_size"
)


def methods(cfg) -> dict:
    """{strategy: its deba config}: study.methods over the deba group."""
    return {
        name: OmegaConf.merge(cfg.deba, overrides or {})
        for name, overrides in cfg.study.methods.items()
    }


def reachable(cfg):
    """`cfg` set to measure the ladder of sizes a strategy can reach in train.epochs: as many
    growth and rollback steps from train.batch_size as the scheduler's cadence allows the
    strategy with the shortest cooldown (deba.min_batch and max_batch moved in to the ends)."""
    d, t = cfg.deba, cfg.train
    steps = (
        max(adaptations(deba, t.epochs) for deba in methods(cfg).values())
        if cfg.study.methods
        else 0
    )
    full = ladder(t.batch_size, d.growth, d.rollback, d.min_batch, d.max_batch, t.processes)
    start = full.index(t.batch_size)
    sizes = full[max(0, start - steps) : start + steps + 1]
    out = copy.deepcopy(cfg)
    OmegaConf.update(out, "timing.sizes", "ladder")
    OmegaConf.update(out, "deba.min_batch", min(sizes))
    OmegaConf.update(out, "deba.max_batch", max(sizes))
    return out


def run(cfg, archs, runs: str, tables_out: str, out: str) -> dict:
    records = [r for r in read_records(runs) if r["variant"] == "profile"]
    if not records:
        raise DebaError(
            f"no profile run records under {runs}: run the profile stage first "
            f"(`dvc repro profile`)."
        )
    profiles = profiles_by_cell(records)
    tables = steptime.run(reachable(cfg), archs, runs, tables_out)
    predictions = {}
    for arch in archs:
        for dataset in cfg.study.datasets:
            found = profiles.get((arch, dataset))
            predictions.setdefault(arch, {})[dataset] = (
                cell(
                    found,
                    tables[arch][dataset],
                    found[0][1]["train_size"],
                    methods(cfg),
                    cfg.train.epochs,
                    len(cfg.study.seeds),
                    cfg.report.accuracy_tolerance,
                    world=cfg.train.processes,
                )
                if found
                else {"problem": NO_PARTS}
            )
    write_json(out, predictions)
    return predictions
