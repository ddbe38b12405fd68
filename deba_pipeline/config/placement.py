"""Where runs go and on what, checked: the execution backend's settings, a Ray cluster's
address, and the processes a run trains on (docs/cluster.md)."""

from __future__ import annotations

import re

from deba_pipeline.core.errors import fail
from deba_pipeline.core.options import finite_number

RAY_ADDRESS = re.compile(
    r"(?:ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})"
)


def parse_ray_address(address, where: str = "") -> tuple[str, int]:
    """(host, port) of `execution.address` (or RAY_ADDRESS), or one ConfigError saying the form."""
    match = RAY_ADDRESS.fullmatch(str(address).strip())
    if not match or not 0 < int(match["port"]) < 65536:
        fail(
            "execution.address",
            address,
            "HOST:PORT, as `ray start --head` prints it (e.g. "
            "10.0.0.5:6379), or null to start Ray on this machine",
            where,
        )
    return match["host"].strip("[]"), int(match["port"])


def validate_execution(ex, where) -> None:
    gpus = ex.gpus_per_run
    if gpus != "auto" and not (finite_number(gpus) and gpus >= 0):
        fail("execution.gpus_per_run", gpus, "auto or a number >= 0 (0.25: four runs a GPU)", where)
    if not (finite_number(ex.cpus_per_run) and ex.cpus_per_run > 0):
        fail(
            "execution.cpus_per_run",
            ex.cpus_per_run,
            "a number > 0 (the threads of a run; 1 keeps every core busy with a run of its own)",
            where,
        )
    if ex.address is not None and ex.address not in ("auto", "local"):
        parse_ray_address(ex.address, where)
    if ex.max_retries < 0:
        fail("execution.max_retries", ex.max_retries, "an integer >= 0", where)


def validate_processes(cfg, groups: dict, where) -> None:
    """docs/cluster.md: the batch is global, B/W samples a step on each of W ranks, never below
    W."""
    w, size = cfg.train.processes, cfg.train.batch_size
    if w < 1:
        fail("train.processes", w, "an integer >= 1 (1: one process, no DDP)", where)
    if cfg.train.sync_batchnorm and w > 1 and cfg.train.device == "cpu":
        fail(
            "train.sync_batchnorm",
            True,
            "false on the CPU (PyTorch's SyncBatchNorm runs on "
            "GPUs only; BatchNorm then keeps its statistics per rank)",
            where,
        )
    if w > 1 and (size < w or size % w):
        fail(
            "train.batch_size",
            size,
            f"a multiple of train.processes = {w}, at least {w} (the "
            f"batch is global: each of the {w} processes takes batch_size/{w} samples a step)",
            where,
        )
    for name, group in groups.items():
        if w > 1 and group.min_batch < w:
            fail(
                f"{name}.min_batch",
                group.min_batch,
                f"at least train.processes = {w} (a "
                f"global batch below {w} leaves a process without a sample)",
                where,
            )
