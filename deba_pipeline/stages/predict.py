"""Predict stage (docs/method.md "prediction"): before any strategy trains, what each one will
do and save, from the profile runs and a step-time table over every size a strategy may reach
(the ladder from train.batch_size, measured here and kept like the step-time stage's tables).
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
from deba_pipeline.stages import steptime

NO_PARTS = ("its profile runs lack the noise scale's parts (records from before they were kept, "
            "or epochs of fewer than 4 steps): rerun the profile stage with more data or a "
            "smaller train.batch_size")


def methods(cfg) -> dict:
    """{strategy: its deba config}: study.methods over the deba group."""
    return {name: OmegaConf.merge(cfg.deba, overrides or {})
            for name, overrides in cfg.study.methods.items()}


def run(cfg, archs, runs: str, tables_out: str, out: str) -> dict:
    records = [r for r in read_records(runs) if r["variant"] == "profile"]
    if not records:
        raise DebaError(f"no profile run records under {runs}: run the profile stage first "
                        f"(`dvc repro profile`).")
    profiles = profiles_by_cell(records)
    ladder = copy.deepcopy(cfg)
    OmegaConf.update(ladder, "timing.sizes", "ladder")
    tables = steptime.run(ladder, archs, runs, tables_out)
    predictions = {}
    for arch in archs:
        for dataset in cfg.study.datasets:
            found = profiles.get((arch, dataset))
            predictions.setdefault(arch, {})[dataset] = cell(
                found, tables[arch][dataset], found[0][1]["train_size"], methods(cfg),
                cfg.train.epochs, len(cfg.study.seeds), cfg.report.accuracy_tolerance
            ) if found else {"problem": NO_PARTS}
    write_json(out, predictions)
    return predictions
