"""A method against the fixed batch, per architecture and dataset (docs/pipeline.md), with every
time read two ways (docs/method.md): measured (the wall clock of the runs, with its noise) and
modelled (each epoch's steps times the step-time table's time at its batch size). Verdicts use the
modelled speedup, which does not depend on what else the machine was doing. Pure functions over
records.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import replace

from deba_pipeline.core.record import unpack_hits
from deba_pipeline.report.analysis import aggressiveness
from deba_pipeline.report.analysis import sample_std as _std
from deba_pipeline.report.cell import MARGIN, Cell
from deba_pipeline.report.intervals import (
    delta_interval,
    pooled_spread,
    speedup_interval,
    test_set_terms,
    widened,
)
from deba_pipeline.report.modelled import (
    fixed_check,
    fixed_noise_pct,
    modelled_time,
    table_noise,
)
from deba_pipeline.report.outcome import OPEN, outcome, seeds_to_settle


def _mean_or_none(values):
    values = list(values)
    return None if not values or any(v is None for v in values) else statistics.fmean(values)


def decisions(runs) -> dict:
    """What the scheduler did over `runs`: increases, rollbacks, holds and the sizes it used. A
    decision at the last epoch changes nothing (no epoch follows it) and is not counted."""
    epochs = [e for r in runs for e in r["epochs"][:-1]]
    sizes = [e["batch_size"] for r in runs for e in r["epochs"]]
    return {
        "increase": sum(e["decision"] == "increase" for e in epochs),
        "rollback": sum(e["decision"] == "rollback" for e in epochs),
        "hold": sum(e["decision"] == "hold" for e in epochs),
        "batch_min": min(sizes),
        "batch_max": max(sizes),
    }


def took(runs) -> str | None:
    """ "grew at every chance" where, in every run, the rule chose to grow at every epoch the
    scheduler consulted it (after epoch 1 and outside the cooldown) and never held or rolled
    back, "never adapted" where it never changed the batch: either way it took a fixed schedule
    and what was tested is that schedule, not a rule that chooses. A decision at the last epoch
    changes nothing and is left out. None otherwise, or for runs without a cooldown."""
    kinds = set()
    for r in runs:
        cooldown = ((r.get("config") or {}).get("deba") or {}).get("cooldown")
        if cooldown is None:
            return None
        last, consulted = 0, []
        for e in r["epochs"][:-1]:
            if e["epoch"] > 1 and e["epoch"] > last + cooldown:
                consulted.append(e["decision"])
            if e["decision"] != "hold":
                last = e["epoch"]
        kinds.add(
            "grew at every chance"
            if consulted and set(consulted) == {"increase"}
            else "never adapted"
            if set(consulted) <= {"hold"}
            else None
        )
    return kinds.pop() if len(kinds) == 1 else None


def _samples_per_s(record):
    samples = sum(e.get("samples", 0) for e in record["epochs"])
    return samples / record["train_time_s"] if samples and record["train_time_s"] else None


def _pairs(records, method_name: str, variant: str) -> dict:
    """{(arch, dataset): (seeds, fixed runs, method runs)} paired by seed."""
    fixed, method = defaultdict(dict), defaultdict(dict)
    for r in records:
        key = (r["arch"], r["dataset"])
        if r["method"] == "fixed" and r["variant"] == "baseline":
            fixed[key][r["seed"]] = r
        elif r["method"] == method_name and r["variant"] == variant:
            method[key][r["seed"]] = r
    out = {}
    for key in sorted(set(fixed) & set(method)):
        seeds = sorted(set(fixed[key]) & set(method[key]))
        if seeds:
            out[key] = (seeds, [fixed[key][s] for s in seeds], [method[key][s] for s in seeds])
    return out


def pooled_delta_spread(records) -> float | None:
    """The per-seed ΔAcc spread pooled over every cell of the study (each method and variant
    against the fixed batch, per architecture and dataset): the floor of each cell's own."""
    kinds = {(r["method"], r["variant"]) for r in records if r["method"] != "fixed"}
    groups = [
        [b["final_test_accuracy"] - a["final_test_accuracy"] for a, b in zip(f, m)]
        for method, variant in sorted(kinds)
        for _, f, m in _pairs(records, method, variant).values()
    ]
    return pooled_spread(groups)


def compare(
    records,
    variant="baseline",
    steptime=None,
    method="deba",
    margin: float = MARGIN,
    floor: float | None = None,
) -> dict:
    """{(arch, dataset): the `variant` runs of `method` against the fixed baseline runs, paired
    by seed}; `steptime` is {arch: {dataset: table}} from the steptime stage; `margin`, the
    non-inferiority margin of an outcome (points of ΔAcc); `floor`, the least per-seed ΔAcc
    spread an interval assumes (`pooled_delta_spread`)."""
    return {
        key: _cell(seeds, f, m, steptime, margin, floor)
        for key, (seeds, f, m) in _pairs(records, method, variant).items()
    }


def _cell(seeds, f, m, steptime, margin: float = MARGIN, floor: float | None = None) -> Cell:
    acc_f = [r["final_test_accuracy"] for r in f]
    acc_m = [r["final_test_accuracy"] for r in m]
    t_f = [r["train_time_s"] for r in f]
    t_m = [r["train_time_s"] for r in m]
    speedups = [100.0 * (a - b) / a for a, b in zip(t_f, t_m)]
    deltas = [b - a for a, b in zip(acc_f, acc_m)]
    test_se, test_spread = test_set_terms(
        [unpack_hits(r) for r in f], [unpack_hits(r) for r in m]
    ) or (None, None)
    c = {
        "seeds": seeds,
        "margin": margin,
        "acc_fixed": acc_f,
        "acc_method": acc_m,
        "delta_accs": deltas,
        "spread_floor": floor,
        "test_se": test_se,
        "test_spread": test_spread,
        "delta_acc_ci": delta_interval(deltas, floor, test_se),
        "speedups": speedups,
        "speedup_ci": speedup_interval(speedups),
        "acc_fixed_mean": statistics.fmean(acc_f),
        "acc_fixed_std": _std(acc_f),
        "acc_method_mean": statistics.fmean(acc_m),
        "acc_method_std": _std(acc_m),
        "delta_acc": statistics.fmean(acc_m) - statistics.fmean(acc_f),
        "time_fixed_mean": statistics.fmean(t_f),
        "time_fixed_std": _std(t_f),
        "time_method_mean": statistics.fmean(t_m),
        "time_method_std": _std(t_m),
        "speedup_mean": statistics.fmean(speedups),
        "speedup_std": _std(speedups),
        "throughput": statistics.fmean(t_f) / statistics.fmean(t_m),
        "samples_per_s_fixed": _mean_or_none(_samples_per_s(r) for r in f),
        "samples_per_s_method": _mean_or_none(_samples_per_s(r) for r in m),
        "aggressiveness": statistics.fmean(aggressiveness(r) for r in m),
        "final_batch": statistics.fmean(r["epochs"][-1]["batch_size"] for r in m),
        "took": took(m),
        **decisions(m),
    }
    c["noise_pct"] = fixed_noise_pct(f)
    c["speedup_noise"] = (
        None if c["noise_pct"] is None else math.sqrt(2) * c["noise_pct"]
    )  # two noisy times
    c.update(_modelled(f, m, steptime, c["speedup_mean"], c["speedup_noise"]))
    modelled = c["model_speedup_mean"] is not None
    basis = "model_speedup" if modelled else "speedup"
    c["verdict_speedup"], c["verdict_speedup_ci"] = c[f"{basis}_mean"], c[f"{basis}_ci"]
    c["verdict_speedups"] = c[f"{basis}s"]
    c["speedup_basis"] = "modelled" if modelled else "measured"
    cell = Cell(**c, no_comparison=baseline_problem(f))
    cell = replace(cell, outcome=outcome(cell))
    if cell.outcome in OPEN:
        needed, needed_range = seeds_to_settle(cell)
        cell = replace(cell, seeds_needed=needed, seeds_needed_range=needed_range)
    return cell


def _modelled(f, m, steptime, speedup_mean, speedup_noise) -> dict:
    """The cell's modelled times and speedups (docs/method.md: modelled against measured, side by
    side), all None where a table lacks a size the runs took."""
    model_f = [modelled_time(r, steptime) for r in f]
    model_m = [modelled_time(r, steptime) for r in m]
    if None in model_f or None in model_m:
        return dict.fromkeys(
            (
                "model_speedup_mean",
                "model_speedup_std",
                "model_throughput",
                "model_time_fixed_mean",
                "model_time_method_mean",
                "disagree",
                "model_speedups",
                "model_speedup_ci",
                "model_ratio_fixed",
                "model_ratio_within_noise",
                "model_ratio_beside",
                "model_speedup_table_noise",
            )
        )
    speedups = [100.0 * (1 - b / a) for a, b in zip(model_f, model_m)]
    mean, table = statistics.fmean(speedups), table_noise(f, m, steptime)
    return {
        **fixed_check(f, steptime),
        "model_speedup_table_noise": table,
        "model_speedups": speedups,
        "model_speedup_mean": mean,
        "model_speedup_std": _std(speedups),
        "model_throughput": statistics.fmean(model_f) / statistics.fmean(model_m),
        "model_time_fixed_mean": statistics.fmean(model_f),
        "model_time_method_mean": statistics.fmean(model_m),
        # the table's own noise holds for every seed alike: it widens the interval over seeds
        "model_speedup_ci": widened(speedup_interval(speedups), mean, table),
        "disagree": speedup_noise is not None and abs(speedup_mean - mean) > speedup_noise,
    }


LEARNED = 0.2  # of the way from chance to 100%: a fixed run below it did not learn
LOSS_MOVED = 0.9  # a fixed run whose last training loss is above this share of its first's


def baseline_problem(fixed) -> str | None:
    """Why the fixed runs cannot stand as a baseline (one of them got less than LEARNED of the
    way from chance to 100%, or its training loss barely moved), in words; None where they
    can. Against a baseline that did not learn, every strategy looks good or bad by chance."""
    for r in fixed:
        classes, accuracy = r.get("num_classes"), r["final_test_accuracy"]
        if classes:
            chance = 100.0 / classes
            if accuracy < chance + LEARNED * (100.0 - chance):
                return f"its seed {r['seed']} ended at {accuracy:.1f}%, near chance ({chance:.1f}%)"
        losses = [e.get("train_loss") for e in r["epochs"]]
        if (
            len(losses) > 1
            and all(isinstance(v, (int, float)) for v in losses)
            and losses[0] > 0
            and losses[-1] > LOSS_MOVED * losses[0]
        ):
            return (
                f"its seed {r['seed']}'s training loss barely moved ({losses[0]:.3f} to "
                f"{losses[-1]:.3f})"
            )
    return None


def summary_rows(delta_accs) -> dict:
    """Table 3's summary: architectures degraded by more than 1 point, and mean |ΔAcc|."""
    values = list(delta_accs)
    return {
        "degraded": sum(d < -1 for d in values),
        "total": len(values),
        "mean_abs_delta_acc": statistics.fmean(abs(d) for d in values) if values else None,
    }
