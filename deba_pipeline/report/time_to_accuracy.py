"""Time to accuracy, the metric DAWNBench and MLPerf use, beside the paper's fixed-epoch time:
how long each method trains until its test accuracy first reaches the fixed run's final accuracy
minus a tolerance (`report.accuracy_tolerance`), paired by seed, modelled and measured. Each seed
has its own target; a seed that never reaches it is censored and named, never dropped silently
(its time is only known to exceed its run's)."""

from __future__ import annotations

import statistics
from collections import defaultdict

from deba_pipeline.report.intervals import span, speedup_interval
from deba_pipeline.report.modelled import epoch_times


def time_to(record, target: float, steptime=None) -> tuple:
    """(modelled s, measured s) of training until the test accuracy first reaches `target`,
    interpolated within the epoch that crosses it: accuracy is read at epoch ends, and one epoch
    was 10-15% of a quick-study run's time to target, more than the speedups read off it. The
    accuracy is taken to rise linearly over that epoch, from the previous epoch's end (from
    chance, 100 / classes, at time 0 for the first epoch; where the record has no class count, the
    first epoch counts whole). (None, None) where no epoch reaches it (the seed is censored at the
    run's end), and None for the modelled time where the table lacks a size the run used."""
    modelled_epochs = epoch_times(record, steptime)
    classes = record.get("num_classes")
    before, measured, modelled = (100.0 / classes if classes else None), 0.0, 0.0
    for index, e in enumerate(record["epochs"]):
        took = (e["epoch_time_s"], None if modelled_epochs is None else modelled_epochs[index])
        accuracy = e.get("test_accuracy")
        if accuracy is not None and accuracy >= target:
            share = (
                1.0
                if before is None or accuracy <= before
                else min(1.0, max(0.0, (target - before) / (accuracy - before)))
            )
            return (
                None if took[1] is None else modelled + share * took[1],
                measured + share * took[0],
            )
        measured += took[0]
        modelled = None if took[1] is None or modelled is None else modelled + took[1]
        before = accuracy
    return None, None


def censored_at(record, steptime=None) -> tuple:
    """(modelled s, measured s) of the whole run: a seed that never reached its target trained
    at least this long without reaching it."""
    modelled = epoch_times(record, steptime)
    return (
        None if modelled is None else sum(modelled),
        sum(e["epoch_time_s"] for e in record["epochs"]),
    )


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
    censored = [s for s in seeds if mine[s][1] is None]
    row = {
        "Architecture": key[0],
        "Dataset": key[1],
        "Strategy": name,
        "Targets (%)": ", ".join(f"seed {s}: {target[s]:.2f}" for s in seeds) or "–",
        "Reached": f"{len(reached)} of {len(seeds)} seeds",
        "Censored": ", ".join(
            f"seed {s} (not reached in {censored_at(runs[s])[1]:.1f} s)" for s in censored
        )
        or "none",
    }
    for index, kind in ((0, "modelled"), (1, "measured")):
        times = [mine[s][index] for s in reached]
        row[f"Time to accuracy, {kind} (s)"] = (
            "not reached"
            if not reached
            else "–"
            if None in times
            else f"{statistics.fmean(times):.1f}"
        )
        if name == "fixed":
            row[f"Speedup to accuracy, {kind} (%)"] = "–"
            continue
        pairs = [(base[s][index], mine[s][index]) for s in reached]
        speedups = [100 * (1 - m / b) for b, m in pairs if b and m is not None]
        row[f"Speedup to accuracy, {kind} (%)"] = (
            "–"
            if not speedups or len(speedups) < len(reached)
            else f"{statistics.fmean(speedups):.1f} {span(speedup_interval(speedups))}"
        )
    return row
