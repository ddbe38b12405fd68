"""Checkpoints of one run: atomic, checksummed, and loaded with `torch.load(weights_only=True)`; the
finished-run cache; and the lock that keeps two processes off the same run. The trainer hands
over the state to keep (model, optimiser, scheduler, RNG, partial record) and takes it back.
A finished run leaves only its record behind."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from deba_pipeline.core.errors import DebaError
from deba_pipeline.core.record import record_problem, unpack_hits, upgrade
from deba_pipeline.engine.cache import keep, kept
from deba_pipeline.engine.files import DamagedFile, load_torch, make_folder, save_torch

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, state_dir: Path, spec):
        self.spec, self.key = spec, spec.key()
        self.path = state_dir / "checkpoints" / f"{self.key}.pt"
        self.done_path = state_dir / "finished" / f"{self.key}.json"
        self.lock_path = state_dir / "locks" / f"{self.key}.lock"

    @contextmanager
    def lock(self):
        """One process per run: a second one gets a clear error, not a clobbered checkpoint.
        The OS releases the lock when its holder dies, so a killed run never blocks."""
        make_folder(self.lock_path.parent)
        try:
            with FileLock(self.lock_path, timeout=0):
                yield
        except Timeout:
            raise DebaError(
                f"{self.spec.name} is being trained by another process right now "
                f"(lock {self.lock_path}): wait for it to finish."
            ) from None

    def identity(self) -> dict:
        """What a finished-run entry must have been made for."""
        s = self.spec
        return {
            "key": self.key,
            "arch": s.arch,
            "dataset": s.dataset,
            "method": s.method,
            "seed": s.seed,
            "epochs": s.train.epochs,
            "profile": s.profile,
        }

    def finished(self):
        """The record of this run if it finished before and its entry is intact and this run's;
        None otherwise (a bad entry is set aside with one line, and the run trains again)."""
        record = kept(self.done_path, self.identity(), self._record_problem)
        return None if record is None else upgrade(record)

    def _record_problem(self, record) -> str | None:
        """Why a kept entry cannot stand for this run: it contradicts itself, is another run's,
        or lacks its per-sample test results; None where it can."""
        s = self.spec
        problem = record_problem(record)
        if problem:
            return problem
        for name in ("arch", "dataset", "method", "seed"):
            if record.get(name) != getattr(s, name):
                return f"its {name} is {record.get(name)!r}, not {getattr(s, name)!r}"
        if len(record["epochs"]) != s.train.epochs:
            return f"it holds {len(record['epochs'])} epochs, not train.epochs = {s.train.epochs}"
        if record.get("world_size", 1) != s.train.processes:
            return (
                f"its world_size is {record.get('world_size', 1)}, not train.processes = "
                f"{s.train.processes}"
            )
        if unpack_hits(record) is None:
            return "its per-sample test results are missing or disagree with its accuracy"
        return None

    def save(self, epoch: int, state: dict, pending=None) -> Path:
        """Keep `state` as of the end of `epoch`; `pending` is an epoch trained after it whose
        scheduler step has not happened yet (its fields are saved, not a copy of its tensors)."""
        save_torch(
            self.path,
            {
                "key": self.key,
                "name": self.spec.name,
                "epoch": epoch,
                "pending": None if pending is None else vars(pending),
                **state,
            },
        )
        return self.path

    def describe_last(self) -> str:
        if not self.path.is_file():
            return "No checkpoint was written yet; the run starts afresh."
        try:
            epoch = load_torch(self.path)["epoch"]
        except Exception:
            return f"The checkpoint {self.path} is damaged; the run starts afresh without it."
        return f"The last good checkpoint is {self.path} (after epoch {epoch})."

    def load(self, device) -> dict | None:
        """The saved state of this run, or None when there is no checkpoint."""
        if not self.path.is_file():
            return None
        try:
            state = load_torch(self.path, device)
        except DamagedFile as exc:
            raise DebaError(
                f"checkpoint {self.path} is damaged: {exc}. Delete it to start "
                f"{self.spec.name} afresh."
            ) from None
        except Exception as exc:
            raise DebaError(
                f"checkpoint {self.path} is unreadable ({type(exc).__name__}): "
                f"delete it to start {self.spec.name} afresh."
            ) from None
        if state.get("key") != self.key:
            raise DebaError(
                f"checkpoint {self.path} belongs to another run "
                f"({state.get('name')}): delete it to start {self.spec.name} afresh."
            )
        return state

    def finish(self, record: dict) -> None:
        """Keep the finished record for reuse. A cache that cannot be written loses nothing:
        the record still goes to the stage, and the checkpoint stays for the next run."""
        try:
            keep(self.done_path, record, self.identity())
        except DebaError as exc:
            log.warning(
                "deba: %s finished; its record is kept in the stage's output, but not "
                "for reuse: %s",
                self.spec.name,
                exc,
            )
            return
        self.path.unlink(missing_ok=True)


def trainer_state(trainer) -> dict:
    """What a checkpoint of `trainer` holds: everything its next epoch depends on."""
    rng = {"torch": torch.get_rng_state(), "data": trainer.data.generator.get_state()}
    if trainer.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(trainer.device)
    return {
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "rng": rng,
        "record": trainer.record,
        "last_fit": trainer.last_fit,
        "lr_product": trainer.lr_product,
    }


def restore(trainer, saved: dict) -> tuple:
    """Put `trainer_state`'s `saved` back into `trainer` (a checkpoint's, or a snapshot the step
    timing restores before each timed epoch): (epochs done, the pending epoch's fields or None)."""
    try:
        trainer.model.load_state_dict(saved["model"])
        trainer.optimizer.load_state_dict(saved["optimizer"])
        trainer.scheduler.load_state_dict(saved["scheduler"])
    except (RuntimeError, ValueError, KeyError, DebaError) as exc:
        raise DebaError(
            f"checkpoint {trainer.checkpoints.path} does not match "
            f"{trainer.spec.name} ({str(exc).splitlines()[0]}): delete it to start "
            f"afresh."
        ) from None
    torch.set_rng_state(saved["rng"]["torch"].cpu())
    trainer.data.generator.set_state(saved["rng"]["data"].cpu())
    if "cuda" in saved["rng"]:
        torch.cuda.set_rng_state(saved["rng"]["cuda"].cpu(), trainer.device)
    trainer.record, trainer.last_fit = saved["record"], saved["last_fit"]
    trainer.lr_product = saved.get("lr_product", 1.0)
    return saved.get("epoch", 0), saved.get("pending")
