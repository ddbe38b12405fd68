"""Time to accuracy, the metric DAWNBench and MLPerf use, beside the paper's fixed-epoch time:
how long each method trains until its test accuracy first reaches the fixed run's final accuracy
minus a tolerance (`report.accuracy_tolerance`), paired by seed, modelled and measured."""
from __future__ import annotations

import statistics
from collections import defaultdict

from deba_pipeline.report.comparison import span, t_interval
from deba_pipeline.report.modelled import epoch_times


def time_to(record, target: float, steptime=None) -> tuple:
    """(modelled s, measured s) of training until the end of the first epoch whose test accuracy
    is at least `target`; (None, None) where no epoch reaches it, and None for the modelled
    time where the table lacks a size the run used."""
    modelled_epochs, measured = epoch_times(record, steptime), 0.0
    for index, e in enumerate(record["epochs"]):
        measured += e["epoch_time_s"]
        if e.get("test_accuracy") is not None and e["test_accuracy"] >= target:
            modelled = None if modelled_epochs is None else sum(modelled_epochs[:index + 1])
            return modelled, measured
    return None, None


def rows(records, steptime, tolerance: float) -> list:
    """One row per architecture, dataset and method (the fixed batch first), paired by seed."""
    fixed, methods = defaultdict(dict), defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r["variant"] != "baseline":
            continue
        key = (r["arch"], r["dataset"])
        (fixed[key] if r["method"] == "fixed" else methods[key][r["method"]])[r["seed"]] = r
    out = []
    for key in sorted(fixed):
        for name, runs in [("fixed", fixed[key])] + sorted(methods[key].items()):
            out.append(_row(key, name, runs, fixed[key], steptime, tolerance))
    return out


def _row(key, name, runs, fixed, steptime, tolerance) -> dict:
    seeds = sorted(set(runs) & set(fixed))
    target = {s: fixed[s]["final_test_accuracy"] - tolerance for s in seeds}
    mine = {s: time_to(runs[s], target[s], steptime) for s in seeds}
    base = {s: time_to(fixed[s], target[s], steptime) for s in seeds}
    reached = [s for s in seeds if mine[s][1] is not None]
    row = {"Architecture": key[0], "Dataset": key[1], "Strategy": name,
           "Target (%)": f"{statistics.fmean(target.values()):.2f}" if seeds else "–",
           "Reached": f"{len(reached)} of {len(seeds)} seeds"}
    for index, kind in ((0, "modelled"), (1, "measured")):
        times = [mine[s][index] for s in reached]
        row[f"Time to accuracy, {kind} (s)"] = (
            "not reached" if not reached else "–" if None in times
            else f"{statistics.fmean(times):.1f}")
        if name == "fixed":
            row[f"Speedup to accuracy, {kind} (%)"] = "–"
            continue
        pairs = [(base[s][index], mine[s][index]) for s in reached]
        speedups = [100 * (1 - m / b) for b, m in pairs if b and m is not None]
        row[f"Speedup to accuracy, {kind} (%)"] = (
            "–" if not speedups or len(speedups) < len(reached) else
            f"{statistics.fmean(speedups):.1f} {span(t_interval(speedups))}")
    return row
