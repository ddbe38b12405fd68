"""One run on W processes (SPEC §7): PyTorch's own launcher, torchrun, and
DistributedDataParallel (NCCL on CUDA, gloo on the CPU).

The batch size is global: each rank takes B/W samples a step from its share of the same
permutation of the device-resident data, so every sample is seen once an epoch across ranks. DDP
averages the gradients in the backward pass, so every rank computes the signals from the same
synchronized gradients and must reach the same decision (checked each epoch, one small
collective). Only rank 0 writes the record, checkpoints and W&B.

The stage side, `launch(spec, ...)`, runs on this machine
    python -m torch.distributed.run --standalone --nproc-per-node W \
        -m deba_pipeline.engine.distributed TICKET
and returns the record rank 0 leaves in the finished-run cache. Over several machines, each one
runs this module with torchrun's rendezvous flags (README: "One run on many GPUs").
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import DebaError
from .checkpoint import Checkpointer
from .files import write_bytes, write_text


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
    """Train `spec` on `spec.train.processes` processes of this machine with torchrun; the
    record rank 0 wrote. An interrupted launch resumes from the last checkpoint when rerun."""
    world, checkpointer = spec.train.processes, Checkpointer(Path(state_dir), spec)
    ticket = Path(state_dir) / "launch" / f"{checkpointer.key}.pkl"
    write_bytes(ticket, pickle.dumps((spec, str(state_dir), tracking, experiment, progress)))
    env = dict(os.environ)  # torchrun would set 1 thread a process, with a warning
    env.setdefault("OMP_NUM_THREADS", str(max(1, torch.get_num_threads() // world)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={world}", "--max-restarts=0", "-m", __name__, str(ticket)]
    done = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        log = write_text(ticket.with_suffix(".log"), done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        ours = [line for line in lines if line.startswith("deba: error: ")]
        theirs = [line for line in lines if "Error" in line or "No module named" in line]
        reason = ours[0].removeprefix("deba: error: ") if ours else \
            (theirs or lines or [f"exit status {done.returncode}"])[0]
        raise DebaError(f"{spec.name}: its {world}-process run (torchrun) failed: {reason} "
                        f"(the processes' output: {log}). Finished epochs are checkpointed: "
                        f"rerun to resume.")
    record = checkpointer.finished()
    if record is None:
        raise DebaError(f"{spec.name}: torchrun ended without a record in "
                        f"{checkpointer.done_path}: rerun to resume.")
    return record


def main(ticket: str) -> int:
    """One rank of a run `launch` started."""
    return run_rank(*pickle.loads(Path(ticket).read_bytes()))


def run_rank(spec, state_dir, tracking: dict, experiment: str, progress: bool = True) -> int:
    """This process's rank of `spec`, under torchrun; rank 0 leaves the record in the
    finished-run cache. Returns the exit status."""
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
        print(f"deba: error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        if tracker is not None:
            tracker.finish()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
