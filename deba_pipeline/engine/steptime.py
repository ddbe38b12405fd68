"""The step-time table of SPEC §8: the time of one training step at each batch size a study can
reach, so run times can be modelled from a run's batch sizes instead of read off a wall clock
that depends on whatever else the machine was doing.

    table = measure(trainer, sizes=[16, 40, 64, 96], repeats=15, steps=5, warmup=1)

Every size is timed from one saved model state, round-robin over the sizes (a noisy stretch of
time then touches every size alike), `repeats` times after `warmup` untimed rounds; the median
over repeats is kept. A repeat times `steps` steps one by one and keeps the fastest: a process
beside ours only ever adds time to a step (measured on 2 cores with a CPU burner beside it: the
mean of a repeat's steps moved step-time ratios by up to 5×, its fastest step by a few percent).
A step is the forward, backward and optimiser update of the training loop on batches already on
the device.
"""
from __future__ import annotations

import copy
import os
import statistics
import time
from contextlib import contextmanager
from itertools import islice

import torch

from ..policies.multiplicative import floor_times


def ladder(start: int, growth: float, rollback: float, low: int, high: int) -> list:
    """The sizes the multiplicative policy reaches from `start` by growing only or rolling back
    only, clamped to [low, high] (SPEC §1: 64, 96, 144, ... and 64, 51, 40, ...)."""
    sizes, size = {start}, start
    while size < high and (grown := min(high, floor_times(growth, size))) > size:
        sizes.add(grown)
        size = grown
    size = start
    while size > low and (shrunk := max(low, floor_times(rollback, size))) < size:
        sizes.add(shrunk)
        size = shrunk
    return sorted(sizes)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


@contextmanager
def device_to_ourselves(step: int = 10):
    """Raise the scheduling priority of every thread of this process by `step` while measuring,
    where the OS allows it (root or CAP_SYS_NICE), so a process beside ours barely runs (SPEC §8:
    the table is measured with the cores to itself). Measured on 2 cores with a CPU burner
    beside it: step-time ratios within 2 % of a quiet machine's, against 3-30 % without.
    Yields how the table was measured, for the record."""
    task = "/proc/self/task"  # Linux: niceness is per thread, and torch's pool already exists
    threads = [int(t) for t in os.listdir(task)] if os.path.isdir(task) else [0]
    before, status = {}, f"priority raised by {step}"
    for tid in threads:
        try:
            value = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, value - step)
            before[tid] = value
        except ProcessLookupError:
            continue  # a thread that ended meanwhile
        except OSError as exc:
            status = (f"normal priority ({type(exc).__name__}: raising it needs root or "
                      f"CAP_SYS_NICE); other processes may have disturbed it")
            break
    try:
        yield status
    finally:
        for tid, value in before.items():
            try:
                os.setpriority(os.PRIO_PROCESS, tid, value)
            except OSError:
                pass


def measure(trainer, sizes, repeats: int = 15, steps: int = 5, warmup: int = 1) -> dict:
    """{"step_s": {size: median seconds per step}, "spread": {size: [min, max]}, "order": [...],
    "out_of_memory": [sizes that did not fit], "measured_at": priority}; sizes above the
    training set are skipped."""
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
    with device_to_ourselves() as how:
        _rounds(timed, times, order, too_big, warmup, repeats, optimizer, trainer.device)
    model.load_state_dict(saved[0])
    optimizer.load_state_dict(saved[1])
    data.generator.set_state(saved[2])
    return {"step_s": {str(s): statistics.median(t) for s, t in times.items()},
            "spread": {str(s): [min(t), max(t)] for s, t in times.items()},
            "order": order, "out_of_memory": too_big, "measured_at": how}


def _rounds(timed, times, order, too_big, warmup, repeats, optimizer, device) -> None:
    """`warmup` untimed and `repeats` timed rounds over every size, round-robin."""
    for round_ in range(warmup + repeats):
        for size in list(times):
            try:
                seconds = timed(size)
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
