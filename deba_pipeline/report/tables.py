"""Tables 1-5 (docs/pipeline.md) as lists of rows, from run records and the comparisons computed
from them (table_formats writes them as CSV and Markdown). `found` is {variant: {(arch,
dataset): comparison}}."""

from __future__ import annotations

from deba_pipeline.config import PAPER_THRESHOLDS
from deba_pipeline.report.analysis import profile_summary
from deba_pipeline.report.cell import Cell
from deba_pipeline.report.comparison import summary_rows
from deba_pipeline.report.held import prediction_held
from deba_pipeline.report.intervals import span
from deba_pipeline.report.outcome import OPEN
from deba_pipeline.report.table_formats import Shown


def _fmt(value, digits=2, sign=False, unit=""):
    if value is None:
        return Shown("–", {"": None})
    return Shown((f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}") + unit, {"": value})


def mean_pm(mean, std, digits=2, sign=False):
    """`mean ± std` over seeds."""
    shown = _fmt(mean, digits, sign) + (
        "" if std is None or mean is None else f" ± {_fmt(std, digits)}"
    )
    return Shown(shown, {"": mean, " std": None if mean is None else std})


def mean_ci(mean, ci, digits=2, sign=False):
    """`mean [low, high]`, the interval over seeds at comparison.LEVEL."""
    low, high = ci if ci and mean is not None else (None, None)
    return Shown(
        "–" if mean is None else f"{_fmt(mean, digits, sign)} {span(ci, digits, sign)}",
        {"": mean, " low": low, " high": high},
    )


def outcome_text(c: Cell | None) -> str:
    if c is None:
        return "–"
    if c.outcome not in OPEN:
        return c.outcome
    n, span = c.seeds_needed, c.seeds_needed_range
    if n is None:
        return c.outcome
    if not span or span[0] == span[1] == n:
        return f"{c.outcome} (≈{n} seeds)"
    return f"{c.outcome} (≈{n} seeds, {span[0]}–{span[1] or '1000+'})"


def _ratio(c: Cell) -> str:
    """The fixed runs' modelled over measured time, flagged when outside the clock noise."""
    if c.model_ratio_fixed is None:
        return "–"
    flag = {True: " (within noise)", False: " (outside noise)", None: ""}
    level = "" if c.model_ratio_beside else ", at the table's level"
    return f"{c.model_ratio_fixed:.3f}{flag[c.model_ratio_within_noise]}{level}"


def _noise(half_width) -> str:
    return Shown("–" if half_width is None else f"±{half_width:.1f}", {"": half_width})


def table1(thresholds: dict) -> list:
    rows = []
    for arch, per_dataset in sorted(thresholds.items()):
        paper = PAPER_THRESHOLDS.get(arch, (None, None))
        for dataset, t in sorted(per_dataset.items()):
            rows.append(
                {
                    "Architecture": arch,
                    "Dataset": dataset,
                    "θ_stab (calibrated)": _fmt(t["theta_stab"], 4),
                    "θ_conf (calibrated)": _fmt(t["theta_conf"], 4),
                    "θ_stab (paper)": _fmt(paper[0]),
                    "θ_conf (paper)": _fmt(paper[1]),
                    "profile epochs": t["epochs"],
                }
            )
    return rows


def predictions(records, found, bounds) -> list:
    """One row per architecture and dataset: the profile's class and prediction against what the
    method did, with the verdict and why."""
    main = found.get("baseline", {})
    rows = []
    for arch, per_dataset in sorted(profile_summary(records, bounds).items()):
        for dataset, p in sorted(per_dataset.items()):
            c = main.get((arch, dataset))
            held, why = (
                prediction_held(p["prediction"], c, bounds["seed_spread"])
                if c
                else ("–", "no DEBA runs to compare")
            )
            rows.append(
                {
                    "arch": arch,
                    "dataset": dataset,
                    "profile": p,
                    "comparison": c,
                    "held": held,
                    "why": why,
                }
            )
    return rows


def table2(checked) -> list:
    rows = []
    for row in checked:
        p, c = row["profile"], row["comparison"]
        rows.append(
            {
                "Architecture": row["arch"],
                "Dataset": row["dataset"],
                "μ_S": _fmt(p["mu_S"], 3),
                "σ_S": _fmt(p["sigma_S"], 3),
                "Conv. stability": _fmt(p["convergence_stability"], 3),
                "Class": p["class"],
                "Prediction": p["prediction"],
                "ΔAcc": mean_ci(c and c.delta_acc, c and c.delta_acc_ci, sign=True),
                "Speedup, modelled (%)": mean_ci(
                    c and c.model_speedup_mean, c and c.model_speedup_ci, 1
                ),
                "Speedup, measured (%)": mean_ci(c and c.speedup_mean, c and c.speedup_ci, 1),
                "Aggressiveness": _fmt(c and c.aggressiveness),
                "Outcome": outcome_text(c),
                "Held?": row["held"],
            }
        )
    return rows


def ablation_order(found) -> list:
    return ["baseline"] + [v for v in found if v != "baseline"]


def table3(found, dataset) -> list:
    """ΔAcc and speedups of each variant on the ablation dataset, with the summary rows."""
    if dataset is None:
        return []
    variants = ablation_order(found)
    archs = sorted({arch for v in variants for (arch, ds) in found[v] if ds == dataset})
    rows = []
    for arch in archs:
        row = {"Architecture": arch}
        for v in variants:
            c = found[v].get((arch, dataset))
            row[f"{v} ΔAcc"] = mean_ci(c and c.delta_acc, c and c.delta_acc_ci, sign=True)
            row[f"{v} speedup modelled (%)"] = mean_ci(
                c and c.model_speedup_mean, c and c.model_speedup_ci, 1
            )
            row[f"{v} speedup measured (%)"] = mean_ci(c and c.speedup_mean, c and c.speedup_ci, 1)
        rows.append(row)
    degraded, mean_abs = {"Architecture": "Lost > 1 pt (mean)"}, {"Architecture": "Mean |ΔAcc|"}
    for v in variants:
        s = summary_rows(c.delta_acc for (a, ds), c in found[v].items() if ds == dataset)
        degraded[f"{v} ΔAcc"] = f"{s['degraded']}/{s['total']}"
        mean_abs[f"{v} ΔAcc"] = _fmt(s["mean_abs_delta_acc"])
        for kind in ("modelled", "measured"):
            degraded[f"{v} speedup {kind} (%)"] = mean_abs[f"{v} speedup {kind} (%)"] = "–"
    return rows + [degraded, mean_abs]


def table4(found) -> list:
    """Fixed against DEBA per architecture and dataset: accuracy, both times and speedups, the
    clock's noise, throughput and samples per second."""
    rows = []
    for (arch, dataset), c in sorted(found.get("baseline", {}).items()):
        common = {"Architecture": arch, "Dataset": dataset}
        agree = "–" if c.disagree is None else ("no" if c.disagree else "yes")
        rows.append(
            {
                **common,
                "Method": "Fixed",
                "Accuracy (%)": mean_pm(c.acc_fixed_mean, c.acc_fixed_std),
                "ΔAcc": "–",
                "Time, measured (s)": mean_pm(c.time_fixed_mean, c.time_fixed_std, 1),
                "Clock noise (%)": _fmt(c.noise_pct, 1),
                "Time, modelled (s)": _fmt(c.model_time_fixed_mean, 1),
                "Modelled/measured": _ratio(c),
                "Speedup, measured (%)": "–",
                "Speedup, modelled (%)": "–",
                "Table noise (pts)": "–",
                "Throughput, measured": _fmt(1.0, unit="×"),
                "Throughput, modelled": _fmt(None if c.model_throughput is None else 1.0, unit="×"),
                "Samples/s": _fmt(c.samples_per_s_fixed, 0),
                "Measured agrees?": "–",
                "Seeds": len(c.seeds),
            }
        )
        rows.append(
            {
                **common,
                "Method": "DEBA",
                "Accuracy (%)": mean_pm(c.acc_method_mean, c.acc_method_std),
                "ΔAcc": mean_ci(c.delta_acc, c.delta_acc_ci, sign=True),
                "Time, measured (s)": mean_pm(c.time_method_mean, c.time_method_std, 1),
                "Clock noise (%)": "–",
                "Time, modelled (s)": _fmt(c.model_time_method_mean, 1),
                "Modelled/measured": "–",
                "Speedup, measured (%)": mean_ci(c.speedup_mean, c.speedup_ci, 1),
                "Speedup, modelled (%)": mean_ci(c.model_speedup_mean, c.model_speedup_ci, 1),
                "Table noise (pts)": _noise(c.model_speedup_table_noise),
                "Throughput, measured": _fmt(c.throughput, unit="×"),
                "Throughput, modelled": _fmt(c.model_throughput, unit="×"),
                "Samples/s": _fmt(c.samples_per_s_method, 0),
                "Measured agrees?": agree,
                "Seeds": len(c.seeds),
            }
        )
    return rows


def table5(found) -> list:
    """What each scheduler did, over its seeds: decisions and the batch sizes it used."""
    rows = []
    for v in ablation_order(found):
        for (arch, dataset), c in sorted(found[v].items()):
            rows.append(
                {
                    "Architecture": arch,
                    "Dataset": dataset,
                    "Variant": v,
                    "Increases": c.increase,
                    "Rollbacks": c.rollback,
                    "Holds": c.hold,
                    "Batch sizes": f"{c.batch_min}–{c.batch_max}",
                    "Aggressiveness": _fmt(c.aggressiveness),
                    "Seeds": len(c.seeds),
                }
            )
    return rows


def strategies(by_method) -> list:
    """Strategies side by side (docs/peers.md): each method of study.methods against the same fixed
    runs, per architecture and dataset."""
    rows = []
    cells = sorted((key, name, c) for name, found in by_method.items() for key, c in found.items())
    for (arch, dataset), name, c in cells:
        rows.append(
            {
                "Architecture": arch,
                "Dataset": dataset,
                "Strategy": name,
                "ΔAcc": mean_ci(c.delta_acc, c.delta_acc_ci, sign=True),
                "Speedup, modelled (%)": mean_ci(c.model_speedup_mean, c.model_speedup_ci, 1),
                "Speedup, measured (%)": mean_ci(c.speedup_mean, c.speedup_ci, 1),
                "Outcome": outcome_text(c),
                "Throughput, modelled": _fmt(c.model_throughput, unit="×"),
                "Increases": c.increase,
                "Rollbacks": c.rollback,
                "Holds": c.hold,
                "Final batch": _fmt(c.final_batch, 0),
                "Seeds": len(c.seeds),
            }
        )
    return rows
