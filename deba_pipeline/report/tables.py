"""Tables 1-4 (SPEC §4) as lists of rows, computed from run records; written as CSV and Markdown."""
from __future__ import annotations

import csv
import io

from ..analysis import compare, outcome, prediction_held, profile_summary, summary_rows
from ..config import PAPER_THRESHOLDS

ABLATION_ORDER = ("universal", "cooldown2", "cooldown5", "full_history")


def _fmt(value, digits=2, sign=False):
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _pm(mean, std, digits=2):
    return _fmt(mean, digits) + ("" if std is None else f" ± {_fmt(std, digits)}")


def table1(thresholds: dict) -> list:
    rows = []
    for arch, per_dataset in sorted(thresholds.items()):
        paper = PAPER_THRESHOLDS.get(arch, (None, None))
        for dataset, t in sorted(per_dataset.items()):
            rows.append({"Architecture": arch, "Dataset": dataset,
                         "θ_stab (calibrated)": _fmt(t["theta_stab"], 4),
                         "θ_conf (calibrated)": _fmt(t["theta_conf"], 4),
                         "θ_stab (paper)": _fmt(paper[0]), "θ_conf (paper)": _fmt(paper[1]),
                         "profile epochs": t["epochs"]})
    return rows


def table2(records, bounds) -> list:
    profiles = profile_summary(records, bounds)
    comparisons = compare(records)
    rows = []
    for arch, per_dataset in sorted(profiles.items()):
        for dataset, p in sorted(per_dataset.items()):
            c = comparisons.get((arch, dataset))
            rows.append({"Architecture": arch, "Dataset": dataset, "μ_S": _fmt(p["mu_S"], 3),
                         "σ_S": _fmt(p["sigma_S"], 3),
                         "Conv. stability": _fmt(p["convergence_stability"], 3),
                         "Class": p["class"], "Prediction": p["prediction"],
                         "ΔAcc": _fmt(c and c["delta_acc"], sign=True),
                         "Speedup (%)": _fmt(c and c["speedup_mean"], 1),
                         "Aggressiveness": _fmt(c and c["aggressiveness"]),
                         "Outcome": outcome(c) if c else "–",
                         "Predicted?": prediction_held(p["prediction"], c) if c else "–"})
    return rows


def ablation_comparisons(records) -> tuple:
    """(dataset, variants, {variant: {(arch, dataset): comparison}}), baseline first."""
    ablated = [r for r in records if r["variant"] not in ("profile", "baseline")]
    if not ablated:
        return None, [], {}
    dataset = ablated[0]["dataset"]
    present = {r["variant"] for r in ablated}
    variants = [v for v in ABLATION_ORDER if v in present] + sorted(present - set(ABLATION_ORDER))
    found = {"baseline": compare(records)}
    found.update({v: compare(records, variant=v) for v in variants})
    return dataset, ["baseline"] + variants, found


def table3(records) -> list:
    dataset, variants, found = ablation_comparisons(records)
    if dataset is None:
        return []
    archs = sorted({arch for (arch, ds) in found["baseline"] if ds == dataset})
    rows = []
    for arch in archs:
        row = {"Architecture": arch}
        for v in variants:
            c = found[v].get((arch, dataset))
            row[f"{v} ΔAcc"] = _fmt(c and c["delta_acc"], sign=True)
            row[f"{v} Speedup (%)"] = _fmt(c and c["speedup_mean"], 1)
        rows.append(row)
    degraded = {"Architecture": "Degraded (>1pt)"}
    mean_abs = {"Architecture": "Mean |ΔAcc|"}
    for v in variants:
        s = summary_rows(c["delta_acc"] for (a, ds), c in found[v].items() if ds == dataset)
        degraded[f"{v} ΔAcc"], degraded[f"{v} Speedup (%)"] = f"{s['degraded']}/{s['total']}", "–"
        mean_abs[f"{v} ΔAcc"] = _fmt(s["mean_abs_delta_acc"])
        mean_abs[f"{v} Speedup (%)"] = "–"
    return rows + [degraded, mean_abs]


def table4(records) -> list:
    rows = []
    for (arch, dataset), c in sorted(compare(records).items()):
        seeds = len(c["seeds"])
        rows.append({"Architecture": arch, "Dataset": dataset, "Method": "Fixed",
                     "Accuracy (%)": _pm(c["acc_fixed_mean"], c["acc_fixed_std"]), "ΔAcc": "–",
                     "Time (s)": _pm(c["time_fixed_mean"], c["time_fixed_std"], 1),
                     "Speedup (%)": "–", "Throughput": "1.00×", "Seeds": seeds})
        rows.append({"Architecture": arch, "Dataset": dataset, "Method": "DEBA",
                     "Accuracy (%)": _pm(c["acc_method_mean"], c["acc_method_std"]),
                     "ΔAcc": _fmt(c["delta_acc"], sign=True),
                     "Time (s)": _pm(c["time_method_mean"], c["time_method_std"], 1),
                     "Speedup (%)": _pm(c["speedup_mean"], c["speedup_std"], 1),
                     "Throughput": f"{c['throughput']:.2f}×", "Seeds": seeds})
    return rows


def to_markdown(rows) -> str:
    if not rows:
        return "_No runs for this table._\n"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r.get(h, "")) for h in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
