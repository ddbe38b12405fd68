"""A method against the fixed batch, per architecture and dataset (SPEC §4), with every time read
two ways (SPEC §8): measured (the wall clock of the runs, with its noise) and modelled (each
epoch's steps times the step-time table's time at its batch size). Verdicts use the modelled
speedup, which does not depend on what else the machine was doing. Pure functions over records.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict

from .analysis import aggressiveness
from .analysis import sample_std as _std


def _mean_or_none(values):
    values = list(values)
    return None if not values or any(v is None for v in values) else statistics.fmean(values)


def modelled_time(record, steptime) -> float | None:
    """Σ over epochs of (steps of the epoch × step time at its batch size), or None when the
    table lacks the run's cell or one of its sizes, or the record lacks steps (before schema 2)."""
    table = (steptime or {}).get(record["arch"], {}).get(record["dataset"], {}).get("step_s")
    if not table:
        return None
    total = 0.0
    for e in record["epochs"]:
        step = table.get(str(e["batch_size"]))
        if step is None or e.get("steps") is None:
            return None
        total += e["steps"] * step
    return total


def clock_noise(record) -> float | None:
    """Coefficient of variation of a fixed run's epoch times after the first: at one batch size
    every epoch does the same work, so this spread is the clock's, not the method's."""
    times = [e["epoch_time_s"] for e in record["epochs"][1:]]
    return statistics.pstdev(times) / statistics.fmean(times) if len(times) > 1 else None


def decisions(runs) -> dict:
    """What the scheduler did over `runs`: increases, rollbacks, holds and the sizes it used."""
    epochs = [e for r in runs for e in r["epochs"]]
    sizes = [e["batch_size"] for e in epochs]
    return {"increase": sum(e["decision"] == "increase" for e in epochs),
            "rollback": sum(e["decision"] == "rollback" for e in epochs),
            "hold": sum(e["decision"] == "hold" for e in epochs),
            "batch_min": min(sizes), "batch_max": max(sizes)}


def _samples_per_s(record):
    samples = sum(e.get("samples", 0) for e in record["epochs"])
    return samples / record["train_time_s"] if samples and record["train_time_s"] else None


def compare(records, variant="baseline", steptime=None, method="deba") -> dict:
    """{(arch, dataset): the `variant` runs of `method` against the fixed baseline runs, paired
    by seed}; `steptime` is {arch: {dataset: table}} from the steptime stage."""
    method_name, fixed, method = method, defaultdict(dict), defaultdict(dict)
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
            out[key] = _cell(seeds, [fixed[key][s] for s in seeds],
                             [method[key][s] for s in seeds], steptime)
    return out


def _cell(seeds, f, m, steptime) -> dict:
    acc_f = [r["final_test_accuracy"] for r in f]
    acc_m = [r["final_test_accuracy"] for r in m]
    t_f = [r["train_time_s"] for r in f]
    t_m = [r["train_time_s"] for r in m]
    speedups = [100.0 * (a - b) / a for a, b in zip(t_f, t_m)]
    c = {"seeds": seeds, "acc_fixed": acc_f, "acc_method": acc_m,
         "acc_fixed_mean": statistics.fmean(acc_f), "acc_fixed_std": _std(acc_f),
         "acc_method_mean": statistics.fmean(acc_m), "acc_method_std": _std(acc_m),
         "delta_acc": statistics.fmean(acc_m) - statistics.fmean(acc_f),
         "time_fixed_mean": statistics.fmean(t_f), "time_fixed_std": _std(t_f),
         "time_method_mean": statistics.fmean(t_m), "time_method_std": _std(t_m),
         "speedup_mean": statistics.fmean(speedups), "speedup_std": _std(speedups),
         "throughput": statistics.fmean(t_f) / statistics.fmean(t_m),
         "samples_per_s_fixed": _mean_or_none(_samples_per_s(r) for r in f),
         "samples_per_s_method": _mean_or_none(_samples_per_s(r) for r in m),
         "aggressiveness": statistics.fmean(aggressiveness(r) for r in m),
         "rollbacks": sum(e["decision"] == "rollback" for r in m for e in r["epochs"]),
         "final_batch": statistics.fmean(r["epochs"][-1]["batch_size"] for r in m),
         **decisions(m)}
    # the clock's noise: within the fixed runs, and across them where there are several seeds
    within = [n for n in (clock_noise(r) for r in f) if n is not None]
    spreads = ([statistics.median(within)] if within else []) + \
        ([statistics.stdev(t_f) / statistics.fmean(t_f)] if len(t_f) > 1 else [])
    c["noise_pct"] = 100 * max(spreads) if spreads else None
    c["speedup_noise"] = math.sqrt(2) * c["noise_pct"] if spreads else None  # two noisy times
    model_f = [modelled_time(r, steptime) for r in f]
    model_m = [modelled_time(r, steptime) for r in m]
    if None in model_f or None in model_m:
        c.update(model_speedup_mean=None, model_speedup_std=None, model_throughput=None,
                 model_time_fixed_mean=None, model_time_method_mean=None, disagree=None)
    else:
        model_speedups = [100.0 * (1 - b / a) for a, b in zip(model_f, model_m)]
        c.update(model_speedup_mean=statistics.fmean(model_speedups),
                 model_speedup_std=_std(model_speedups),
                 model_throughput=statistics.fmean(model_f) / statistics.fmean(model_m),
                 model_time_fixed_mean=statistics.fmean(model_f),
                 model_time_method_mean=statistics.fmean(model_m))
        c["disagree"] = (c["speedup_noise"] is not None and abs(
            c["speedup_mean"] - c["model_speedup_mean"]) > c["speedup_noise"])
    modelled = c["model_speedup_mean"] is not None
    c["verdict_speedup"] = c["model_speedup_mean"] if modelled else c["speedup_mean"]
    c["speedup_basis"] = "modelled" if modelled else "measured"
    return c


def summary_rows(delta_accs) -> dict:
    """Table 3's summary: architectures degraded by more than 1 point, and mean |ΔAcc|."""
    values = list(delta_accs)
    return {"degraded": sum(d < -1 for d in values), "total": len(values),
            "mean_abs_delta_acc": statistics.fmean(abs(d) for d in values) if values else None}


def outcome(c) -> str:
    """What the method did: degraded (ΔAcc < −1), benefit (ΔAcc ≥ 0 and faster), or marginal."""
    if c["delta_acc"] < -1:
        return "degraded"
    if c["delta_acc"] >= 0 and c["verdict_speedup"] > 0:
        return "benefit"
    return "marginal"


CLEAR_SPEEDUP = 10.0  # percent: a speedup at least this large is a benefit, not marginal


def prediction_held(prediction: str, c, seed_spread: float = 1.0) -> tuple:
    """("yes" | "no" | "n/a", why) for the profile's prediction against the outcome; the
    criteria are stated in the report's glossary."""
    delta, speed = c["delta_acc"], c["verdict_speedup"]
    per_seed = [b - a for a, b in zip(c["acc_fixed"], c["acc_method"])]
    spread = _std(per_seed)
    facts = f"ΔAcc {delta:+.2f}, {c['speedup_basis']} speedup {speed:.1f}%"
    if prediction == "benefit":
        ok = delta >= 0 and speed > 0
        return ("yes" if ok else "no"), f"{facts}: benefit needs ΔAcc ≥ 0 and a speedup > 0"
    if prediction == "marginal":
        ok = delta >= -1 and not (delta >= 0 and speed >= CLEAR_SPEEDUP)
        return ("yes" if ok else "no"), (f"{facts}: marginal needs ΔAcc ≥ −1 and no clear "
                                         f"benefit (ΔAcc ≥ 0 with a speedup ≥ {CLEAR_SPEEDUP:g}%)")
    if prediction.startswith(("benefit through rollbacks", "unreliable")):
        if spread is None:
            return "n/a", f"{facts}: one seed, so the seed spread cannot be checked"
        facts += f", per-seed ΔAcc std {spread:.2f}"
        if prediction.startswith("benefit through rollbacks"):
            ok = delta >= 0 and speed > 0 and c["rollbacks"] > 0 and spread > seed_spread
            return ("yes" if ok else "no"), (
                f"{facts}, {c['rollbacks']} rollbacks: needs a benefit, rollbacks, and a "
                f"per-seed ΔAcc std > {seed_spread:g}")
        signs = {d > 0 for d in per_seed if d != 0}
        ok = spread > seed_spread or len(signs) > 1
        return ("yes" if ok else "no"), (f"{facts}: seed-dependent needs a per-seed ΔAcc std > "
                                         f"{seed_spread:g} or seeds that disagree in sign")
    return "n/a", f"{facts}: the class makes no prediction"
