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

A table keeps each size's rounds on their own (`rounds`: size -> its samples); what it states
is computed from them (timing/estimates.py), so it can take more sizes later.
"""

from __future__ import annotations

import copy
import statistics
import time
from contextlib import nullcontext
from itertools import islice

import torch

from deba_pipeline.core.policies.multiplicative import floor_times
from deba_pipeline.core.scheduler import fit_world
from deba_pipeline.engine.checkpoint import restore, trainer_state
from deba_pipeline.timing.estimates import estimate
from deba_pipeline.timing.priority import device_to_ourselves

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
