"""The step-time table of docs/method.md: the time of one training step at each batch size a study
can reach, so run times can be modelled from a run's batch sizes instead of read off a wall clock
that depends on whatever else the machine was doing.

    table = measure(trainer, sizes=[16, 40, 64, 96], reference=64, repeats=15, steps=5)

Every size is timed from one saved model state, round-robin over the sizes (a noisy stretch of
time then touches every size alike), `repeats` times after `warmup` untimed rounds. A step is
timed as the loop runs it (docs/method.md): a repeat is one call of the loop's own epoch over
batches drawn as the run draws them (the gather from device-resident data or the loader's wait,
augmentation, resize, then forward, backward, update and the loop's per-step sums), noting the
time whenever the loop asks for the next batch. Of the `steps` steps after the first (and after
the loader's prefetched batches, which no step waits for), a repeat keeps the fastest and the
median; the epoch's own start (its permutation, the loader's first batch, the call's set-up and
end sync) is kept per size as `epoch_start_s`, and a modelled epoch is steps × step + start.

How the repeats become one time per size (`estimate`):
- "median" (the reference method): the median over repeats of each repeat's median step.
- "paired" (the default, an option: docs/method.md): the shape across sizes from the fastest
  steps, the level from the reference's median step. Each round's fastest step over the same
  round's fastest at the reference size (the fixed batch every speedup is taken against, timed
  right beside it), the median of those ratios times the reference's median step; rounds that ran
  slow across the board (their median size over its fastest round above DISTURBED) are left out,
  though never more than half of them (`calm_rounds`). A process beside ours only ever adds time
  to a step, so a repeat's fastest step is its least disturbed one (measured on 2 cores with a CPU
  burner beside it: the mean of a repeat's steps moved step-time ratios by up to 5×, its fastest
  step by a few percent), and a modelled speedup only reads these ratios. The level is the typical
  step, as the runs take it, over the rounds kept: the fastest alone read 0.79-0.87 of the fixed
  runs' measured time on this machine. The level is the machine's at the time of measuring: a
  2-core VM here ran the same step at 7.5 ms and at 12 ms minutes apart, which the report's
  modelled/measured column shows against the runs' clock noise.
"""
from __future__ import annotations

import copy
import math
import statistics
import time
from contextlib import nullcontext
from itertools import islice

import torch

from deba_pipeline.core.policies.multiplicative import floor_times
from deba_pipeline.core.scheduler import fit_world
from deba_pipeline.timing.priority import device_to_ourselves


def ladder(start: int, growth: float, rollback: float, low: int, high: int,
           multiple: int = 1) -> list:
    """The sizes the multiplicative policy reaches from `start` by growing only or rolling back
    only, clamped to [low, high] (docs/method.md: 64, 96, 144, ... and 64, 51, 40, ...), each
    rounded to a multiple of `multiple`, the processes of a data-parallel run, as the scheduler
    does."""
    def fit(size):
        return fit_world(size, multiple, low)
    sizes, size = {start}, start
    while size < high and (grown := fit(min(high, floor_times(growth, size)))) > size:
        sizes.add(grown)
        size = grown
    size = start
    while size > low and (shrunk := fit(max(low, floor_times(rollback, size)))) < size:
        sizes.add(shrunk)
        size = shrunk
    return sorted(sizes)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'' if threads == 1 else 's'})"


DISTURBED = 1.25  # a round whose typical size ran this much over its fastest round is left out
KEPT_AT_LEAST = 0.5  # of the rounds, the calmest: a few rounds' spread says little of the noise
ESTIMATES = ("paired", "median")


SLOW = 1.25  # a typical reference step this much over the runs' typical: the machine is slow
EXTRA = 1    # at most this many more sets of `repeats` rounds while it stays slow


def _slow_throughout(reference_times, runs_step_s) -> bool:
    """The typical reference step of the last set of rounds well over the runs' own: a
    host-wide slow stretch (seen on a 2-core VM: every step 1.5-2x slower for minutes, with the
    sizes' ratios changed), which would set the table's level off the runs'."""
    return bool(reference_times and runs_step_s
                and statistics.median(reference_times) > SLOW * runs_step_s)


def estimate(rounds: dict, reference: int, how: str = "paired",
             beside: dict | None = None, typical: dict | None = None) -> tuple[dict, int, dict]:
    """({size: seconds per step}, rounds used, {size: relative standard error of its ratio to
    the reference}) from {size: [fastest seconds, one per round]}; `beside[size]` holds the
    reference's time measured right after that size in each round (a disturbance of a second or
    so then touches both sides of a ratio), else the round's own reference time is used.
    `typical[size]` holds each round's median step, the level: "median" returns its median over
    rounds, and "paired" scales its ratios by the reference's median over the rounds it keeps
    (without it, by the reference's fastest steps). The standard error is the table's own noise
    (docs/method.md), what a modelled speedup can move by when the table is measured again (None
    where too few rounds tell it); the reference's is 0, as a speedup reads only ratios to it."""
    typical = typical or rounds
    if how == "median" or reference not in rounds:
        own = {s: relative_error(typical[s]) for s in rounds}
        ref_error = own.get(reference, 0.0)
        return ({s: statistics.median(typical[s]) for s in rounds},
                len(rounds[next(iter(rounds))]),
                {s: 0.0 if s == reference else None if e is None or ref_error is None
                 else math.hypot(e, ref_error) for s, e in own.items()})
    fastest = {s: min(t) for s, t in rounds.items()}
    count = len(rounds[reference])
    slowness = [statistics.median(t[i] / fastest[s] for s, t in rounds.items())
                for i in range(count)]
    kept = calm_rounds(slowness)
    ref = statistics.median(typical[reference][i] for i in kept)
    partner = beside or {s: rounds[reference] for s in rounds}
    ratios = {s: [t[i] / partner[s][i] for i in kept] for s, t in rounds.items()}
    return ({s: ref * statistics.median(r) for s, r in ratios.items()}, len(kept),
            {s: 0.0 if s == reference else relative_error(r) for s, r in ratios.items()})


def calm_rounds(slowness) -> list:
    """The indices of the rounds to keep: those not over DISTURBED, or, where fewer than
    KEPT_AT_LEAST of them are, that many of the calmest. A machine that drifts or stays busy
    leaves few rounds under the line (a 2-core VM here: 7 of 15 calm, 4 of 15 beside a CPU
    burner, 2 in one CI run), and a median and spread of two rounds are no estimate: that table
    stated no noise at all for a speedup its rerun moved by 3.2 points."""
    count = len(slowness)
    calm = [i for i in range(count) if slowness[i] <= DISTURBED]
    least = math.ceil(KEPT_AT_LEAST * count)
    if len(calm) >= least:
        return calm
    return sorted(sorted(range(count), key=lambda i: slowness[i])[:least])


def relative_error(values) -> float | None:
    """The standard error of the median of `values` over the median, from their median absolute
    deviation (1.4826 MAD estimates a normal spread, and the median's error is sqrt(pi/2) times
    the mean's), so one wild round does not set it; None (not known) below three values, whose
    spread says nothing."""
    if len(values) < 3:
        return None
    middle = statistics.median(values)
    spread = 1.4826 * statistics.median(abs(v - middle) for v in values)
    return math.sqrt(math.pi / 2) * spread / math.sqrt(len(values)) / middle


def measure(trainer, sizes, reference: int | None = None, repeats: int = 15, steps: int = 5,
            warmup: int = 1, how: str = "paired", runs_step_s: float | None = None,
            alone: bool = True) -> dict:
    """{"step_s": {size: seconds per step}, "spread": {size: [min, max]}, "rounds_s": {size:
    [seconds per round]}, "order": [...], "out_of_memory": [sizes that did not fit],
    "measured_at": priority, "estimate": how, "rounds_used": n}; sizes above the training set
    are skipped. `reference` (the fixed batch size) is measured even when not in `sizes`.
    `runs_step_s`, the typical step the runs themselves took at `reference`, tells a machine
    slow all through the measurement: then up to EXTRA more sets of rounds are measured, and
    the disturbed-round filter keeps the calm ones if any come."""
    sizes = set(sizes) | ({reference} if reference else set())
    model, optimizer, data = trainer.model, trainer.optimizer, trainer.data
    saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()),
             data.generator.get_state())
    sync = (lambda: torch.cuda.synchronize(trainer.device)) if trainer.device.type == "cuda" \
        else (lambda: None)
    kept = [size for size in sorted(sizes) if size <= data.train_size]
    samples = {part: {size: [] for size in kept} for part in ("fastest", "typical", "start")}
    times = samples["fastest"]
    order, too_big = [], []
    extra = 0

    def latest():  # the reference's typical steps in the last set of rounds
        return samples["typical"].get(reference, [])[-repeats:]

    def timed(size):
        return _timed(trainer, saved, sync, size, steps)

    beside = {size: [] for size in times} if how == "paired" and reference in times else None
    cuda = [trainer.device] if trainer.device.type == "cuda" else []
    with device_to_ourselves() if alone else nullcontext("the run's own") as priority, \
            torch.random.fork_rng(devices=cuda):  # dropout's draws leave the run's as they were
        _rounds(timed, samples, order, too_big, warmup, repeats, optimizer, trainer.device,
                reference, beside)
        while extra < EXTRA and _slow_throughout(latest(), runs_step_s):
            extra += 1
            _rounds(timed, samples, order, too_big, 0, repeats, optimizer, trainer.device,
                    reference, beside)
    model.load_state_dict(saved[0])
    optimizer.load_state_dict(saved[1])  # the last use of saved: its tensors may stay
    data.generator.set_state(saved[2])
    if beside is not None:
        beside = {size: beside[size] for size in times}  # sizes that ran out of memory: gone
    step_s, used, errors = estimate(times, reference, how, beside, samples["typical"]) \
        if times else ({}, 0, {})
    return {"step_s": {str(s): v for s, v in step_s.items()},
            "epoch_start_s": {str(s): statistics.median(t) for s, t in samples["start"].items()},
            "ratio_error": {str(s): v for s, v in errors.items()},
            "estimate": how, "rounds_used": used, "extra_rounds": extra * repeats,
            "slow_throughout": _slow_throughout(latest(), runs_step_s), "data_path": data.path,
            "spread": {str(s): [min(t), max(t)] for s, t in times.items()},
            "rounds_s": {str(s): t for s, t in times.items()},
            "typical_s": {str(s): t for s, t in samples["typical"].items()},
            # what step_s and epoch_start_s are computed from, so a kept table proves itself
            "reference": reference if reference in times else None,
            "beside_s": None if beside is None else {str(s): t for s, t in beside.items()},
            "starts_s": {str(s): t for s, t in samples["start"].items() if s in times},
            "order": order, "out_of_memory": too_big, "measured_at": priority}


def _timed(trainer, saved, sync, size: int, steps: int) -> tuple:
    """(fastest, typical, epoch start) of one call of the loop's epoch over batches drawn as the
    run draws them, from the `saved` state: the first, then the loader's prefetched ones (steps
    that do not wait for its workers), then `steps` timed steps, of which the fastest and the
    median are kept. The first interval holds the epoch's start (its permutation, the loader's
    first batch); with the call's set-up and end sync, less a typical step, that is the start."""
    trainer.model.load_state_dict(saved[0])
    trainer.optimizer.load_state_dict(copy.deepcopy(saved[1]))  # it keeps, not copies, tensors
    stamps: list = []
    ahead = 1 + trainer.data.prefetched
    sync()
    began = time.perf_counter()
    trainer.train_epoch(size, _stamped(islice(trainer.data.train_batches(size), ahead + steps),
                                       stamps, sync))
    sync()
    ended = time.perf_counter()
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    steady = intervals[ahead:] or intervals[1:] or intervals
    typical = statistics.median(steady)
    start = stamps[0] - began + intervals[0] - typical + ended - stamps[-1]
    return min(steady), typical, max(0.0, start)


def probe_round(trainer, steps: int = 3) -> None:
    """One round of the table's timing of the run's own batch size, taken by a fixed run after
    each epoch and kept in its record (`step_probe`): the median over the run's rounds is a step
    timed beside the run, at the run's priority and over the whole run, where a table takes the
    cores to itself and leaves out slow rounds to get the ratios between sizes right. The
    machine's speed moves between minutes (a 2-core VM here took the same step in 13.6 and
    22.3 ms two runs apart, and a step timed with the cores to itself read 0.72 of the runs'),
    so only a step timed beside a run can tell whether a table times a step as the loop runs it
    (docs/method.md). The model, optimizer, data order and random draws are left as they were. Three
    steps a round (timed after the first), one round an epoch: about 5% of a test model's run."""
    size = trainer.spec.train.batch_size
    probe = trainer.record.setdefault("step_probe", {"batch_size": size, "rounds_s": [],
                                                     "starts_s": []})
    # streamed, the loader's workers keep filling its queue while the prefetched batches are
    # taken: time as many steps again, so a round reaches the steps that wait for them
    table = measure(trainer, [size], size, repeats=1, steps=steps + trainer.data.prefetched,
                    warmup=0, how="median", alone=False)
    probe["rounds_s"].append(table["step_s"][str(size)])
    probe["starts_s"].append(table["epoch_start_s"][str(size)])
    probe["step_s"] = statistics.median(probe["rounds_s"])


def _stamped(batches, stamps: list, sync):
    """`batches`, noting the time whenever the loop asks for the next one: the interval between
    two asks is one step as the loop runs it (the batch's gather, augmentation and resize, or the
    loader's wait, then forward, backward, update and the loop's own sums)."""
    batches = iter(batches)
    while True:
        sync()
        stamps.append(time.perf_counter())
        batch = next(batches, None)
        if batch is None:
            return
        yield batch


def _rounds(timed, samples, order, too_big, warmup, repeats, optimizer, device,
            reference=None, beside=None) -> None:
    """`warmup` untimed and `repeats` timed rounds over every size, round-robin; with `beside`,
    the reference size is timed again right after each other size."""
    for round_ in range(warmup + repeats):
        for size in list(samples["fastest"]):
            try:
                measured = timed(size)
                partner = timed(reference)[0] if beside is not None and size != reference \
                    else measured[0]
            except torch.OutOfMemoryError:
                optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                too_big.append(size)
                for part in samples.values():
                    del part[size]
                continue
            if round_ >= warmup:
                for part, seconds in zip(samples.values(), measured):
                    part[size].append(seconds)
                order.append(size)
                if beside is not None:
                    beside[size].append(partner)
