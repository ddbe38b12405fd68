"""Where runs go (stages → execution → engine). `local` trains the runs side by side in a process
pool of this machine, as many at once as its cores (or GPUs) hold; `ray` submits each as a Ray
task, on an embedded Ray or a cluster. Either way a run computes with the threads its params give
it (`execution.cpus_per_run`), so where it went never changes its numbers.
Either way the stage is the only writer of its outputs: a record comes back and is written (by
`write`) the moment its run finishes, so an interrupted stage keeps every finished run.

    records = execute(cfg, specs, write=lambda spec, record: ..., expected_s=[...])

`expected_s`, a rough cost of each run (its architecture's profiled epoch time × epochs), only
orders the work: the longest is submitted first, so it does not trail alone at the end.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from deba_pipeline.execution.process import prepare, threads_per_run


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
    from deba_pipeline.execution.pool import run_here
    return run_here(cfg, specs, write, expected_s)


def longest_first(count: int, expected_s=None) -> list:
    """The indices 0..count-1, longest expected first (stable; the given order without an
    estimate). A pool or Ray starts queued work in the order it came: the quick study's three
    step-time tables on two cores, given short to long, left a core idle through the longest one
    (the stage took 78 s on Ray; 65 s longest first)."""
    if not expected_s:
        return list(range(count))
    return sorted(range(count), key=lambda i: -expected_s[i])


def measure_apart(cfg, measure, arg_lists, expected_s=None) -> list:
    """`measure(*args)` for each of `arg_lists`, each with the device to itself (the step-time
    tables of docs/method.md): here, one after another, with nothing beside them; on Ray, each a
    task that holds a whole GPU, or a whole node where the cluster has no GPU. Results in order."""
    if not arg_lists:
        return []
    if cfg.execution.backend == "ray":
        from deba_pipeline.execution.ray_tasks import measure_on_ray
        return measure_on_ray(cfg, measure, arg_lists, expected_s)
    prepare(threads_per_run(cfg.execution.cpus_per_run))
    return [measure(*args) for args in arg_lists]
