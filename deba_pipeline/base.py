"""What a plugin subclasses: Signal, Rule and Policy, and what each of them is handed."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, Optional, Sequence

import torch

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
    or tensors) and it is checkpointed and restored for you. Options (`deba.signal_options`)
    arrive as keyword-only arguments of a subclass's __init__."""

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
    Cooldown and the first epoch are the scheduler's business: a rule is only asked outside them.
    Options (`deba.rule_options`) arrive as keyword-only arguments of a subclass's __init__;
    raise ConfigError there for a value the rule cannot use."""

    name: ClassVar[str]
    requires: ClassVar[tuple] = ()  # signal names the rule reads; checked when the scheduler is built

    def __init__(self, theta_stab: float, theta_conf: float) -> None:
        self.theta_stab, self.theta_conf = float(theta_stab), float(theta_conf)

    def decide(self, signals: dict, windows: dict) -> str:
        raise TypeError(f"rule {self.name!r} must define decide(signals, windows)")


class Policy:
    """Maps a decision to the next batch size; may return (batch_size, lr_factor) to scale the lr.
    Options (`deba.policy_options`) arrive as keyword-only arguments of a subclass's __init__."""

    name: ClassVar[str]

    def __init__(self, growth: float, rollback: float, min_batch: int, max_batch: int) -> None:
        self.growth, self.rollback = float(growth), float(rollback)
        self.min_batch, self.max_batch = min_batch, max_batch

    def update(self, decision: str, batch_size: int):
        raise TypeError(f"policy {self.name!r} must define update(decision, batch_size)")
