"""Checkpoints (model, optimiser, scheduler, RNG states, partial record), atomic and safe to load
with `torch.load(weights_only=True)`. A finished run leaves only its record behind."""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

import torch

from ..errors import DebaError
from .files import read_json, save_torch, write_json


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
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DebaError(f"{self.spec.name} is being trained by another process right "
                                f"now (lock {self.lock_path}): wait for it to finish.") from None
            handle.write(str(os.getpid()))
            handle.flush()
            yield

    def finished(self):
        if not self.done_path.is_file():
            return None
        try:
            return read_json(self.done_path)
        except (OSError, json.JSONDecodeError) as exc:
            raise DebaError(f"finished-run record {self.done_path} is unreadable ({exc}): delete "
                            f"it and {self.spec.name} is trained again.") from None

    def save(self, trainer, epoch: int, pending: dict | None = None) -> Path:
        rng = {"torch": torch.get_rng_state(), "data": trainer.data.generator.get_state()}
        if trainer.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(trainer.device)
        save_torch(self.path, {
            "key": self.key, "name": self.spec.name, "epoch": epoch,
            "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(), "rng": rng,
            "record": trainer.record, "last_fit": trainer.last_fit, "pending": pending})
        return self.path

    def describe_last(self) -> str:
        if not self.path.is_file():
            return "No checkpoint was written yet; the run starts afresh."
        epoch = torch.load(self.path, map_location="cpu", weights_only=True)["epoch"]
        return f"The last good checkpoint is {self.path} (after epoch {epoch})."

    def restore(self, trainer):
        """Load the checkpoint into `trainer` if there is one; return (epochs done, pending):
        `pending` is an epoch trained but not yet through the scheduler's step."""
        if not self.path.is_file():
            return 0, None
        try:
            state = torch.load(self.path, map_location=trainer.device, weights_only=True)
        except Exception as exc:
            raise DebaError(f"checkpoint {self.path} is unreadable ({type(exc).__name__}): "
                            f"delete it to start {self.spec.name} afresh.") from None
        if state.get("key") != self.key:
            raise DebaError(f"checkpoint {self.path} belongs to another run "
                            f"({state.get('name')}): delete it to start {self.spec.name} afresh.")
        try:
            trainer.model.load_state_dict(state["model"])
            trainer.optimizer.load_state_dict(state["optimizer"])
            trainer.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError, DebaError) as exc:
            raise DebaError(f"checkpoint {self.path} does not match {self.spec.name} "
                            f"({str(exc).splitlines()[0]}): delete it to start afresh.") from None
        torch.set_rng_state(state["rng"]["torch"].cpu())
        trainer.data.generator.set_state(state["rng"]["data"].cpu())
        if "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), trainer.device)
        trainer.record, trainer.last_fit = state["record"], state["last_fit"]
        return state["epoch"], state.get("pending")

    def finish(self, record: dict) -> None:
        write_json(self.done_path, record)
        self.path.unlink(missing_ok=True)
