"""The step-time table of SPEC §8: the time of one training step at each batch size a study can
reach, so run times can be modelled from a run's batch sizes instead of read off a wall clock
that depends on whatever else the machine was doing.

    table = measure(trainer, sizes=[16, 40, 64, 96], reference=64, repeats=15, steps=5)

Every size is timed from one saved model state, round-robin over the sizes (a noisy stretch of
time then touches every size alike), `repeats` times after `warmup` untimed rounds. A step is
timed as the loop runs it (SPEC §8): a repeat is one call of the loop's own epoch over batches
drawn as the run draws them (the gather from device-resident data or the loader's wait,
augmentation, resize, then forward, backward, update and the loop's per-step sums), noting the
time whenever the loop asks for the next batch. Of the `steps` steps after the first (and after
the loader's prefetched batches, which no step waits for), a repeat keeps the fastest and the
median; the epoch's own start (its permutation, the loader's first batch, the call's set-up and
end sync) is kept per size as `epoch_start_s`, and a modelled epoch is steps × step + start.

How the repeats become one time per size (`estimate`):
- "median" (SPEC §8 as written): the median over repeats of each repeat's median step.
- "paired" (the default, an option beyond the SPEC): the shape across sizes from the fastest
  steps, the level from the reference's median step. Each round's fastest step over the same
  round's fastest at the reference size (the fixed batch every speedup is taken against, timed
  right beside it), the median of those ratios times the reference's median step; rounds that
  ran slow across the board (their median size over its fastest round above DISTURBED) are
  left out. A process beside ours only ever adds time to a step, so a repeat's fastest step is
  its least disturbed one (measured on 2 cores with a CPU burner beside it: the mean of a
  repeat's steps moved step-time ratios by up to 5×, its fastest step by a few percent), and a
  modelled speedup only reads these ratios. The level is the typical step, as the runs take
  it, over the rounds kept: the fastest alone read 0.79-0.87 of the fixed runs' measured time
  on this machine. The level is the machine's at the time of measuring: a 2-core VM here ran
  the same step at 7.5 ms and at 12 ms minutes apart, which the report's modelled/measured
  column shows against the runs' clock noise.
"""
from __future__ import annotations

import copy
import os
import statistics
import time
from contextlib import contextmanager, suppress
from itertools import islice

import torch

from deba_pipeline.core.policies.multiplicative import floor_times
from deba_pipeline.core.scheduler import fit_world


def ladder(start: int, growth: float, rollback: float, low: int, high: int,
           multiple: int = 1) -> list:
    """The sizes the multiplicative policy reaches from `start` by growing only or rolling back
    only, clamped to [low, high] (SPEC §1: 64, 96, 144, ... and 64, 51, 40, ...), each rounded
    to a multiple of `multiple`, the processes of a data-parallel run, as the scheduler does."""
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


@contextmanager
def device_to_ourselves(step: int = 10):
    """Run every thread of this process ahead of other processes while measuring (SPEC §8: the
    table is measured with the cores to itself): real-time scheduling (SCHED_FIFO, which the
    kernel still caps at sched_rt_runtime_us of each second) where the OS allows it, else the
    priority raised by `step`, else unchanged. Both need root or CAP_SYS_NICE. Yields how the
    table was measured, for the record."""
    task = "/proc/self/task"  # Linux: scheduling is per thread, and torch's pool already exists
    threads = [int(t) for t in os.listdir(task)] if os.path.isdir(task) else [0]
    undo = _realtime(threads)
    status = "real-time scheduling"
    if undo is None:
        undo, status = _niced(threads, step)
    try:
        yield status
    finally:
        for restore in undo:
            with suppress(OSError):
                restore()


def _realtime(threads):
    """Switch `threads` to SCHED_FIFO; returns the calls that switch them back, or None."""
    if not hasattr(os, "sched_setscheduler"):
        return None
    undo = []
    fifo = os.sched_param(os.sched_get_priority_min(os.SCHED_FIFO))
    for tid in threads:
        try:
            policy, param = os.sched_getscheduler(tid), os.sched_getparam(tid)
            os.sched_setscheduler(tid, os.SCHED_FIFO, fifo)
            undo.append(lambda tid=tid, policy=policy, param=param:
                        os.sched_setscheduler(tid, policy, param))
        except ProcessLookupError:
            continue  # a thread that ended meanwhile
        except OSError:
            for restore in undo:
                restore()
            return None
    return undo


def _niced(threads, step):
    undo, status = [], f"priority raised by {step}"
    for tid in threads:
        try:
            value = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, value - step)
            undo.append(lambda tid=tid, value=value: os.setpriority(os.PRIO_PROCESS, tid, value))
        except ProcessLookupError:
            continue
        except OSError as exc:
            status = (f"normal priority ({type(exc).__name__}: raising it needs root or "
                      f"CAP_SYS_NICE); other processes may have disturbed it")
            break
    return undo, status


DISTURBED = 1.25  # a round whose typical size ran this much over its fastest round is left out
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
             beside: dict | None = None, typical: dict | None = None) -> tuple[dict, int]:
    """({size: seconds per step}, rounds used) from {size: [fastest seconds, one per round]};
    `beside[size]` holds the reference's time measured right after that size in each round (a
    disturbance of a second or so then touches both sides of a ratio), else the round's own
    reference time is used. `typical[size]` holds each round's median step, the level:
    "median" returns its median over rounds, and "paired" scales its ratios by the reference's
    median over the rounds it keeps (without it, by the reference's fastest steps)."""
    typical = typical or rounds
    if how == "median" or reference not in rounds:
        return {s: statistics.median(typical[s]) for s in rounds}, len(rounds[next(iter(rounds))])
    fastest = {s: min(t) for s, t in rounds.items()}
    count = len(rounds[reference])
    slowness = [statistics.median(t[i] / fastest[s] for s, t in rounds.items())
                for i in range(count)]
    kept = [i for i in range(count) if slowness[i] <= DISTURBED] or range(count)
    ref = statistics.median(typical[reference][i] for i in kept)
    partner = beside or {s: rounds[reference] for s in rounds}
    return {s: ref * statistics.median(t[i] / partner[s][i] for i in kept)
            for s, t in rounds.items()}, len(kept)


def measure(trainer, sizes, reference: int | None = None, repeats: int = 15, steps: int = 5,
            warmup: int = 1, how: str = "paired", runs_step_s: float | None = None) -> dict:
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

    def timed(size) -> tuple:
        """(fastest, typical, epoch start) of one call of the loop's epoch over batches drawn as
        the run draws them: the first, then the loader's prefetched ones (steps that do not wait
        for its workers), then `steps` timed steps, of which the fastest and the median are
        kept. The first interval holds the epoch's start (its permutation, the loader's first
        batch); with the call's set-up and end sync, less a typical step, that is the start."""
        model.load_state_dict(saved[0])
        optimizer.load_state_dict(saved[1])
        stamps = []
        ahead = 1 + data.prefetched
        sync()
        began = time.perf_counter()
        trainer.train_epoch(size, _stamped(islice(data.train_batches(size), ahead + steps),
                                           stamps, sync))
        sync()
        ended = time.perf_counter()
        intervals = [b - a for a, b in zip(stamps, stamps[1:])]
        steady = intervals[ahead:] or intervals[1:] or intervals
        typical = statistics.median(steady)
        start = stamps[0] - began + intervals[0] - typical + ended - stamps[-1]
        return min(steady), typical, max(0.0, start)

    kept = [size for size in sorted(sizes) if size <= data.train_size]
    samples = {part: {size: [] for size in kept} for part in ("fastest", "typical", "start")}
    times = samples["fastest"]
    order, too_big = [], []
    extra = 0

    def latest():  # the reference's typical steps in the last set of rounds
        return samples["typical"].get(reference, [])[-repeats:]

    beside = {size: [] for size in times} if how == "paired" and reference in times else None
    with device_to_ourselves() as priority:
        _rounds(timed, samples, order, too_big, warmup, repeats, optimizer, trainer.device,
                reference, beside)
        while extra < EXTRA and _slow_throughout(latest(), runs_step_s):
            extra += 1
            _rounds(timed, samples, order, too_big, 0, repeats, optimizer, trainer.device,
                    reference, beside)
    model.load_state_dict(saved[0])
    optimizer.load_state_dict(saved[1])
    data.generator.set_state(saved[2])
    if beside is not None:
        beside = {size: beside[size] for size in times}  # sizes that ran out of memory: gone
    step_s, used = estimate(times, reference, how, beside, samples["typical"]) if times \
        else ({}, 0)
    slow = _slow_throughout(latest(), runs_step_s)
    return {"step_s": {str(s): v for s, v in step_s.items()},
            "epoch_start_s": {str(s): statistics.median(t) for s, t in samples["start"].items()},
            "estimate": how, "rounds_used": used, "extra_rounds": extra * repeats,
            "slow_throughout": slow, "data_path": data.path,
            "spread": {str(s): [min(t), max(t)] for s, t in times.items()},
            "rounds_s": {str(s): t for s, t in times.items()},
            "typical_s": {str(s): t for s, t in samples["typical"].items()},
            "order": order, "out_of_memory": too_big, "measured_at": priority}


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
