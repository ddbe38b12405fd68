"""Modelled times (docs/method.md): a run's time from its batch sizes and a step-time table, the
level the runs' own moment sets, and how far the table's own noise can move a modelled speedup.
Pure functions over records and tables."""

from __future__ import annotations

import copy
import math
import statistics
from collections import defaultdict
from statistics import NormalDist

from deba_pipeline.core.options import finite_number
from deba_pipeline.report.intervals import LEVEL  # the table's noise joins intervals at it


def _seconds(value, low_ok: bool) -> bool:
    return finite_number(value) and (value >= 0 if low_ok else value > 0)


def table_problem(table, needed=()) -> str | None:
    """What makes a step-time table unusable, or None: no step times, a time that is not a
    positive finite number of seconds, an epoch start below 0 or not finite, or a batch size in
    `needed` (sizes the runs reached) that it lacks without having run out of memory there or
    being beyond the training set."""
    if (
        not isinstance(table, dict)
        or not isinstance(table.get("step_s"), dict)
        or not table["step_s"]
    ):
        return "it holds no step times"
    for size, seconds in table["step_s"].items():
        if not _seconds(seconds, low_ok=False):
            return f"its step time at batch {size} is {seconds!r}, not a positive finite number"
    for size, seconds in (table.get("epoch_start_s") or {}).items():
        if not _seconds(seconds, low_ok=True):
            return f"its epoch start at batch {size} is {seconds!r}, not a finite number >= 0"
    skipped = {str(s) for part in ("out_of_memory", "beyond_data") for s in table.get(part) or ()}
    missing = sorted({str(s) for s in needed} - set(table["step_s"]) - skipped, key=int)
    if missing:
        return f"it lacks batch sizes the runs reached: {', '.join(missing)}"
    return _disagrees(table) if "estimate" in table else None


def _disagrees(table) -> str | None:
    """What in a measured table disagrees with the rounds it keeps: each step time and epoch
    start recomputed from them must be the one it states (a hand-edited value, resealed, moved
    a modelled speedup from 5.3% to 24.8%)."""
    from deba_pipeline.timing.estimates import estimate

    try:
        computed = estimate(table["rounds"], table["reference"], table["estimate"])
    except (
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        ZeroDivisionError,
        statistics.StatisticsError,
    ):
        return "it lacks the rounds its step times come from, or they are malformed"
    for name, part in (("step time", "step_s"), ("epoch start", "epoch_start_s")):
        for size, seconds in computed[part].items():
            value = (table.get(part) or {}).get(size)
            if not isinstance(value, (int, float)) or abs(value - seconds) > 1e-9 * max(
                abs(seconds), 1e-12
            ):
                return (
                    f"its {name} at batch {size} is {value!r}, but its own rounds give {seconds!r}"
                )
    return None


def epoch_times(record, steptime) -> list | None:
    """Each epoch's modelled seconds: its steps × the step time at its batch size, plus the
    epoch's own start at that size where the table has it (the permutation, the loader's first
    batch); None when the table lacks the run's cell or one of its sizes, or the record lacks
    steps (before schema 2)."""
    table = (steptime or {}).get(record["arch"], {}).get(record["dataset"], {})
    steps, starts = table.get("step_s"), table.get("epoch_start_s", {})
    if not steps:
        return None
    out = []
    for e in record["epochs"]:
        size = str(e["batch_size"])
        if size not in steps or e.get("steps") is None:
            return None
        out.append(e["steps"] * steps[size] + starts.get(size, 0.0))
    return out


def modelled_time(record, steptime) -> float | None:
    """Σ over epochs of `epoch_times`, or None where one is not known."""
    epochs = epoch_times(record, steptime)
    return None if epochs is None else sum(epochs)


def clock_noise(record) -> float | None:
    """Coefficient of variation of a fixed run's epoch times after the first: at one batch size
    every epoch does the same work, so this spread is the clock's, not the method's."""
    times = [e["epoch_time_s"] for e in record["epochs"][1:]]
    return statistics.pstdev(times) / statistics.fmean(times) if len(times) > 1 else None


def probe_factor(record, table) -> float | None:
    """The step a fixed run timed beside its epochs (its `step_probe`) over the table's step at
    that size: how much slower (> 1) or faster the machine ran then than while the table was
    measured; None without a probe or without that size."""
    probe = record.get("step_probe")
    if not probe or not table:
        return None
    at = (table.get("step_s") or {}).get(str(probe["batch_size"]))
    return probe["step_s"] / at if at else None


def at_runs_level(steptime, records) -> dict:
    """The tables with their level moved to the runs' own moment: each table's times times the
    median `probe_factor` of the fixed runs of its cell (their steps timed beside their epochs),
    its shape (the ratios between sizes, all a modelled speedup reads) unchanged. A table whose
    cell has no probed run keeps its own level. The factor is kept as `level_factor`."""
    factors = defaultdict(list)
    for r in records:
        if r["method"] == "fixed":
            table = steptime.get(r["arch"], {}).get(r["dataset"])
            factor = probe_factor(r, table)
            if factor:
                factors[(r["arch"], r["dataset"])].append(factor)
    out = copy.deepcopy(steptime)
    for (arch, dataset), found in factors.items():
        table, k = out[arch][dataset], statistics.median(found)
        for part in ("step_s", "epoch_start_s"):
            table[part] = {s: v * k for s, v in (table.get(part) or {}).items()}
        table["level_factor"] = k
    return out


def own_level(record, steptime, first: int = 0) -> float | None:
    """A fixed run's modelled time at the step timed beside it: the check that a table times a
    step as the loop runs it (docs/method.md), measured side by side rather than minutes apart. Its
    epochs at the probed size take the probe's step and the probe's own epoch start (on the
    streaming path the loader's start is much of an epoch); any other size (after running out
    of memory) takes the table's, scaled by the probe over the table. From epoch `first` + 1."""
    table = steptime.get(record["arch"], {}).get(record["dataset"])
    factor = probe_factor(record, table)
    if factor is None or modelled_time(record, steptime) is None:
        return None
    probe, steps, starts = record["step_probe"], table["step_s"], table.get("epoch_start_s", {})
    own_start = statistics.median(probe["starts_s"]) if probe.get("starts_s") else None
    total = 0.0
    for e in record["epochs"][first:]:
        size = str(e["batch_size"])
        if e["batch_size"] == probe["batch_size"] and own_start is not None:
            total += e["steps"] * probe["step_s"] + own_start
        else:
            total += factor * (e["steps"] * steps[size] + starts.get(size, 0.0))
    return total


def _sum(values, first):
    return None if values is None else sum(values[first:])


def fixed_noise_pct(fixed) -> float | None:
    """The clock's noise over a cell's fixed runs, in percent: the larger of the median spread of
    epoch times within a run (`clock_noise`) and the spread of their times across seeds."""
    times = [r["train_time_s"] for r in fixed]
    within = [n for n in (clock_noise(r) for r in fixed) if n is not None]
    spreads = ([statistics.median(within)] if within else []) + (
        [statistics.stdev(times) / statistics.fmean(times)] if len(times) > 1 else []
    )
    return 100 * max(spreads) if spreads else None


def fixed_check(fixed, steptime) -> dict:
    """The check (docs/method.md) that a table times a step as the loop runs it: the fixed runs'
    modelled time over their measured one, averaged over seeds, each at the step timed beside it
    where it has one (else at the table's level), and whether it is within the clock's noise of 1.
    Both from the second epoch on, as the clock noise is read: the first carries one-time costs (the
    kernels' and the allocator's warm-up: 0.39 s against 0.25 s for test_efficientnet's next
    epochs) that no step time holds, and it set one quick-study cell 4% under."""
    first = [1 if len(r["epochs"]) > 1 else 0 for r in fixed]  # past the warm-up, as the noise
    modelled = [
        own_level(r, steptime, n) or _sum(epoch_times(r, steptime), n) for r, n in zip(fixed, first)
    ]
    if None in modelled:
        return {
            "model_ratio_fixed": None,
            "model_ratio_beside": None,
            "model_ratio_within_noise": None,
        }
    ratio = statistics.fmean(
        m / sum(e["epoch_time_s"] for e in r["epochs"][n:])
        for m, r, n in zip(modelled, fixed, first)
    )
    noise = fixed_noise_pct(fixed)
    return {
        "model_ratio_fixed": ratio,
        "model_ratio_beside": all(r.get("step_probe") for r in fixed),
        "model_ratio_within_noise": None if noise is None else abs(ratio - 1) * 100 <= noise,
    }


def table_noise(fixed, method, steptime, level: float = LEVEL) -> float | None:
    """Half-width, in points at `level`, of the mean modelled speedup over paired seeds from the
    table's own noise: each size's relative standard error (`ratio_error`) times how much the
    speedup moves per relative change of that size's step time,
    d speedup / d ln(step_b) = -100 (n_m,b - n_f,b T_m / T_f) step_b / T_f, averaged over seeds,
    added in quadrature over sizes (their rounds are timed apart), each error floored by the
    table's pooled one (`pooled_error`; the reference's stays 0). None where a size the runs
    took has no error (a table from before errors, or from too few rounds to tell one)."""
    arch, dataset = fixed[0]["arch"], fixed[0]["dataset"]
    table = steptime.get(arch, {}).get(dataset, {})
    errors, steps = table.get("ratio_error"), table.get("step_s")
    if not errors or not steps:
        return None
    moves = defaultdict(float)
    for f, m in zip(fixed, method):
        t_f, t_m = modelled_time(f, steptime), modelled_time(m, steptime)
        if t_f is None or t_m is None:
            return None
        for record, weight in ((m, 1.0), (f, -t_m / t_f)):
            for e in record["epochs"]:
                size = str(e["batch_size"])
                moves[size] += weight * e["steps"] * steps[size] / t_f / len(fixed)
    if any(errors.get(size) is None for size in moves):  # too few rounds to tell: not known
        return None
    floor = pooled_error(errors)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return (
        z
        * 100
        * math.sqrt(
            sum((moves[s] * max(errors[s], floor if errors[s] else 0.0)) ** 2 for s in moves)
        )
    )


def pooled_error(errors: dict) -> float:
    """The median of a table's nonzero size errors: every size was timed on one machine in one
    stretch, so one size's error, estimated from a dozen rounds, is floored by the table's own
    (on the micro study, batch 51's error ranged 1.4-7.7% over seven tables, their medians
    1.8-4.3%; a rerun on CI moved a speedup by 2.5 points where 0.6 was stated)."""
    known = [e for e in errors.values() if e]
    return statistics.median(known) if known else 0.0
