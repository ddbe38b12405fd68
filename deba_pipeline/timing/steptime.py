"""The step-time table of docs/method.md: the time of one training step at each batch size a study
can reach, so run times can be modelled from a run's batch sizes instead of read off a wall clock
that depends on whatever else the machine was doing.

    table = measure(trainer, sizes=[16, 40, 64, 96], reference=64, repeats=15, steps=5)

Every size is timed from one snapshot of the trainer, round-robin over the sizes (a noisy stretch
of time then touches every size alike), `repeats` times after `warmup` untimed rounds. A step is
timed as the loop runs it: a round is one call of the loop's own epoch over batches drawn as the
run draws them (the gather or the loader's wait, augmentation, resize, then forward, backward,
update and the loop's per-step sums), noting the time whenever the loop asks for the next batch.
Of the `steps` steps after the first (and after the loader's prefetched batches, which no step
waits for), a round keeps the fastest and the median; the epoch's own start (its permutation, the
loader's first batch, the call's set-up and end sync) is kept too, and a modelled epoch is
steps × step + start.

A table keeps each size's rounds on their own (`rounds`: size -> its samples), and every number
it states is computed from one size's rounds and the reference's (`estimate`), so a table can
take more sizes later without timing again the ones it has (`joined`). Two estimates:
- "median" (the reference method): the median over rounds of each round's median step.
- "paired" (the default, an option: docs/method.md): each round of a size is timed with the
  reference size (the fixed batch every speedup is taken against) right beside it; the size's
  step is the median of its fastest step over the reference's beside it, times the reference's
  median step. A process beside ours only ever adds time to a step, so a round's fastest step is
  its least disturbed one (on 2 cores beside a CPU burner the mean of a round's steps moved the
  ratios by up to 5×, the fastest by a few percent), and a modelled speedup only reads ratios.
  Rounds that ran slow (over DISTURBED times the size's fastest) are left out, never more than
  half of them (`calm_rounds`).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from contextlib import nullcontext
from itertools import islice

import torch
from scipy.stats import median_abs_deviation

from deba_pipeline.core.policies.multiplicative import floor_times
from deba_pipeline.core.scheduler import fit_world
from deba_pipeline.engine.checkpoint import restore, trainer_state
from deba_pipeline.timing.priority import device_to_ourselves

DISTURBED = 1.25  # a round this much over the size's fastest round is left out
KEPT_AT_LEAST = 0.5  # of the rounds, the calmest: a few rounds' spread says little of the noise
ESTIMATES = ("paired", "median")
SLOW = 1.25  # a typical reference step this much over the runs' typical: the machine is slow
EXTRA = 1  # at most this many more sets of `repeats` rounds while it stays slow
PARTS = ("fastest_s", "typical_s", "starts_s")  # a round's samples, one list each per size


def ladder(
    start: int, growth: float, rollback: float, low: int, high: int, multiple: int = 1
) -> list:
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


def calm_rounds(slowness) -> list:
    """The indices of the rounds to keep: those not over DISTURBED, or, where fewer than
    KEPT_AT_LEAST of them are, that many of the calmest. A machine that drifts or stays busy
    leaves few rounds under the line (a 2-core VM here: 7 of 15 calm, 4 of 15 beside a CPU
    burner, 2 in one CI run), and a median and spread of two rounds are no estimate."""
    count = len(slowness)
    calm = [i for i in range(count) if slowness[i] <= DISTURBED]
    least = math.ceil(KEPT_AT_LEAST * count)
    if len(calm) >= least:
        return calm
    return sorted(sorted(range(count), key=lambda i: slowness[i])[:least])


def relative_error(values) -> float | None:
    """The standard error of the median of `values` over the median, from their median absolute
    deviation scaled to a normal spread (so one wild round does not set it; the median's error
    is sqrt(pi/2) times the mean's); None (not known) below three values, whose spread says
    nothing."""
    if len(values) < 3:
        return None
    spread = median_abs_deviation(values, scale="normal")
    return math.sqrt(math.pi / 2) * spread / math.sqrt(len(values)) / statistics.median(values)


def _kept(times) -> list:
    fastest = min(times)
    return calm_rounds([t / fastest for t in times])


def estimate(rounds: dict, reference: int, how: str = "paired") -> dict:
    """From `rounds` ({size: {"fastest_s", "typical_s", "starts_s", and with "paired" the
    reference's fastest step timed right beside each round, "beside_s"}}, sizes as strings):
    {"step_s", "epoch_start_s", "ratio_error", "rounds_used"}, each {size: value}. The error is
    the relative standard error of a size's step over the reference's, the table's own noise
    (docs/method.md): what a modelled speedup can move by when the table is measured again (None
    where too few rounds tell it; the reference's is 0, as a speedup reads only ratios to it)."""
    ref = rounds.get(str(reference))
    paired = how == "paired" and ref is not None
    if paired:
        level_rounds = _kept(ref["fastest_s"])
        level = statistics.median(ref["typical_s"][i] for i in level_rounds)
    ref_error = relative_error(ref["typical_s"]) if ref is not None and not paired else 0.0
    out: dict = {"step_s": {}, "epoch_start_s": {}, "ratio_error": {}, "rounds_used": {}}
    for size, samples in rounds.items():
        typical = samples["typical_s"]
        if size == str(reference):
            step, used = (
                (level, len(level_rounds)) if paired else (statistics.median(typical), len(typical))
            )
            error: float | None = 0.0
        elif paired:
            pairs = list(zip(samples["fastest_s"], samples["beside_s"]))
            fastest = min(samples["fastest_s"]), min(samples["beside_s"])
            slowness = [max(a / fastest[0], b / fastest[1]) for a, b in pairs]
            ratios = [pairs[i][0] / pairs[i][1] for i in calm_rounds(slowness)]
            step, used, error = (
                level * statistics.median(ratios),
                len(ratios),
                relative_error(ratios),
            )
        else:
            own = relative_error(typical)
            step, used = statistics.median(typical), len(typical)
            error = None if own is None or ref_error is None else math.hypot(own, ref_error)
        out["step_s"][size], out["ratio_error"][size], out["rounds_used"][size] = step, error, used
        out["epoch_start_s"][size] = statistics.median(samples["starts_s"])
    return out


NOTHING_ADDED = {
    "rounds": {},
    "out_of_memory": [],
    "beyond_data": [],
    "order": [],
    "slow_throughout": False,
}


def joined(kept: dict, added: dict = NOTHING_ADDED, sizes=None) -> dict:
    """`kept` with the sizes `added` timed that it lacks (its own rounds are never replaced, so a
    size's step, and every speedup that reads it, stays what it was), restricted to `sizes`
    where given (with the reference): every stated number computed again from the rounds."""
    rounds = {**added["rounds"], **kept["rounds"]}
    if sizes is not None:
        wanted = {str(s) for s in sizes} | {str(kept["reference"])}
        rounds = {s: r for s, r in rounds.items() if s in wanted}
    new = set(added["rounds"]) - set(kept["rounds"])  # the order of the rounds the table holds
    order = [s for s in kept["order"] if str(s) in rounds] + [
        s for s in added["order"] if str(s) in new and str(s) in rounds
    ]
    out = {
        **added,
        **kept,
        "rounds": dict(sorted(rounds.items(), key=lambda kv: int(kv[0]))),
        "out_of_memory": sorted(set(kept["out_of_memory"]) | set(added["out_of_memory"])),
        "beyond_data": sorted(set(kept["beyond_data"]) | set(added["beyond_data"])),
        "order": order,
        "extra_rounds": kept["extra_rounds"] + added.get("extra_rounds", 0),
        "slow_throughout": kept["slow_throughout"] or added["slow_throughout"],
    }
    return {**out, **estimate(out["rounds"], out["reference"], out["estimate"])}


def measure(
    trainer,
    sizes,
    reference: int,
    repeats: int = 15,
    steps: int = 5,
    warmup: int = 1,
    how: str = "paired",
    runs_step_s: float | None = None,
    alone: bool = True,
) -> dict:
    """The table of `sizes` and `reference` (the fixed batch size, always measured): its rounds,
    the numbers `estimate` states from them, "order" (the sizes as timed), "out_of_memory" and
    "beyond_data" (sizes that did not fit, or exceed the training set: not timed) and
    "measured_at" (the priority). `runs_step_s`, the typical step the runs themselves took at
    `reference`, tells a machine slow all through the measurement: then up to EXTRA more sets
    of rounds are measured, and the filter of slow rounds keeps the calm ones if any come."""
    train_size = trainer.data.train_size
    asked = sorted(set(sizes) | {reference})
    rounds = {str(s): {part: [] for part in PARTS} for s in asked if s <= train_size}
    if how == "paired" and str(reference) in rounds:
        for size, samples in rounds.items():
            if size != str(reference):
                samples["beside_s"] = []
    order: list = []
    too_big: list = []
    saved = copy.deepcopy(trainer_state(trainer))
    with device_to_ourselves() if alone else nullcontext("the run's own") as priority:
        _rounds(trainer, saved, rounds, reference, steps, warmup + repeats, warmup, order, too_big)
        extra = 0
        while extra < EXTRA and _slow_throughout(rounds, reference, repeats, runs_step_s):
            extra += 1
            _rounds(trainer, saved, rounds, reference, steps, repeats, 0, order, too_big)
    restore(trainer, saved)
    return {
        "estimate": how,
        "reference": reference,
        "data_path": trainer.data.path,
        "rounds": rounds,
        **estimate(rounds, reference, how),
        "order": order,
        "out_of_memory": too_big,
        "beyond_data": [s for s in asked if s > train_size],
        "extra_rounds": extra * repeats,
        "slow_throughout": _slow_throughout(rounds, reference, repeats, runs_step_s),
        "measured_at": priority,
    }


def _slow_throughout(rounds, reference, repeats, runs_step_s) -> bool:
    """The typical reference step of the last set of rounds well over the runs' own: a
    host-wide slow stretch (seen on a 2-core VM: every step 1.5-2x slower for minutes, with the
    sizes' ratios changed), which would set the table's level off the runs'."""
    latest = rounds.get(str(reference), {}).get("typical_s", [])[-repeats:]
    return bool(latest and runs_step_s and statistics.median(latest) > SLOW * runs_step_s)


def _rounds(trainer, saved, rounds, reference, steps, count, warmup, order, too_big) -> None:
    """`count` rounds over every size in `rounds`, round-robin, the first `warmup` untimed; a size
    with a "beside_s" list has the reference timed again right after it."""
    for round_ in range(count):
        for size in list(rounds):
            samples = rounds[size]
            try:
                measured = time_epoch(trainer, saved, int(size), steps)
                beside = (
                    time_epoch(trainer, saved, reference, steps)[0]
                    if "beside_s" in samples
                    else None
                )
            except torch.OutOfMemoryError:
                trainer.optimizer.zero_grad(set_to_none=True)
                if trainer.device.type == "cuda":
                    torch.cuda.empty_cache()
                too_big.append(int(size))
                del rounds[size]
                continue
            if round_ < warmup:
                continue
            for part, seconds in zip(PARTS, measured):
                samples[part].append(seconds)
            if beside is not None:
                samples["beside_s"].append(beside)
            order.append(int(size))


def time_epoch(trainer, saved: dict, size: int, steps: int) -> tuple:
    """(fastest, typical, epoch start) of one call of the loop's epoch from the `saved` snapshot
    (`trainer_state`) over batches drawn as the run draws them: the first, then the loader's
    prefetched ones (steps that do not wait for its workers), then `steps` timed steps, of which
    the fastest and the median are kept. The first interval holds the epoch's start (its
    permutation, the loader's first batch); with the call's set-up and end sync, less a typical
    step, that is the start."""
    restore(trainer, copy.deepcopy(saved))  # the optimizer keeps, not copies, the state's tensors
    device = trainer.device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    stamps: list = []
    ahead = 1 + trainer.data.prefetched
    sync()
    began = time.perf_counter()
    trainer.train_epoch(
        size, _stamped(islice(trainer.data.train_batches(size), ahead + steps), stamps, sync)
    )
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
    22.3 ms two runs apart), so only a step timed beside a run can tell whether a table times a
    step as the loop runs it (docs/method.md). The model, optimizer, data order and random draws
    are left as they were. Three steps a round (timed after the first), one round an epoch: about
    5% of a test model's run."""
    size = trainer.spec.train.batch_size
    # streamed, the loader's workers keep filling its queue while the prefetched batches are
    # taken: time as many steps again, so a round reaches the steps that wait for them
    table = measure(
        trainer,
        [size],
        size,
        repeats=1,
        steps=steps + trainer.data.prefetched,
        warmup=0,
        how="median",
        alone=False,
    )
    probe = trainer.record.setdefault(
        "step_probe", {"batch_size": size, "rounds_s": [], "starts_s": []}
    )
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
