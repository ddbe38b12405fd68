"""The `local` backend: a stage's runs side by side in the standard library's process pool, as
many at once as this machine holds (its usable cores over a run's threads, or one run per visible
GPU). Each run computes with the threads its params give it, so how many go at once, a busy
machine or `taskset`, changes when a run finishes, never its numbers. Finished runs come from the
cache first; a record is written the moment its run finishes; when a run fails, the runs in
flight finish and are written, then the stage fails with that run's message.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from omegaconf import OmegaConf

from deba_pipeline.core.errors import DebaError
from deba_pipeline.execution import console, longest_first
from deba_pipeline.execution.invocation import wandb_group
from deba_pipeline.execution.one_run import note_placement, reuse_finished, train
from deba_pipeline.execution.process import prepare, threads_per_run

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """The cores this process may run on (`taskset`, a container's cpuset), else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def visible_gpus(device: str) -> int:
    """CUDA devices a run of `train.device` would use: none on the CPU."""
    if device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def slots(cfg, world: int = 1) -> tuple[int, list]:
    """(runs at once, the devices of each slot: CUDA_VISIBLE_DEVICES values, empty on the CPU).
    A run of `world` processes takes `world` devices or `world` × its threads in cores."""
    gpus = visible_gpus(str(cfg.train.device))
    if gpus:
        count = max(1, gpus // world)
        return count, [
            ",".join(str(slot * world + rank) for rank in range(world)) for slot in range(count)
        ]
    threads = threads_per_run(cfg.execution.cpus_per_run)
    return max(1, usable_cores() // (threads * world)), []


def run_here(cfg, specs, write, expected_s=None, progress: bool = True) -> list:
    """Train (or reuse) every spec on this machine; returns the records in the order of specs."""
    threads = threads_per_run(cfg.execution.cpus_per_run)
    prepare(threads)
    tracking = OmegaConf.to_container(cfg.tracking, resolve=True, enum_to_str=True)
    order = longest_first(len(specs), expected_s)
    records, to_train = reuse_finished(cfg, specs, write, order, tracking)
    world = max((specs[i].train.processes for i in to_train), default=1)
    count, devices = slots(cfg, world)
    count = min(count, len(to_train))
    if count <= 1:  # one at a time: here, as a library caller's run would go
        for index in to_train:
            records[index] = train(
                specs[index],
                state_dir=cfg.tracking.dir,
                tracking=tracking,
                experiment=wandb_group(cfg),
                progress=progress,
            )
            write(specs[index], records[index])
    else:
        _side_by_side(cfg, specs, to_train, records, write, tracking, count, devices)
    return [records[i] for i in range(len(specs))]


def _side_by_side(cfg, specs, to_train, records, write, tracking, count, devices) -> None:
    """`count` runs at once in a pool of spawned processes (never forked: torch's threads and
    CUDA do not survive a fork)."""
    context = multiprocessing.get_context("spawn")
    handed = context.Queue()
    for slot in devices:
        handed.put(slot)
    threads = threads_per_run(cfg.execution.cpus_per_run)
    _announce(len(to_train), count, threads, devices)
    failed = []
    with ProcessPoolExecutor(
        count,
        mp_context=context,
        initializer=_worker_starts,
        initargs=(threads, console.level(), handed, bool(devices)),
    ) as pool:
        pending = {
            pool.submit(train, specs[i], cfg.tracking.dir, tracking, wandb_group(cfg), "line"): i
            for i in to_train
        }  # each says when it finishes
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = pending.pop(future)
                    problem = _failure(future, specs[index].name)
                    if problem:
                        failed.append(problem)
                        continue
                    records[index] = future.result()
                    world = specs[index].train.processes
                    note_placement(
                        cfg.tracking.dir,
                        specs[index],
                        records[index],
                        {
                            "backend": "local",
                            "cpus": threads * world,
                            "gpus": world if devices else 0,
                            "shared_machine": not devices,
                        },
                    )  # cores shared
                    write(specs[index], records[index])
                if failed:  # the runs in flight finish and are kept; the queued ones wait
                    for future in list(pending):
                        if future.cancel():
                            pending.pop(future)
        finally:
            for future in pending:
                future.cancel()
    if failed:
        raise DebaError(
            f"{len(failed)} of {len(to_train)} runs failed (every finished record "
            f"is written; rerun the stage to train the rest):\n" + "\n".join(failed)
        )


def _announce(runs: int, count: int, threads: int, devices) -> None:
    where = (
        f"one a GPU set {', '.join(devices)}"
        if devices
        else f"{threads} thread{'s' if threads > 1 else ''} each on {usable_cores()} cores"
    )
    log.info("training %d runs, %d at once (%s)", runs, count, where)


def _failure(future, name: str) -> str | None:
    """Why a run failed, in one line of the stage's summary; None where it finished."""
    try:
        future.result()
    except BrokenProcessPool:  # a dead worker stops the whole pool: every run in it ends here
        return (
            f"  {name}: its process, or another run's, died (killed, or out of memory); "
            f"finished epochs are checkpointed"
        )
    except DebaError as exc:
        return f"  {name}: {exc}"
    except Exception as exc:  # reported as a bug, by name
        return f"  {name}: unexpected {type(exc).__name__}: {exc}"
    return None


def _worker_starts(threads: int, level: int, handed, gpus: bool) -> None:
    """A pool worker's set-up: its own devices (one slot of GPUs), then the process as the CLI
    sets up its own."""
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = handed.get()
    prepare(threads, level)
