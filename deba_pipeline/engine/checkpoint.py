"""Checkpoints (model, optimiser, scheduler, RNG states, partial record), atomic and safe to load
with `torch.load(weights_only=True)`. A finished run leaves only its record behind."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DebaError
from .files import read_json, save_torch, write_json


class Checkpointer:
    def __init__(self, state_dir: Path, spec):
        self.spec, self.key = spec, spec.key()
        self.path = state_dir / "checkpoints" / f"{self.key}.pt"
        self.done_path = state_dir / "finished" / f"{self.key}.json"

    def finished(self):
        return read_json(self.done_path) if self.done_path.is_file() else None

    def save(self, trainer, epoch: int) -> None:
        rng = {"torch": torch.get_rng_state(), "data": trainer.data.generator.get_state()}
        if trainer.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(trainer.device)
        save_torch(self.path, {
            "key": self.key, "name": self.spec.name, "epoch": epoch,
            "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(), "rng": rng,
            "record": trainer.record, "last_fit": trainer.last_fit})

    def restore(self, trainer) -> int:
        """Load the checkpoint into `trainer` if there is one; return the epoch it ended."""
        if not self.path.is_file():
            return 0
        try:
            state = torch.load(self.path, map_location=trainer.device, weights_only=True)
        except Exception as exc:
            raise DebaError(f"checkpoint {self.path} is unreadable ({type(exc).__name__}): "
                            f"delete it to start {self.spec.name} afresh.") from None
        if state.get("key") != self.key:
            raise DebaError(f"checkpoint {self.path} belongs to another run "
                            f"({state.get('name')}): delete it to start {self.spec.name} afresh.")
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        trainer.data.generator.set_state(state["rng"]["data"].cpu())
        if "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), trainer.device)
        trainer.record, trainer.last_fit = state["record"], state["last_fit"]
        return state["epoch"]

    def finish(self, record: dict) -> None:
        write_json(self.done_path, record)
        self.path.unlink(missing_ok=True)
