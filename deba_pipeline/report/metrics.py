"""The numbers DVC shows: metrics.json (a few per architecture and dataset, per strategy and per
ablation) and answer.json (the answer in one short string per cell)."""

from __future__ import annotations

import math
import statistics

from deba_pipeline.report.comparison import summary_rows


def headline(answers: dict) -> dict:
    """{"arch on dataset": "gns? -26% time -0.3pt"}: the answer in one short string per cell for
    `dvc metrics show` and `dvc exp show` ("use gns: ..." where the intervals decide it, "gns?"
    where they do not, "keep the fixed batch"); metrics.json holds every number."""
    out = {}
    for cell, a in answers.items():
        cell = cell.replace("/", " on ", 1)  # `dvc exp show --keep '.* on .*'` finds these
        if a["use"] == "no comparison":
            out[cell] = "no comparison: the fixed baseline did not learn"
            continue
        if a["use"] == "fixed" or a["speedup_pct"] is None:
            out[cell] = "keep the fixed batch" if a["use"] == "fixed" else "no strategy yet"
            continue
        name = f"use {a['strategy']}:" if a["use"] == a["strategy"] else f"{a['strategy']}?"
        out[cell] = f"{name} {-a['speedup_pct']:+.0f}% time {a['delta_acc']:+.1f}pt"
    return out


def by_strategy(by_method: dict) -> dict:
    """{strategy: {"arch/dataset": "inconclusive: -21% time -0.3pt"}}: each strategy against the
    fixed batch in every cell, for strategies.json (a DVC metric apart from answer.json, whose
    one line per cell stays narrow), so `dvc exp show --keep 'Experiment|.*\\.test_resnet/digits'`
    sets the strategies side by side (a column each)."""
    return {
        name: {
            f"{arch}/{ds}": f"{c.outcome}: {-c.verdict_speedup:+.0f}% time {c.delta_acc:+.1f}pt"
            for (arch, ds), c in sorted(cells.items())
        }
        for name, cells in sorted(by_method.items())
    }


def rounded(value, digits=4):
    """Metrics to 4 decimals: `dvc exp show` should not print 1.4e-14 for a zero."""
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    return round(value, digits) if isinstance(value, float) else value


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _noise_of_mean(half_widths):
    """The half-width of a mean of independent values (each architecture's own table) from
    theirs: in quadrature, over their count; None where one is unknown."""
    values = list(half_widths)
    if not values or any(v is None for v in values):
        return None
    return math.sqrt(sum(v * v for v in values)) / len(values)


def _strategies(by_method) -> dict:
    """{arch/dataset: {strategy: its headline numbers}}, each against the same fixed runs."""
    return {
        f"{arch}/{ds}": {
            m: {
                "delta_acc": c.delta_acc,
                "speedup_modelled_pct": c.model_speedup_mean,
                "speedup_measured_pct": c.speedup_mean,
                "throughput_modelled": c.model_throughput,
                "increases": c.increase,
                "rollbacks": c.rollback,
                "holds": c.hold,
                "final_batch": c.final_batch,
            }
            for m, found_m in by_method.items()
            for key, c in found_m.items()
            if key == (arch, ds)
        }
        for (arch, ds) in sorted({k for f in by_method.values() for k in f})
    }


def _ablations(found, ablation_dataset) -> dict:
    """{variant: its numbers summed or averaged over the ablation dataset's architectures}."""
    out = {}
    for v, cells in found.items():
        on = [c for (a, ds), c in cells.items() if ds == ablation_dataset]
        s = summary_rows(c.delta_acc for c in on)
        out[v] = {
            "mean_abs_delta_acc": s["mean_abs_delta_acc"],
            "degraded": s["degraded"],
            "mean_speedup_modelled_pct": _mean(c.model_speedup_mean for c in on),
            "mean_speedup_modelled_table_noise_pct": _noise_of_mean(
                c.model_speedup_table_noise for c in on
            ),
            "increases": sum(c.increase for c in on),
            "rollbacks": sum(c.rollback for c in on),
            "holds": sum(c.hold for c in on),
            "batch_min": min((c.batch_min for c in on), default=None),
            "batch_max": max((c.batch_max for c in on), default=None),
        }
    return out


def build_metrics(records, found, checked, ablation_dataset, by_method=None) -> dict:
    """A few headline numbers per architecture, so `dvc metrics show` and `dvc exp show` stay
    readable; everything else is in the tables."""
    main = found["baseline"]
    per = {
        f"{arch}/{ds}": {
            "delta_acc": c.delta_acc,
            "speedup_modelled_pct": c.model_speedup_mean,
            "speedup_modelled_table_noise_pct": c.model_speedup_table_noise,
            "speedup_measured_pct": c.speedup_mean,
            "increases": c.increase,
            "rollbacks": c.rollback,
            "holds": c.hold,
            "batch_min": c.batch_min,
            "batch_max": c.batch_max,
        }
        for (arch, ds), c in main.items()
    }
    verdicts = [row["held"] for row in checked if row["held"] in ("yes", "no")]
    metrics = {
        "runs": len(records),
        "per_arch": per,
        "predictions": {"held": verdicts.count("yes"), "checked": len(verdicts)},
    }
    if main:
        metrics["deba"] = {
            "mean_delta_acc": statistics.fmean(c.delta_acc for c in main.values()),
            "mean_speedup_modelled_pct": _mean(c.model_speedup_mean for c in main.values()),
            "mean_speedup_measured_pct": statistics.fmean(c.speedup_mean for c in main.values()),
            "degraded": summary_rows(c.delta_acc for c in main.values())["degraded"],
        }
    if by_method and len(by_method) > 1:  # docs/peers.md: each strategy against the same fixed runs
        metrics["strategies"] = _strategies(by_method)
    if ablation_dataset is not None:
        metrics["ablations"] = _ablations(found, ablation_dataset)
    return metrics
