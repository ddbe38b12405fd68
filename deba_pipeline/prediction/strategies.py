"""What each strategy of a study will do and save, from the profile alone (docs/method.md
"prediction"): its batch trajectory (a step schedule's is known; the gns rule's is simulated from
the noise scale the model gives at each batch; DEBA's signals are not in the model, so its
outcomes are bracketed between never adapting and adapting at every chance, in either
direction), replayed into time on a step-time table. Pure functions."""

from __future__ import annotations

import math
import statistics

from deba_pipeline.core.policies.multiplicative import floor_times
from deba_pipeline.core.scheduler import fit_world
from deba_pipeline.prediction.model import TRANSFER, NoiseCurve, progress_after, step_gain
from deba_pipeline.prediction.replay import Epoch, epoch_seconds, time_to_progress


def lr_factor(scaling: str, batch: int, base: int) -> float | None:
    """η/η₀ of a policy's `lr_scaling` at `batch` (None: AdaScale's, the gain itself)."""
    ratio = batch / base
    return {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}.get(scaling)


def _next(batch, decision, deba, train_size, world=1):
    """The policy's next batch, clamped and fitted to a multiple of the processes as the
    scheduler does."""
    high = min(deba.max_batch, train_size)
    if decision == "increase":
        return fit_world(min(high, floor_times(deba.growth, batch)), world, deba.min_batch)
    if decision == "rollback":
        return fit_world(
            max(deba.min_batch, floor_times(deba.rollback, batch)), world, deba.min_batch
        )
    return batch


def adaptations(deba, epochs: int) -> int:
    """The most batch changes the scheduler's cadence allows in `epochs` (epoch 1 holds; after
    a change, `cooldown` epochs hold)."""
    return 0 if epochs < 2 else (epochs - 2) // (deba.cooldown + 1) + 1


def simulate(
    curve: NoiseCurve,
    deba,
    epochs: int,
    train_size: int,
    decide,
    transfer: float = TRANSFER,
    world: int = 1,
) -> list:
    """The epochs a rule takes under the scheduler's cadence (epoch 1 holds; after a change it
    holds `cooldown` epochs), `decide(batch, window of noise scales)` its rule, each epoch's
    noise scale the model's at its batch and progress."""
    scaling = (deba.policy_options or {}).get("lr_scaling", "none")
    out, batch, done, last, window = [], curve.base, 0.0, 0, []
    for number in range(1, epochs + 1):
        factor = lr_factor(scaling, batch, curve.base)
        out.append(Epoch(batch, factor))
        steps = train_size // batch
        window.append(curve.at(done) * (batch / curve.base) ** transfer)
        done = progress_after(curve, batch, done, steps, factor, transfer)
        if number == 1 or number <= last + deba.cooldown:
            continue
        recent = window if deba.window == "full" else window[-deba.window :]
        decision = decide(batch, recent)
        if decision != "hold":
            batch, last = _next(batch, decision, deba, train_size, world), number
    return out


def gns_rule(deba):
    def decide(batch, window):
        noise = statistics.median(window)
        return (
            "increase"
            if noise >= batch * deba.growth
            else "rollback"
            if noise <= batch * deba.rollback
            else "hold"
        )

    return decide


def trajectories(
    curve: NoiseCurve,
    deba,
    epochs: int,
    train_size: int,
    transfer: float = TRANSFER,
    world: int = 1,
) -> dict:
    """{label: epochs} the strategy may take: one for rules the model decides, three for those
    it cannot (DEBA's signals): never adapting, growing at every chance, rolling back at every
    chance."""
    rule = deba.rule
    if rule == "gns":
        return {
            "simulated": simulate(curve, deba, epochs, train_size, gns_rule(deba), transfer, world)
        }
    if rule == "step_schedule":
        at = set((deba.rule_options or {}).get("at", ()))
        scaling = (deba.policy_options or {}).get("lr_scaling", "none")
        out, batch = [], curve.base
        for number in range(1, epochs + 1):
            out.append(Epoch(batch, lr_factor(scaling, batch, curve.base)))
            if number in at and number > 1:
                batch = _next(batch, "increase", deba, train_size, world)
        return {"schedule": out}
    return {
        name: simulate(curve, deba, epochs, train_size, lambda b, w, d=decision: d, transfer, world)
        for name, decision in (
            ("never adapts", "hold"),
            ("grows at every chance", "increase"),
            ("rolls back at every chance", "rollback"),
        )
    }


def outcome(
    curve: NoiseCurve,
    epochs: list,
    table: dict,
    train_size: int,
    target: float,
    transfer: float = TRANSFER,
) -> dict:
    """Time to the target progress, saving against the fixed batch, and the accuracy risks:
    progress at the end over the fixed run's (below 1: fewer epochs' worth of learning in the
    same epochs) and whether a learning rate beyond twice the gain stalls an epoch."""
    fixed = [Epoch(curve.base, 1.0)] * len(epochs)
    base = time_to_progress(curve, fixed, table, train_size, target, transfer)
    mine = time_to_progress(curve, epochs, table, train_size, target, transfer)
    done, stalls = 0.0, False
    for e in epochs:
        gain = step_gain(curve.at(done), e.batch, curve.base, e.lr_factor, transfer)
        stalls |= gain <= 0
        done = progress_after(curve, e.batch, done, train_size // e.batch, e.lr_factor, transfer)
    fixed_end = len(epochs) * (train_size // curve.base)
    return {
        "batches": [e.batch for e in epochs],
        "time_to_target_s": mine,
        "fixed_time_to_target_s": base,
        "saving_pct": 100 * (1 - mine / base) if math.isfinite(mine) else None,
        "progress_vs_fixed": done / fixed_end,
        "stalls": stalls,
        "seconds": sum(epoch_seconds(table, e.batch, train_size // e.batch) for e in epochs),
    }


def phases(curve: NoiseCurve, table: dict, train_size: int, transfer: float = TRANSFER) -> list:
    """Per profile epoch (a phase of training): its noise scale, the largest useful batch (the
    largest the table has whose step still does at least half the work of its samples taken
    one base batch at a time, gain ≥ s/2: the critical batch) and the fastest batch on this
    table (least seconds per unit of progress at AdaScale's rate)."""
    sizes = sorted(int(s) for s in table["step_s"] if int(s) <= train_size)
    out, start = [], 0.0
    for end, noise in zip(curve.ends, curve.noise):
        gains = {b: step_gain(noise, b, curve.base, None, transfer) for b in sizes}
        useful = [b for b in sizes if gains[b] >= b / curve.base / 2]
        fastest = min(sizes, key=lambda b: table["step_s"][str(b)] / gains[b])
        out.append(
            {
                "from": start,
                "to": end,
                "noise_scale": noise,
                "largest_useful_batch": max(useful) if useful else None,
                "fastest_batch": fastest,
            }
        )
        start = end
    return out


def headroom(
    curve: NoiseCurve,
    table: dict,
    train_size: int,
    target: float,
    epochs: int,
    transfer: float = TRANSFER,
) -> dict:
    """The fixed batch's time to the target over the best schedule's: each phase at its fastest
    batch, at AdaScale's rate (what no rule can beat in this model)."""
    fastest = [p["fastest_batch"] for p in phases(curve, table, train_size, transfer)]
    best, done = [], 0.0
    for _ in range(epochs):  # each epoch at the fastest batch of the phase it starts in
        batch = fastest[curve.segment(done)]
        best.append(Epoch(batch, None))
        done = progress_after(curve, batch, done, train_size // batch, None, transfer)
    fixed = [Epoch(curve.base, 1.0)]
    base = time_to_progress(curve, fixed, table, train_size, target, transfer)
    mine = time_to_progress(curve, best, table, train_size, target, transfer)
    return {
        "fixed_s": base,
        "best_s": mine,
        "ratio": base / mine,
        "best_batches": [e.batch for e in best],
    }
