"""One run on W processes (SPEC §7): PyTorch's own launcher, torchrun, and
DistributedDataParallel (NCCL on CUDA, gloo on the CPU).

The batch size is global: each rank takes B/W samples a step from its share of the same
permutation of the device-resident data, so every sample is seen once an epoch across ranks. DDP
averages the gradients in the backward pass, so every rank computes the signals from the same
synchronized gradients and must reach the same decision (checked each epoch, one small
collective). Only rank 0 writes the record, checkpoints and W&B.

The stage side, `launch(spec, ...)`, starts W processes on this machine through torchrun's own
API (`elastic_launch`, as `torchrun --standalone` does) and returns the record rank 0 leaves in
the finished-run cache. Over several machines, each one runs `deba run NAME` under torchrun with
its rendezvous flags (docs: "One run on many GPUs").
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import DebaError
from .checkpoint import Checkpointer


def rank_and_world() -> tuple:
    """(this process's rank, the number of processes): (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_device(device: torch.device) -> torch.device:
    """A rank's own GPU (torchrun's LOCAL_RANK) when the run is on CUDA under torchrun."""
    if device.type == "cuda" and rank_and_world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def sync_batchnorm(model, device, name: str):
    """BatchNorm layers that average their statistics over every rank's share of the global
    batch (PyTorch's SyncBatchNorm, which runs on GPUs only)."""
    if device.type != "cuda":
        raise DebaError(f"{name}: train.sync_batchnorm needs GPUs (PyTorch's SyncBatchNorm does "
                        f"not run on {device.type}): set it to false, and BatchNorm keeps its "
                        f"statistics per rank.")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap(model, device):
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None)


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of `tensor` over every rank: one collective."""
    dist.all_reduce(tensor)
    return tensor / dist.get_world_size()


def check_agreement(name: str, epoch: int, decision: str, next_batch: int) -> None:
    """SPEC §7: every rank must reach the same decision; a mismatch stops the run."""
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, (decision, next_batch))
    if any(theirs != (decision, next_batch) for theirs in everyone):
        seen = ", ".join(f"rank {r}: {d} to {b}" for r, (d, b) in enumerate(everyone))
        raise DebaError(f"{name}: the processes disagree at epoch {epoch} ({seen}). Every rank "
                        f"decides from the same synchronized gradients, so a signal or rule "
                        f"plugin that reads rank-local state (its own randomness, a rank's loss) "
                        f"is at fault: make it depend only on what it observes.")


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
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=world,
                          run_id=f"deba-{checkpointer.key}", rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0, start_method="spawn",
                          logs_specs=DefaultLogsSpecs(log_dir=str(logs), redirects=Std.ERR))
    threads = max(1, torch.get_num_threads() // world)  # the cores, shared out
    try:
        with _quiet_launcher():
            elastic_launch(config, _rank)(spec, str(state_dir), tracking, experiment, progress,
                                          threads)
    except ChildFailedError as exc:
        raise DebaError(f"{spec.name}: its {world}-process run failed: {_root_cause(exc)} "
                        f"(each process's output: {logs}). Finished epochs are checkpointed: "
                        f"rerun to resume.") from None
    record = checkpointer.finished()
    if record is None:
        raise DebaError(f"{spec.name}: the processes ended without a record in "
                        f"{checkpointer.done_path}: rerun to resume.")
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
    if os.environ.get("DEBA_VERBOSE"):
        yield
        return
    loggers = [logging.getLogger(name) for name in ("torch.distributed.elastic",
                                                    "torch.multiprocessing")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _rank(spec, state_dir, tracking, experiment, progress, threads) -> None:
    """One process of a `launch`: an error is raised, so `@record` leaves it for the agent."""
    from torch.distributed.elastic.multiprocessing.errors import record
    torch.set_num_threads(threads)
    record(run_rank)(spec, state_dir, tracking, experiment, progress, raise_errors=True)


def run_rank(spec, state_dir, tracking: dict, experiment: str, progress: bool = True,
             raise_errors: bool = False) -> int:
    """This process's rank of `spec`, under torchrun or `launch`; rank 0 leaves the record in
    the finished-run cache. Returns the exit status (or raises, with `raise_errors`)."""
    from .loop import Trainer, resolve_device, tracker_for
    if int(os.environ.get("WORLD_SIZE", 1)) != spec.train.processes:
        print(f"deba: error: {spec.name}: torchrun started {os.environ.get('WORLD_SIZE', 1)} "
              f"processes but train.processes is {spec.train.processes}: make them equal "
              f"(--nnodes × --nproc-per-node).", file=sys.stderr, flush=True)
        return 2
    cuda = resolve_device(spec.train.device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    tracker = None
    try:
        trainer = Trainer(spec, state_dir)
        if dist.get_rank() == 0:
            tracker = tracker_for(spec, state_dir, tracking, experiment)
        trainer.run(tracker, progress and dist.get_rank() == 0)
    except DebaError as exc:
        if raise_errors:
            raise
        print(f"deba: error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        if tracker is not None:
            tracker.finish()
        dist.destroy_process_group()
    return 0

