"""Predicted beside observed (docs/method.md "prediction"): each strategy cell's modelled speedup
to accuracy, predicted from its profile runs and each run's own batch trajectory, beside the one
its runs had. Pure functions over records and step-time tables."""
from __future__ import annotations

import math
import statistics
from collections import defaultdict

from scipy.stats import t as student

from deba_pipeline.prediction.model import TRANSFER
from deba_pipeline.prediction.replay import (
    profile_curve,
    progress_at_accuracy,
    speedup,
    trajectory,
)

BAND = 0.80  # two-sided level of a prediction's band


def profiles_by_cell(records) -> dict:
    """{(arch, dataset): [(noise curve, profile record)]} of the profile runs that have one."""
    out = defaultdict(list)
    for r in records:
        if r["variant"] == "profile":
            curve = profile_curve(r)
            if curve is not None:
                out[(r["arch"], r["dataset"])].append((curve, r))
    return out


def targets(profiles, tolerance: float) -> list:
    """[(curve, progress at which each profile run reached its final accuracy − tolerance)]."""
    out = []
    for curve, record in profiles:
        reached = progress_at_accuracy(record, record["final_test_accuracy"] - tolerance)
        if reached is not None:
            out.append((curve, reached))
    return out


def band(per_profile: list, runs: int, level: float = BAND) -> tuple | None:
    """(low, high): where the mean over `runs` seeds should fall, from the predictions made
    with each profile run (a prediction interval: their spread × √(1/k + 1/runs), Student's t
    with k − 1 degrees of freedom); None from fewer than two profile runs."""
    k = len(per_profile)
    if k < 2 or any(not math.isfinite(v) for v in per_profile):
        return None
    mean = statistics.fmean(per_profile)
    half = float(student.ppf(0.5 + level / 2, k - 1)) * statistics.stdev(per_profile) \
        * math.sqrt(1 / k + 1 / runs)
    return (mean - half, mean + half)


def beside(per_profile: list, per_seed: list, level: float = BAND) -> tuple | None:
    """(low, high): where an observed mean over `per_seed` values falls at `level` if the
    prediction is right: the prediction's mean over profile runs, ± Student's t (k + n − 2
    degrees of freedom) × √(s_k²/k + s_n²/n), the spread of the predictions made with each of
    the k profile runs and the observed spread over the n seeds (the observation's own noise,
    which a prediction made before the runs can only estimate from the profile runs)."""
    k, n = len(per_profile), len(per_seed)
    if k < 2 or n < 2 or not all(math.isfinite(v) for v in per_profile + per_seed):
        return None
    mean = statistics.fmean(per_profile)
    half = float(student.ppf(0.5 + level / 2, k + n - 2)) * math.sqrt(
        statistics.variance(per_profile) / k + statistics.variance(per_seed) / n)
    return (mean - half, mean + half)


def given_trajectories(records, steptime, tolerance: float,
                       transfer: float = TRANSFER) -> list:
    """One row per architecture, dataset and adaptive strategy: the modelled speedup to accuracy
    predicted from each run's own trajectory, its band, and the gns rule's final batches."""
    profiles = profiles_by_cell(records)
    cells = defaultdict(list)
    for r in records:
        if r["variant"] == "baseline" and r["method"] != "fixed":
            cells[(r["arch"], r["dataset"], r["method"])].append(r)
    rows = []
    for (arch, dataset, method), runs in sorted(cells.items()):
        table = (steptime or {}).get(arch, {}).get(dataset)
        aims = targets(profiles.get((arch, dataset), []), tolerance)
        if not table or not aims or any("train_size" not in r for r in runs):
            continue
        try:
            per_profile = [statistics.fmean(
                speedup(curve, trajectory(r), table, r["train_size"], aim, transfer)
                for r in runs) for curve, aim in aims]
        except KeyError:  # a size the table lacks
            continue
        rows.append({"arch": arch, "dataset": dataset, "method": method, "seeds": len(runs),
                     "predicted": statistics.fmean(per_profile), "per_profile": per_profile,
                     "band": band(per_profile, len(runs))})
    return rows
