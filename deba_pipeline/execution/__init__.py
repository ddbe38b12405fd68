"""Where runs go (SPEC's house: stages → execution → engine). `local` trains each run in this
process, one after another; `ray` submits each as a Ray task, on an embedded Ray or a cluster.
Either way the stage is the only writer of its outputs: a record comes back and is written (by
`write`) the moment its run finishes, so an interrupted stage keeps every finished run.

    records = execute(cfg, specs, write=lambda spec, record: ...)
"""
from __future__ import annotations

import os

from omegaconf import OmegaConf

from ..engine.loop import train


def experiment_name(cfg) -> str:
    """W&B group: the DVC experiment when one is running, else the study's name."""
    return os.environ.get("DVC_EXP_NAME") or cfg.study.name


def execute(cfg, specs, write) -> list:
    """Train (or reuse) every spec where `execution.backend` says; returns the records in the
    order of `specs`."""
    if cfg.execution.backend == "ray":
        from .ray_tasks import run_on_ray
        return run_on_ray(cfg, specs, write)
    return run_here(cfg, specs, write)


def measure_apart(cfg, measure, arg_lists) -> list:
    """`measure(*args)` for each of `arg_lists`, each with the device to itself (SPEC §8's
    step-time tables): here, one after another, on the local backend; on Ray, each a task that
    holds a whole GPU, or a whole node where the cluster has no GPU. Results in order."""
    if not arg_lists:
        return []
    if cfg.execution.backend == "ray":
        from .ray_tasks import measure_on_ray
        return measure_on_ray(cfg, measure, arg_lists)
    _set_threads(cfg.execution.cpus_per_run)
    return [measure(*args) for args in arg_lists]


def _set_threads(threads) -> None:
    if threads is not None:
        import torch
        torch.set_num_threads(max(1, int(threads)))


def run_here(cfg, specs, write, progress: bool = True) -> list:
    """The local backend: in this process, one run after another; the first failure stops."""
    tracking = OmegaConf.to_container(cfg.tracking, resolve=True)
    _set_threads(cfg.execution.cpus_per_run)
    records = []
    for spec in specs:
        record = train(spec, state_dir=cfg.tracking.dir, tracking=tracking,
                       experiment=experiment_name(cfg), progress=progress)
        write(spec, record)
        records.append(record)
    return records
