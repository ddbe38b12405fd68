"""A run on W processes of this machine (docs/cluster.md), started through torchrun's own API
(`elastic_launch`, as `torchrun --standalone` does); the record comes back from the finished-run
cache, where rank 0 leaves it. Over several machines, each one runs `deba run NAME` under torchrun
with its rendezvous flags (docs: "One run on many GPUs")."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from deba_pipeline.core.errors import DebaError
from deba_pipeline.engine.checkpoint import Checkpointer
from deba_pipeline.engine.rank import run_rank
from deba_pipeline.execution import console
from deba_pipeline.execution.process import flag, prepare


def launch(spec, state_dir, tracking: dict, experiment: str, progress: bool = True) -> dict:
    """Train `spec` on `spec.train.processes` processes of this machine with PyTorch's elastic
    launcher (torchrun's own API, `--standalone`); the record rank 0 wrote. A failed process is
    named with its own error (the `@record` error file) or the signal that killed it, not the
    other ranks' collective errors that follow. An interrupted launch resumes when rerun."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    world, checkpointer = spec.train.processes, Checkpointer(Path(state_dir), spec)
    logs = Path(state_dir) / "launch" / checkpointer.key
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=world,
        run_id=f"deba-{checkpointer.key}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        start_method="spawn",
        logs_specs=DefaultLogsSpecs(log_dir=str(logs), redirects=Std.ERR),
    )
    try:
        with _quiet_launcher():
            elastic_launch(config, _rank)(
                spec, str(state_dir), tracking, experiment, progress, console.level()
            )
    except ChildFailedError as exc:
        raise DebaError(
            f"{spec.name}: its {world}-process run failed: {_root_cause(exc)} "
            f"(each process's output: {logs}). Finished epochs are checkpointed: "
            f"rerun to resume."
        ) from None
    record = checkpointer.finished()
    if record is None:
        raise DebaError(
            f"{spec.name}: the processes ended without a record in "
            f"{checkpointer.done_path}: rerun to resume."
        )
    return record


def _root_cause(failed) -> str:
    """The process that failed first in kind: killed by a signal, else ended without raising
    (no error file: a crash or an exit), else stopped by our own error, else the launcher's
    first failure. The others' errors (gloo's "connection closed") follow from it."""
    failures = sorted(failed.failures.items())
    killed = [(rank, f) for rank, f in failures if f.exitcode < 0]
    silent = [(rank, f) for rank, f in failures if not os.path.isfile(str(f.error_file))]
    ours = [(rank, f) for rank, f in failures if "DebaError:" in str(f.message)]
    rank, failure = (killed or silent or ours or [failed.get_first_failure()])[0]
    if failure.exitcode < 0:
        return f"process {rank} was killed by {failure.signal_name()}"
    if (rank, failure) in silent:
        return f"process {rank} ended with exit status {failure.exitcode} without an error"
    message = failure.message  # the error file's {"message": ..., "extraInfo": traceback}
    message = message.get("message") if isinstance(message, dict) else message
    message = str(message or f"exit status {failure.exitcode}").splitlines()[0]
    return f"process {rank}: {message.removeprefix('DebaError: ')}"


@contextmanager
def _quiet_launcher():
    """The elastic agent logs its steps, each failed process's traceback and the processes it
    stops: `launch` names the failure in one line instead (all of it with -v, and every
    process's output is in the launch folder)."""
    import logging

    if flag("DEBA_VERBOSE"):
        yield
        return
    loggers = [
        logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.multiprocessing")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _rank(spec, state_dir, tracking, experiment, progress, level) -> None:
    """One process of a `launch`, set up as the CLI sets up its own (the run's threads): an
    error is raised, so `@record` leaves it for the agent."""
    from torch.distributed.elastic.multiprocessing.errors import record

    prepare(spec.threads, level)
    record(run_rank)(spec, state_dir, tracking, experiment, progress, raise_errors=True)
