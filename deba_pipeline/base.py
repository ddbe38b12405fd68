"""What a plugin subclasses: Signal, Rule and Policy, and what each of them is handed."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, Optional, Sequence

import torch

from .errors import check

DECISIONS = ("increase", "rollback", "hold")
EPS = 1e-8  # SPEC §1 ε: keeps the relative variations finite when the previous value is 0


@dataclass
class Observation:
    """What the training loop saw in epoch `epoch` (numbered from 1)."""

    epoch: int
    loss: float                               # mean training loss of the epoch
    grads: Sequence[Optional[torch.Tensor]]   # the gradients SPEC §1 names (None = frozen)
    grad_variance: float                      # σ² of the flattened gradient, population
    grad_norm: float                          # ‖∇‖₂ of the flattened gradient


class Signal:
    """A per-epoch number. Keep what the next epoch needs in `self.state` (a dict of plain values
    or tensors) and it is checkpointed and restored for you."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self.state: dict = {}

    def compute(self, obs: Observation) -> Optional[float]:
        """The signal's value at this epoch, or None where it is undefined (e.g. epoch 1)."""
        raise TypeError(f"signal {self.name!r} must define compute(obs)")

    def state_dict(self) -> dict:
        return copy.deepcopy(self.state)

    def load_state_dict(self, state: dict) -> None:
        self.state = copy.deepcopy(state)


class Rule:
    """Turns this epoch's signals (and their windows) into "increase", "rollback" or "hold".
    Cooldown and the first epoch are the scheduler's business: a rule is only asked outside them."""

    name: ClassVar[str]
    requires: ClassVar[tuple] = ()  # signal names the rule reads; checked when the scheduler is built

    def __init__(self, theta_stab: float, theta_conf: float, **options) -> None:
        for key, value in (("theta_stab", theta_stab), ("theta_conf", theta_conf)):
            check(isinstance(value, (int, float)) and value >= 0 and value == value
                  and value != float("inf"), key, value, "a finite number >= 0")
        self.theta_stab, self.theta_conf, self.options = float(theta_stab), float(theta_conf), options

    def decide(self, signals: dict, windows: dict) -> str:
        raise TypeError(f"rule {self.name!r} must define decide(signals, windows)")


class Policy:
    """Maps a decision to the next batch size; may return (batch_size, lr_factor) to scale the lr."""

    name: ClassVar[str]

    def __init__(self, growth: float, rollback: float, min_batch: int, max_batch: int,
                 **options) -> None:
        check(isinstance(growth, (int, float)) and 1 < growth < float("inf"), "growth", growth,
              "a finite number > 1")
        check(isinstance(rollback, (int, float)) and 0 < rollback < 1, "rollback", rollback,
              "a number in the open interval (0, 1)")
        for key, value in (("min_batch", min_batch), ("max_batch", max_batch)):
            check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, key,
                  value, "an integer >= 1")
        check(min_batch <= max_batch, "min_batch", min_batch, f"<= max_batch ({max_batch})")
        self.growth, self.rollback = float(growth), float(rollback)
        self.min_batch, self.max_batch, self.options = min_batch, max_batch, options

    def update(self, decision: str, batch_size: int):
        raise TypeError(f"policy {self.name!r} must define update(decision, batch_size)")
