"""The committed quick study's cells, predicted beside observed (docs/method.md "prediction"):
given each run's own trajectory, the modelled speedup to accuracy its profile runs predict, and
whether the cell's observed mean (report.time_to_accuracy) lies within 10 points and inside the
80% band; and the gns rule's final batch predicted before it ran, within one growth step."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from deba_pipeline.config import load_params
from deba_pipeline.execution.study import read_records
from deba_pipeline.prediction.check import beside, given_trajectories, profiles_by_cell
from deba_pipeline.prediction.strategies import gns_rule, simulate
from deba_pipeline.report.forecast import observed
from deba_pipeline.stages.predict import methods


def gns_finals(records, cfg) -> list:
    """Per gns run: its final batch, the one simulated from its profile runs, and whether they
    are within one growth step of each other."""
    profiles = profiles_by_cell(records)
    strategies = methods(cfg)
    out = []
    for r in records:
        if (
            r["variant"] != "baseline"
            or r["method"] not in strategies
            or strategies[r["method"]].rule != "gns"
        ):
            continue
        deba = strategies[r["method"]]
        predicted = [
            simulate(
                curve,
                deba,
                len(r["epochs"]),
                r["train_size"],
                gns_rule(deba),
                world=r.get("world_size", 1),
            )[-1].batch
            for curve, _ in profiles[(r["arch"], r["dataset"])]
        ]
        final = r["epochs"][-1]["batch_size"]
        step = math.log(deba.growth)
        out.append(
            {
                "run": f"{r['arch']}/{r['dataset']}/{r['method']}/{r['seed']}",
                "final": final,
                "predicted": predicted,
                "within_one_step": all(abs(math.log(p / final)) <= step + 1e-9 for p in predicted),
            }
        )
    return out


def study_check(root: Path) -> dict:
    cfg = load_params(root / "params.yaml")
    records = read_records(root / "runs")
    steptime = {
        p.stem: json.loads(p.read_text())
        for p in sorted((root / "results" / "steptime").glob("*.json"))
    }
    tolerance = cfg.report.accuracy_tolerance
    cells = []
    for row in given_trajectories(records, steptime, tolerance):
        per_seed = observed(
            records, steptime, (row["arch"], row["dataset"], row["method"]), tolerance
        )
        seen = statistics.fmean(per_seed) if per_seed else None
        low, high = beside(row["per_profile"], per_seed) or (None, None)
        cells.append(
            {
                **row,
                "observed": seen,
                "observed_per_seed": per_seed,
                "band_beside_observed": None if low is None else [low, high],
                "within_10_points": seen is not None and abs(seen - row["predicted"]) <= 10,
                "inside_band": seen is not None and low is not None and low <= seen <= high,
            }
        )
    finals = gns_finals(records, cfg)
    return {
        "cells": cells,
        "within_10_points": sum(c["within_10_points"] for c in cells),
        "of": len(cells),
        "inside_band": sum(c["inside_band"] for c in cells),
        "gns_final_batch": {
            "within_one_step": sum(f["within_one_step"] for f in finals),
            "of": len(finals),
            "runs": finals,
        },
    }
