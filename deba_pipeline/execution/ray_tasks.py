"""The `ray` backend: each run a Ray task, on an embedded Ray (`execution.address: null`) or a
cluster (`execution.address`, or the standard RAY_ADDRESS). The driver skips finished runs,
submits the rest at once (Ray keeps every device busy while runs remain), writes each record as
it comes back, and, when a run fails, finishes the others before failing with one line per
failed run. A worker that dies is retried (`execution.max_retries`) and its run resumes from its
checkpoint, which lives under `tracking.dir`: on a cluster, a folder every machine shares.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import OmegaConf

from deba_pipeline.core.errors import DebaError
from deba_pipeline.engine.tracking import summary_line
from deba_pipeline.execution.one_run import note_placement
from deba_pipeline.execution.process import ENVIRONMENT, prepare, threads_per_run
from deba_pipeline.execution.ray_session import check_fits, session

log = logging.getLogger(__name__)


def _train_in_worker(spec, state_dir, tracking, experiment, cwd, gpu_share):
    """One run inside a Ray worker: the project folder, the process set up as the CLI sets up
    its own (the run's threads) and, on a shared GPU, its share of the memory (so a growing batch
    meets a clean out-of-memory fallback)."""
    import torch

    from deba_pipeline.execution.one_run import train

    os.chdir(cwd)  # plugin files and data.root are relative to the project
    prepare(spec.threads)
    if 0 < gpu_share < 1 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(gpu_share)
    return train(
        spec, state_dir=state_dir, tracking=tracking, experiment=experiment, progress=False
    )


def _measure_in_worker(measure, args, cwd, threads):
    os.chdir(cwd)
    prepare(threads)
    return measure(*args)


def measure_on_ray(cfg, measure, arg_lists, expected_s=None) -> list:
    """Each measurement a task holding a whole GPU or, on the CPU, the cores a run is given
    (`execution.cpus_per_run`) to itself, timing steps with as many threads as a run had. CPU
    tables are then measured side by side, each on its own cores, as the runs trained."""
    from deba_pipeline.execution import longest_first

    with session(cfg.execution.address) as ray:
        threads = threads_per_run(cfg.execution.cpus_per_run)
        whole = dict(num_cpus=threads)
        if gpus_per_run(cfg.execution.gpus_per_run, ray) > 0:
            whole["num_gpus"] = 1
        check_fits(ray, whole["num_cpus"], whole.get("num_gpus", 0), "a step-time table")
        task = ray.remote(_measure_in_worker).options(  # fresh workers: set before oneDNN's start
            max_retries=cfg.execution.max_retries,
            retry_exceptions=False,
            runtime_env={"env_vars": ENVIRONMENT},
            **whole,
        )
        order = longest_first(len(arg_lists), expected_s)
        refs = {i: task.remote(measure, arg_lists[i], os.getcwd(), threads) for i in order}
        try:
            return ray.get([refs[i] for i in range(len(arg_lists))])
        except Exception as exc:  # a measurement's own error, or a lost worker
            raise DebaError(f"a step-time measurement failed on Ray: {_reason(exc)}") from None


def gpus_per_run(setting, ray) -> float:
    """`auto`: one GPU per run where the cluster has GPUs, none where it has not."""
    if setting == "auto":
        return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return float(setting)


def where_it_ran(ray, gpus, cpus) -> dict:
    """How a run was placed, for the report: a share of a GPU, or a CPU run on a node with cores
    for other runs beside it, is a packed run whose measured time others may have slowed."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    shared = (0 < gpus < 1) or (gpus == 0 and most_cpus > cpus)
    return {"backend": "ray", "gpus": gpus, "cpus": cpus, "shared_machine": bool(shared)}


def run_on_ray(cfg, specs, write, expected_s=None) -> list:
    """Finished runs come from the cache here (no Ray started for a stage with nothing left to
    train); the rest go to Ray longest first and are written as they come back."""
    from deba_pipeline.execution import longest_first
    from deba_pipeline.execution.one_run import reuse_finished

    ex, state_dir = cfg.execution, str(Path(cfg.tracking.dir).resolve())
    tracking = OmegaConf.to_container(cfg.tracking, resolve=True, enum_to_str=True)
    records, to_train = reuse_finished(
        cfg, specs, write, longest_first(len(specs), expected_s), tracking
    )
    if to_train:
        with session(ex.address) as ray:
            _train_on_ray(ray, cfg, specs, to_train, records, write, state_dir, tracking)
    return [records[i] for i in range(len(specs))]


def _train_on_ray(ray, cfg, specs, to_train, records, write, state_dir, tracking) -> None:
    from deba_pipeline.execution.invocation import wandb_group

    ex = cfg.execution
    gpus, cpus = gpus_per_run(ex.gpus_per_run, ray), ex.cpus_per_run
    for world in sorted({specs[index].train.processes for index in to_train}):
        check_fits(
            ray, cpus * world, gpus * world, f"a run of {world} process{'es' if world > 1 else ''}"
        )
    task = ray.remote(_train_in_worker)
    pending = {}
    for index in to_train:
        # a torchrun run (docs/cluster.md): a device per process
        world = specs[index].train.processes
        ref = task.options(
            num_cpus=cpus * world,
            num_gpus=gpus * world,
            max_retries=ex.max_retries,
            retry_exceptions=False,
            runtime_env={"env_vars": ENVIRONMENT},
        ).remote(specs[index], state_dir, tracking, wandb_group(cfg), os.getcwd(), gpus)
        pending[ref] = index
    failed, placement = [], where_it_ran(ray, gpus, cpus)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        index = pending.pop(ready[0])
        try:
            records[index] = ray.get(ready[0])
        except Exception as exc:  # a run's own error, or a lost worker
            failed.append(f"  {specs[index].name}: {_reason(exc)}")
            continue
        world = specs[index].train.processes
        note_placement(
            state_dir,
            specs[index],
            records[index],
            dict(placement, gpus=gpus * world, cpus=cpus * world),
        )
        write(specs[index], records[index])
        log.info(
            "%s (on Ray, %d of %d)",
            summary_line(specs[index].name, records[index]),
            len(records),
            len(specs),
        )
    if failed:
        raise DebaError(
            f"{len(failed)} of {len(specs)} runs failed (the other records are "
            f"written; rerun the stage to retry only these):\n" + "\n".join(failed)
        )


def _reason(exc) -> str:
    """The run's own error where Ray carries it, else what happened to its worker."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
