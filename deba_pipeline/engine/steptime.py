"""The step-time table of SPEC §8: the time of one training step at each batch size a study can
reach, so run times can be modelled from a run's batch sizes instead of read off a wall clock
that depends on whatever else the machine was doing.

    table = measure(trainer, sizes=[16, 40, 64, 96], reference=64, repeats=15, steps=5)

Every size is timed from one saved model state, round-robin over the sizes (a noisy stretch of
time then touches every size alike), `repeats` times after `warmup` untimed rounds. A repeat
times `steps` steps one by one and keeps the fastest: a process beside ours only ever adds time
to a step (measured on 2 cores with a CPU burner beside it: the mean of a repeat's steps moved
step-time ratios by up to 5×, its fastest step by a few percent).
A step is the forward, backward and optimiser update of the training loop on batches already on
the device.

How the repeats become one time per size (`estimate`):
- "median" (SPEC §8 as written): the median over repeats.
- "paired" (the default, an option beyond the SPEC): each round's times over the same round's
  time at the reference size (the fixed batch every speedup is taken against), the median of
  those ratios times the reference's median; rounds that ran slow across the board (their median
  size over its fastest round above DISTURBED) are left out. A modelled speedup only reads these
  ratios. Measured on 2 cores, four tables of the quick study, two of them beside a CPU burner:
  the spread of a cell's modelled speedup was up to 21 points with "median" (a host slowdown of
  ~2x over half the rounds), 4 with "paired".
"""
from __future__ import annotations

import copy
import os
import statistics
import time
from contextlib import contextmanager, suppress
from itertools import islice

import torch

from ..policies.multiplicative import floor_times
from ..scheduler import fit_world


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
    return f"cpu ({torch.get_num_threads()} threads)"


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


SLOW = 1.5   # a reference step this much slower than the runs' fastest: the machine is slow
EXTRA = 2    # at most this many more sets of `repeats` rounds while it stays slow


def _slow_throughout(reference_times, calm_step_s) -> bool:
    """Every reference step well over the runs' own fastest: a host-wide slow stretch (seen on
    a 2-core VM: every step ~2x slower for minutes, with the sizes' ratios changed)."""
    return bool(reference_times and calm_step_s and min(reference_times) > SLOW * calm_step_s)


def estimate(rounds: dict, reference: int, how: str = "paired",
             beside: dict | None = None) -> tuple[dict, int]:
    """({size: seconds per step}, rounds used) from {size: [seconds, one per round]};
    `beside[size]` holds the reference's time measured right after that size in each round (a
    disturbance of a second or so then touches both sides of a ratio), else the round's own
    reference time is used."""
    if how == "median" or reference not in rounds:
        return {s: statistics.median(t) for s, t in rounds.items()}, len(rounds[next(iter(rounds))])
    fastest = {s: min(t) for s, t in rounds.items()}
    count = len(rounds[reference])
    slowness = [statistics.median(t[i] / fastest[s] for s, t in rounds.items())
                for i in range(count)]
    kept = [i for i in range(count) if slowness[i] <= DISTURBED] or range(count)
    ref = statistics.median(rounds[reference][i] for i in kept)
    partner = beside or {s: rounds[reference] for s in rounds}
    return {s: ref * statistics.median(t[i] / partner[s][i] for i in kept)
            for s, t in rounds.items()}, len(kept)


def measure(trainer, sizes, reference: int | None = None, repeats: int = 15, steps: int = 5,
            warmup: int = 1, how: str = "paired", calm_step_s: float | None = None) -> dict:
    """{"step_s": {size: seconds per step}, "spread": {size: [min, max]}, "rounds_s": {size:
    [seconds per round]}, "order": [...], "out_of_memory": [sizes that did not fit],
    "measured_at": priority, "estimate": how, "rounds_used": n}; sizes above the training set
    are skipped. `reference` (the fixed batch size) is measured even when not in `sizes`.
    `calm_step_s`, the fastest step the runs themselves took at `reference`, tells a machine
    slow all through the measurement: then up to EXTRA more sets of rounds are measured, and
    the disturbed-round filter keeps the calm ones if any come."""
    sizes = set(sizes) | ({reference} if reference else set())
    model, optimizer, data = trainer.model, trainer.optimizer, trainer.data
    saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()),
             data.generator.get_state())
    batches = {size: list(islice(data.train_batches(size), steps))
               for size in sorted(sizes) if size <= data.train_size}
    sync = (lambda: torch.cuda.synchronize(trainer.device)) if trainer.device.type == "cuda" \
        else (lambda: None)

    def timed(size) -> float:
        """The fastest of `steps` steps, each timed alone: another process only ever adds time
        to a step, so a repeat's fastest step is its least disturbed one."""
        model.load_state_dict(saved[0])
        optimizer.load_state_dict(saved[1])
        fastest = float("inf")
        for batch in batches[size]:
            sync()
            began = time.perf_counter()
            trainer.train_epoch(size, [batch])
            sync()
            fastest = min(fastest, time.perf_counter() - began)
        return fastest

    times = {size: [] for size in batches}
    order, too_big = [], []
    extra = 0
    beside = {size: [] for size in times} if how == "paired" and reference in times else None
    with device_to_ourselves() as priority:
        _rounds(timed, times, order, too_big, warmup, repeats, optimizer, trainer.device,
                reference, beside)
        while extra < EXTRA and _slow_throughout(times.get(reference), calm_step_s):
            extra += 1
            _rounds(timed, times, order, too_big, 0, repeats, optimizer, trainer.device,
                    reference, beside)
    model.load_state_dict(saved[0])
    optimizer.load_state_dict(saved[1])
    data.generator.set_state(saved[2])
    if beside is not None:
        beside = {size: beside[size] for size in times}  # sizes that ran out of memory: gone
    step_s, used = estimate(times, reference, how, beside) if times else ({}, 0)
    slow = _slow_throughout(times.get(reference), calm_step_s)
    return {"step_s": {str(s): v for s, v in step_s.items()}, "estimate": how,
            "rounds_used": used, "extra_rounds": extra * repeats, "slow_throughout": slow,
            "spread": {str(s): [min(t), max(t)] for s, t in times.items()},
            "rounds_s": {str(s): t for s, t in times.items()},
            "order": order, "out_of_memory": too_big, "measured_at": priority}


def _rounds(timed, times, order, too_big, warmup, repeats, optimizer, device,
            reference=None, beside=None) -> None:
    """`warmup` untimed and `repeats` timed rounds over every size, round-robin; with `beside`,
    the reference size is timed again right after each other size."""
    for round_ in range(warmup + repeats):
        for size in list(times):
            try:
                seconds = timed(size)
                partner = timed(reference) if beside is not None and size != reference \
                    else seconds
            except torch.OutOfMemoryError:
                optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                too_big.append(size)
                del times[size]
                continue
            if round_ >= warmup:
                times[size].append(seconds)
                order.append(size)
                if beside is not None:
                    beside[size].append(partner)
