"""Validate the progress model (docs/method.md "prediction") on runs no one here made, and on the
committed quick study.

    python -m benchmarks.prediction   # a few seconds; writes benchmarks/results/prediction.json

Pollux: for each workload, from its smallest-batch trace alone (the noise scale it measured per
epoch), predict the steps every larger-batch run took to reach its last epoch's progress. The
transfer exponent α is fitted leaving the predicted workload out (the 28 pairs of bert, cifar10,
deepspeech2, imagenet and ncf); in-sample figures (α fitted on all five) are beside, labelled.
yolov3 is reported apart, as the issue that set this check asks.

Study: given each adaptive run's own batch trajectory, the modelled speedup to accuracy each cell
was predicted to have from its profile runs, beside the one its runs had (`deba_pipeline.report`).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from deba_pipeline.engine.files import write_json
from deba_pipeline.prediction.model import steps_between
from deba_pipeline.prediction.traces import noise_curve, read_workload

from .study_prediction import study_check

TRACES = Path(__file__).parent / "traces" / "pollux"
RESULTS = Path(__file__).parent / "results" / "prediction.json"
SCORED = ("bert", "cifar10", "deepspeech2", "imagenet", "ncf")
APART = ("yolov3",)
GRID = [i / 100 for i in range(101)]  # α from 0 to 1


def pairs(workload: dict, transfer: float) -> list:
    """[(batch, predicted steps, observed steps, error %)] for every larger-batch run."""
    base = min(workload)
    curve = noise_curve(workload[base])
    out = []
    for batch, trace in sorted(workload.items()):
        if batch == base:
            continue
        predicted = steps_between(curve, batch, 0.0, trace.progress[-1], None, transfer)
        observed = trace.iteration[-1]
        out.append((batch, predicted, observed, 100 * (predicted - observed) / observed))
    return out


def fit(workloads: dict, names) -> float:
    """The α of GRID with the least total absolute error over `names`."""
    return min(GRID, key=lambda a: sum(abs(p[3]) for n in names for p in pairs(workloads[n], a)))


def summary(rows: list) -> dict:
    errors = [abs(r["error_pct"]) for r in rows]
    return {
        "within_15pct": sum(e <= 15 for e in errors),
        "of": len(errors),
        "median_abs_error_pct": round(statistics.median(errors), 2),
        "p80_abs_error_pct": round(statistics.quantiles(errors, n=10)[7], 1),
    }


def rows(workload: dict, name: str, alpha: float) -> list:
    return [
        {
            "workload": name,
            "batch": batch,
            "base": min(workload),
            "alpha": alpha,
            "predicted_steps": round(predicted, 1),
            "observed_steps": observed,
            "error_pct": round(error, 2),
        }
        for batch, predicted, observed, error in pairs(workload, alpha)
    ]


def pollux(root: Path = TRACES) -> dict:
    workloads = {name: read_workload(root / name) for name in SCORED + APART}
    everywhere = fit(workloads, SCORED)
    left_out = {name: fit(workloads, [n for n in SCORED if n != name]) for name in SCORED}
    scored = [r for n in SCORED for r in rows(workloads[n], n, left_out[n])]
    apart = [r for n in APART for r in rows(workloads[n], n, everywhere)]
    return {
        **summary(scored),
        "pairs": scored,
        "alpha_left_out": left_out,
        "in_sample": {
            **summary([r for n in SCORED for r in rows(workloads[n], n, everywhere)]),
            "alpha": everywhere,
        },
        "no_transfer": summary([r for n in SCORED for r in rows(workloads[n], n, 0.0)]),
        "yolov3_apart": {**summary(apart), "alpha": everywhere, "pairs": apart},
    }


def main(argv=None) -> int:
    result = {"pollux": pollux(), "study": study_check(Path("."))}
    write_json(RESULTS, result)
    p = result["pollux"]
    print(
        f"Pollux, leave one workload out: {p['within_15pct']} of {p['of']} within ±15%, "
        f"median |error| {p['median_abs_error_pct']}% (in sample, α = "
        f"{p['in_sample']['alpha']}: {p['in_sample']['within_15pct']} of "
        f"{p['in_sample']['of']}, {p['in_sample']['median_abs_error_pct']}%; no transfer: "
        f"{p['no_transfer']['within_15pct']} of {p['no_transfer']['of']}, "
        f"{p['no_transfer']['median_abs_error_pct']}%; yolov3 apart: "
        f"{p['yolov3_apart']['within_15pct']} of {p['yolov3_apart']['of']})"
    )
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
