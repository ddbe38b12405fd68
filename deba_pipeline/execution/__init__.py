"""Where runs go (SPEC's house: stages → execution → engine). `local` trains each run in this
process, one after another; `ray` submits each as a Ray task, on an embedded Ray or a cluster.
Either way the stage is the only writer of its outputs: a record comes back and is written (by
`write`) the moment its run finishes, so an interrupted stage keeps every finished run.

    records = execute(cfg, specs, write=lambda spec, record: ..., expected_s=[...])

`expected_s`, a rough cost of each run (its architecture's profiled epoch time × epochs), only
orders Ray's work: the longest is submitted first, so it does not trail alone at the end.
"""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

from omegaconf import OmegaConf

log = logging.getLogger(__name__)


def wandb_group(cfg) -> str:
    """One W&B group per invocation: the DVC experiment (else the study) and when the invocation
    began, e.g. `quick 2026-12-01 13:52:07`, so two reproductions of one study never mix."""
    return f"{os.environ.get('DVC_EXP_NAME') or cfg.study.name} {invocation_started()}"


def invocation_started() -> str:
    """When the command the user typed began: the `dvc repro` or `dvc exp run` whose stages this
    process serves (each stage is a process of its own), else this `deba` command. Kept in
    DEBA_INVOCATION for the processes it starts (torchrun's ranks); set it to group by hand."""
    if not os.environ.get("DEBA_INVOCATION"):
        began = _invocation_process().create_time()
        os.environ["DEBA_INVOCATION"] = time.strftime("%Y-%m-%d %H:%M:%S",
                                                      time.localtime(began))
    return os.environ["DEBA_INVOCATION"]


def _invocation_process():
    import psutil
    here = psutil.Process()
    for parent in here.parents():
        try:
            command = parent.cmdline()[:3]
        except psutil.Error:  # a parent of another user, or gone
            continue
        if any(Path(arg).name == "dvc" for arg in command) or "dvc.__main__" in command:
            return parent
    return here


def execute(cfg, specs, write, expected_s=None) -> list:
    """Train (or reuse) every spec where `execution.backend` says; returns the records in the
    order of `specs`."""
    if cfg.execution.backend == "ray":
        from deba_pipeline.execution.ray_tasks import run_on_ray
        return run_on_ray(cfg, specs, write, expected_s)
    return run_here(cfg, specs, write)


def longest_first(count: int, expected_s=None) -> list:
    """The indices 0..count-1, longest expected first (stable; the given order without an
    estimate). Ray starts queued tasks in the order they came: the quick study's three step-time
    tables on two cores, given short to long, left a core idle through the longest one (the
    stage took 78 s on Ray; 65 s longest first)."""
    if not expected_s:
        return list(range(count))
    return sorted(range(count), key=lambda i: -expected_s[i])


# oneDNN, PyTorch's CPU kernels, keeps 1,024 compiled primitives by default, and a table's sizes
# together need more (test_efficientnet's 17 ladder sizes did not fit, its 8 reached ones did): a
# size whose primitives were evicted compiled them again on its first step, 23-31 ms the table
# counted as that size's epoch start, where a run, at one size for epochs, pays it once. Read by
# oneDNN at its first primitive: set before a table process computes anything.
TABLE_ENV = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16384"}


def measure_apart(cfg, measure, arg_lists, expected_s=None) -> list:
    """`measure(*args)` for each of `arg_lists`, each with the device to itself (SPEC §8's
    step-time tables): here, one after another, on the local backend; on Ray, each a task that
    holds a whole GPU, or a whole node where the cluster has no GPU. Results in order."""
    if not arg_lists:
        return []
    if cfg.execution.backend == "ray":
        from deba_pipeline.execution.ray_tasks import measure_on_ray
        return measure_on_ray(cfg, measure, arg_lists, expected_s)
    for name, value in TABLE_ENV.items():
        os.environ.setdefault(name, value)
    _set_threads(cfg.execution.cpus_per_run)
    return [measure(*args) for args in arg_lists]


BUSY_SAMPLE_S = 0.2  # each of two samples of the machine's use before a stage trains


def threads_here(cpus_per_run=None, sample_s: float | None = None) -> tuple[int, str | None]:
    """(torch threads for a run here, a note when the machine is busy): `cpus_per_run` where set,
    else the cores this process may use less those other processes keep busy. On 2 cores with a
    CPU burner beside it, a step took 46 ms with 2 threads (one waits on a core the burner holds)
    and 11 ms with 1; on the idle machine 9.9 and 10.5 ms. (OpenMP's passive wait policy was
    measured too: 42 ms with 2 threads on the idle machine, so it is not used.)"""
    if cpus_per_run is not None:
        return max(1, int(cpus_per_run)), None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    sample_s = BUSY_SAMPLE_S if sample_s is None else sample_s
    busy = min(_others_busy(sample_s) for _ in range(2))  # a passing spike is not a neighbour
    threads = max(1, min(cores, cores - math.floor(busy + 0.2)))
    if threads == cores:
        return threads, None
    return threads, (f"deba: this machine is busy: other processes keep about {busy:.1f} of its "
                     f"{cores} cores in use, so each run here uses {threads} thread"
                     f"{'s' if threads > 1 else ''} instead of {cores} (a thread waiting on a "
                     f"busy core slows every step several-fold). Set execution.cpus_per_run to "
                     f"choose the count yourself.")


def _others_busy(seconds: float) -> float:
    """Cores kept busy over `seconds` by processes other than this one and its children."""
    import psutil
    mine = psutil.Process()
    family = [mine, *mine.children(recursive=True)]
    before = sum(_cpu_seconds(p) for p in family)
    total = psutil.cpu_percent(interval=seconds) / 100 * (psutil.cpu_count() or 1)
    ours = (sum(_cpu_seconds(p) for p in family) - before) / seconds
    return max(0.0, total - ours)


def _cpu_seconds(process) -> float:
    import psutil
    try:
        times = process.cpu_times()
    except psutil.Error:  # a child that ended meanwhile
        return 0.0
    return times.user + times.system


def _set_threads(cpus_per_run) -> None:
    import torch
    threads, note = threads_here(cpus_per_run)
    torch.set_num_threads(threads)
    if note:
        log.warning(note)


def run_here(cfg, specs, write, progress: bool = True) -> list:
    """The local backend: in this process, one run after another; the first failure stops."""
    from deba_pipeline.execution.local import train
    tracking = OmegaConf.to_container(cfg.tracking, resolve=True, enum_to_str=True)
    _set_threads(cfg.execution.cpus_per_run)
    records = []
    for spec in specs:
        record = train(spec, state_dir=cfg.tracking.dir, tracking=tracking,
                       experiment=wandb_group(cfg), progress=progress)
        write(spec, record)
        records.append(record)
    return records
