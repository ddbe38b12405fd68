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
