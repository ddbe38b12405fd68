"""What a plugin subclasses: Signal, Rule and Policy, and what each of them is handed."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch


DECISIONS = ("increase", "rollback", "hold")
EPS = 1e-8  # docs/method.md ε: keeps the relative variations finite when the previous value is 0


@dataclass
class Observation:
    """What the training loop saw in epoch `epoch` (numbered from 1)."""

    epoch: int
    loss: float  # mean training loss of the epoch
    grads: Sequence[torch.Tensor | None]  # the gradients docs/method.md names (None = frozen)
    grad_variance: float  # σ² of the flattened gradient, population
    grad_norm: float  # ‖∇‖₂ of the flattened gradient
    batch_size: int | None = None  # samples a step this epoch (global under DDP)
    steps: int | None = None  # steps this epoch
    accumulated: dict = field(default_factory=dict)  # what signals' `accumulate` asked for
    dataset_size: int | None = None  # N the epoch drew from without replacement


# What a signal may ask the loop to accumulate over an epoch's steps, on the device, with one
# host sync an epoch (Signal.accumulate); each arrives in Observation.accumulated by its name.
ACCUMULATORS = {
    "grad_sq_norm": "Σₜ ‖gₜ‖², the sum over the epoch's steps of each step's squared gradient "
    "norm (a float, summed in float64)",
    "grad_sum": "Σₜ gₜ, the running sum of the epoch's step gradients (a list of tensors like "
    "the parameters: P more floats on the device while a signal asks for it)",
}


class Signal:
    """A per-epoch number. Keep what the next epoch needs in `self.state` (a dict of numbers,
    strings, lists, tuples, dicts, deques, tensors or numpy arrays) and it is checkpointed and
    restored for you. Options (`deba.signal_options`)
    arrive as keyword-only arguments of a subclass's __init__."""

    name: ClassVar[str]
    accumulate: ClassVar[tuple] = ()  # names from ACCUMULATORS the loop should sum every step

    def __init__(self) -> None:
        self.state: dict = {}

    def compute(self, obs: Observation) -> float | None:
        """The signal's value at this epoch, or None where it is undefined (e.g. epoch 1)."""
        raise TypeError(f"signal {self.name!r} must define compute(obs)")

    def state_dict(self) -> dict:
        return copy.deepcopy(self.state)

    def load_state_dict(self, state: dict) -> None:
        self.state = copy.deepcopy(state)


class Rule:
    """Turns this epoch's signals (and their windows) into "increase", "rollback" or "hold".
    Cooldown and the first epoch are the scheduler's business: a rule is only asked outside them.
    Before each `decide` the scheduler sets `self.epoch` (the epoch just trained, from 1),
    `self.batch_size` (its batch size) and `self.growth`, `self.rollback` (the policy's factors).
    Options (`deba.rule_options`) arrive as keyword-only arguments of a subclass's __init__;
    raise ConfigError there for a value the rule cannot use."""

    name: ClassVar[str]
    requires: ClassVar[tuple] = ()  # signal names the rule reads; checked as the scheduler is made

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

    requires: ClassVar[tuple] = ()  # signal names lr_scale reads; checked like a rule's

    def lr_scale(self, batch_size: int, initial_batch: int, windows: dict) -> float:
        """η/η₀ for an epoch at `batch_size`, from B directly (docs/peers.md): 1.0 keeps the
        rate."""
        return 1.0


class Dataset:
    """A named dataset. `load(seed, data, image_size)` returns (x_train, y_train, x_test,
    y_test, num_classes): float images N×C×H×W and int64 labels; `data` is the params group
    `data`, `image_size` the architecture's train.image_size (or None). The engine normalises
    with the training split's statistics and holds or streams the data."""

    name: ClassVar[str]

    def load(self, seed: int, data, image_size: int | None = None) -> tuple:
        raise TypeError(f"dataset {self.name!r} must define load(seed, data, image_size)")
