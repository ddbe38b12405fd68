"""Predicted beside observed (docs/method.md "prediction"): per architecture, dataset and
strategy, the saving the predict stage gave before any strategy trained, the modelled speedup to
accuracy predicted again from the runs' own trajectories, and the one the runs had, with whether
it fell inside the band a right prediction leaves it."""

from __future__ import annotations

import statistics

from deba_pipeline.prediction.check import BAND, beside, given_trajectories, what_broke
from deba_pipeline.report.time_to_accuracy import time_to


def observed(records, steptime, cell, tolerance) -> list:
    """A cell's modelled speedups to accuracy (percent), one per seed that reached its target
    (the fixed run's final accuracy of that seed minus `tolerance`)."""
    arch, dataset, method = cell
    fixed = {
        r["seed"]: r
        for r in records
        if r["variant"] == "baseline"
        and r["method"] == "fixed"
        and (r["arch"], r["dataset"]) == (arch, dataset)
    }
    speedups = []
    for r in records:
        if (
            r["variant"] == "baseline"
            and (r["arch"], r["dataset"], r["method"]) == cell
            and r["seed"] in fixed
        ):
            target = fixed[r["seed"]]["final_test_accuracy"] - tolerance
            mine = time_to(r, target, steptime)[0]
            base = time_to(fixed[r["seed"]], target, steptime)[0]
            if mine is not None and base:
                speedups.append(100 * (1 - mine / base))
    return speedups


def delta_acc(records, cell) -> float | None:
    """A cell's mean final accuracy over the fixed run's of the same seed, in points."""
    arch, dataset, method = cell
    fixed = {
        r["seed"]: r["final_test_accuracy"]
        for r in records
        if r["variant"] == "baseline"
        and r["method"] == "fixed"
        and (r["arch"], r["dataset"]) == (arch, dataset)
    }
    deltas = [
        r["final_test_accuracy"] - fixed[r["seed"]]
        for r in records
        if r["variant"] == "baseline"
        and (r["arch"], r["dataset"], r["method"]) == cell
        and r["seed"] in fixed
    ]
    return statistics.fmean(deltas) if deltas else None


def _finals(records, prediction, cell) -> str:
    """The gns rule's final batch, simulated before training beside the runs' own."""
    arch, dataset, method = cell
    found = (
        ((prediction or {}).get(arch, {}).get(dataset, {}).get("strategies") or {}).get(method)
        or {}
    ).get("simulated")
    if not found:
        return "–"
    runs = sorted(
        r["epochs"][-1]["batch_size"]
        for r in records
        if r["variant"] == "baseline" and (r["arch"], r["dataset"], r["method"]) == cell
    )
    return f"{found['batches'][-1]} / {', '.join(map(str, runs))}"


def _interval(low_high) -> str:
    """`[low, high]`; nothing for a band of no width (a trajectory that is the fixed batch's)."""
    if not low_high or low_high[0] == low_high[1]:
        return ""
    return f"[{low_high[0]:.1f}, {low_high[1]:.1f}]"


def _in_advance(prediction, arch, dataset, method) -> str:
    found = ((prediction or {}).get(arch, {}).get(dataset, {}).get("strategies") or {}).get(method)
    if not found:
        return "–"
    parts = []
    for label, p in found.items():
        saving = "no target reached" if p["saving_pct"] is None else f"{p['saving_pct']:.1f}"
        parts.append(f"{label}: {saving} {_interval(p['band'])}".strip())
    return "; ".join(parts)


def _pair(predicted, observed) -> str:
    return f"{predicted:+.2f} / " + ("–" if observed is None else f"{observed:+.2f}")


def rows(records, steptime, tolerance: float, prediction=None) -> list:
    out = []
    for row in given_trajectories(records, steptime, tolerance):
        cell = (row["arch"], row["dataset"], row["method"])
        per_seed = observed(records, steptime, cell, tolerance)
        band = beside(row["per_profile"], per_seed)
        seen = statistics.fmean(per_seed) if per_seed else None
        inside = (
            "–" if band is None or seen is None else "yes" if band[0] <= seen <= band[1] else "no"
        )
        missed = seen is not None and (inside == "no" or abs(seen - row["predicted"]) > 10)
        out.append(
            {
                "Architecture": row["arch"],
                "Dataset": row["dataset"],
                "Strategy": row["method"],
                "Predicted before training (%)": _in_advance(prediction, *cell),
                "Predicted from its trajectories (%)": f"{row['predicted']:.1f}",
                "Observed (%)": "–" if seen is None else f"{seen:.1f}",
                f"{BAND:.0%} band beside observed": _interval(band) or "–",
                "Inside?": inside,
                "ΔAcc predicted / observed (pt)": _pair(
                    row["delta_acc_predicted"], delta_acc(records, cell)
                ),
                "Final batch predicted / runs": _finals(records, prediction, cell),
                "Where it missed": what_broke(row, seen) if missed else "–",
            }
        )
    return out


def headroom_lines(prediction) -> list:
    lines = []
    for arch, per_dataset in sorted((prediction or {}).items()):
        for dataset, p in sorted(per_dataset.items()):
            if "problem" in p:
                lines.append(f"- {arch}/{dataset}: no prediction: {p['problem']}.")
                continue
            room = p["headroom"]
            if room["saving_pct"] is None:
                lines.append(
                    f"- {arch}/{dataset}: no schedule this model knows reaches the "
                    f"target: {room['verdict']}."
                )
                continue
            lines.append(
                f"- {arch}/{dataset}: the best schedule this model knows saves "
                f"{room['saving_pct']:.1f}% of the fixed batch's time to accuracy "
                f"(table noise ±{room['table_noise_pct']:.1f}%): "
                f"{room['verdict']}."
            )
    return lines
