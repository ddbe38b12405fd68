"""Calibrate stage: θ_stab and θ_conf per architecture and dataset from the profile runs
(docs/method.md). `deba calibrate --runs runs/profile --out results/thresholds.json`"""

from deba_pipeline.core.errors import DebaError
from deba_pipeline.engine.files import write_json
from deba_pipeline.execution.study import read_records
from deba_pipeline.report.analysis import calibrate


def run(cfg, runs: str, out: str) -> dict:
    records = [r for r in read_records(runs) if r["variant"] == "profile"]
    if not records:
        raise DebaError(
            f"no profile run records under {runs}: run the profile stage first "
            f"(`dvc repro profile`)."
        )
    thresholds = calibrate(records, cfg.deba.window)
    write_json(out, thresholds)
    return thresholds
