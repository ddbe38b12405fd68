"""Predicted beside observed (docs/method.md "prediction"): each strategy cell's modelled speedup
to accuracy, predicted from its profile runs and each run's own batch trajectory, beside the one
its runs had. Pure functions over records and step-time tables."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from scipy.stats import t as student

from deba_pipeline.prediction.model import TRANSFER, NoiseCurve, step_gain
from deba_pipeline.prediction.replay import (
    Epoch,
    accuracy_at,
    profile_curve,
    progress_at_accuracy,
    progress_at_end,
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
    half = (
        float(student.ppf(0.5 + level / 2, k - 1))
        * statistics.stdev(per_profile)
        * math.sqrt(1 / k + 1 / runs)
    )
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
        statistics.variance(per_profile) / k + statistics.variance(per_seed) / n
    )
    return (mean - half, mean + half)


def own_curve(run: dict, base: int, transfer: float = TRANSFER) -> NoiseCurve | None:
    """The noise scale a run measured itself (its gradient_noise_scale signal at its own batch),
    as a curve over its own progress, stated at the base batch so that replaying the run through
    it gives each epoch the noise its batch measured; None where an epoch measured none."""
    ends, noise, done = [], [], 0.0
    for e, step in zip(run["epochs"], trajectory(run)):
        measured = (e.get("signals") or {}).get("gradient_noise_scale")
        if measured is None or measured < 0:
            return None
        done += e["steps"] * step_gain(measured, step.batch, base, step.lr_factor, 0.0)
        ends.append(done)
        noise.append(measured / (step.batch / base) ** transfer)
    return NoiseCurve(base, tuple(ends), tuple(noise)) if ends else None


def _replayed(runs, aims, table, transfer, curve_of=None, rates=True):
    """Mean speedup over runs and profile targets; `curve_of(run, profile curve)` the curve to
    replay through (default the profile's), `rates` False for AdaScale's rate every epoch."""
    values = []
    for curve, aim in aims:
        for r in runs:
            mine = curve if curve_of is None else curve_of(r, curve)
            if mine is None:
                return None
            path = trajectory(r) if rates else [Epoch(e.batch, None) for e in trajectory(r)]
            values.append(speedup(mine, path, table, r["train_size"], aim, transfer))
    return statistics.fmean(values)


def given_trajectories(records, steptime, tolerance: float, transfer: float = TRANSFER) -> list:
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
            per_profile = [
                statistics.fmean(
                    speedup(curve, trajectory(r), table, r["train_size"], aim, transfer)
                    for r in runs
                )
                for curve, aim in aims
            ]
        except KeyError:  # a size the table lacks
            continue
        profiled = profiles[(arch, dataset)]
        delta_acc = statistics.fmean(  # the accuracy risk: where each run's progress ends
            accuracy_at(record, progress_at_end(curve, trajectory(r), r["train_size"], transfer))
            - accuracy_at(
                record,
                progress_at_end(
                    curve, [Epoch(curve.base, 1.0)] * len(r["epochs"]), r["train_size"], transfer
                ),
            )
            for curve, record in profiled
            for r in runs
        )
        own = _replayed(
            runs, aims, table, transfer, lambda r, curve: own_curve(r, curve.base, transfer)
        )
        rows.append(
            {
                "arch": arch,
                "dataset": dataset,
                "method": method,
                "seeds": len(runs),
                "predicted": statistics.fmean(per_profile),
                "per_profile": per_profile,
                "band": band(per_profile, len(runs)),
                "with_own_noise_scale": own,
                "delta_acc_predicted": delta_acc,
                "at_adascale_rate": _replayed(runs, aims, table, transfer, rates=False),
            }
        )
    return rows


def what_broke(row: dict, observed: float) -> str:
    """Which assumption a miss points at: the replay that comes closest to the observed mean,
    where it halves the gap (docs/method.md "prediction")."""
    gap = abs(row["predicted"] - observed)
    tries = [
        (
            "the transfer from the profile's batch: the runs' own noise scale gives {:.1f}",
            row["with_own_noise_scale"],
        ),
        ("the learning-rate regime: at AdaScale's rate it gives {:.1f}", row["at_adascale_rate"]),
    ]
    found = [
        (abs(v - observed), text.format(v))
        for text, v in tries
        if v is not None and math.isfinite(v) and abs(v - observed) <= gap / 2
    ]
    if found:
        return min(found)[1]
    return "accuracy against progress (neither the runs' own noise scale nor the rate closes it)"
