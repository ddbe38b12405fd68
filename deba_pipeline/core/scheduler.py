"""DEBAScheduler: one `step` per epoch turns (loss, gradients) into the next epoch's batch size.

Works in any PyTorch loop:

    sched = DEBAScheduler(batch_size=64)
    for epoch in range(epochs):
        ... train one epoch with sched.batch_size ...
        record = sched.step(loss=epoch_mean_loss, grads=[p.grad for p in model.parameters()])
"""

from __future__ import annotations

from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from deba_pipeline.core import plugins
from deba_pipeline.core.base import Observation
from deba_pipeline.core.errors import check
from deba_pipeline.core.gradstats import grad_stats
from deba_pipeline.core.inputs import (
    _accumulated,
    _grads,
    _loss,
    check_epoch_counts,
    check_grad_stats,
    check_sizes,
)
from deba_pipeline.core.options import INITIAL_BATCH, deba_config
from deba_pipeline.core.plugin_calls import (
    calling,
    check_wiring,
    lr_scale_value,
    policy_update,
    rule_decision,
    signal_value,
)
from deba_pipeline.core.saved_state import check_state, checkpointable, restored


@dataclass
class StepRecord:
    epoch: int  # the epoch just observed, from 1
    decision: str  # "increase" | "rollback" | "hold"
    batch_size: int  # the batch size for the next epoch
    signals: dict  # name -> value, None where undefined
    reason: str  # "first epoch" | "cooldown" | the rule's name
    lr_factor: float = 1.0  # learning-rate multiplier the policy asks for (1.0: unchanged)
    # η/η₀ for the next epoch, from its batch size (docs/peers.md lr_scaling)
    lr_scale: float = 1.0
    extra: dict = field(default_factory=dict)


class DEBAScheduler:
    """`DEBAScheduler(batch_size=64, **options)`: options are the fields of `DebaConfig`
    (config.py), whose defaults are the paper's: theta_stab, theta_conf, cooldown, window, growth,
    rollback, min_batch, max_batch, signals, rule, policy, rule_options, policy_options,
    signal_options, plugins (files to load). `config=` takes a whole DebaConfig or mapping.
    `world_size` W > 1 (docs/cluster.md): the batch is global, rounded down to a multiple of W after
    every update, or up to the next one where rounding down would fall below min_batch."""

    def __init__(
        self, batch_size: int = INITIAL_BATCH, config=None, *, world_size: int = 1, **options
    ):
        self.config = cfg = deba_config(config, **options)
        for path in cfg.plugins:
            plugins.load_plugin_file(path)
        self.policy = plugins.create(
            "policy",
            cfg.policy,
            cfg.growth,
            cfg.rollback,
            cfg.min_batch,
            cfg.max_batch,
            options=cfg.policy_options,
            where="policy_options",
        )
        check_sizes(batch_size, world_size, cfg.min_batch, cfg.max_batch)
        self.world_size = world_size
        self._grad_numbers: int | None = None  # numbers in the model's gradients, once seen
        self.rule = plugins.create(
            "rule",
            cfg.rule,
            cfg.theta_stab,
            cfg.theta_conf,
            options=cfg.rule_options,
            where="rule_options",
        )
        self.signals = {
            name: plugins.create(
                "signal", name, options=cfg.signal_options.get(name), where=f"signal_options.{name}"
            )
            for name in cfg.signals
        }
        check_wiring(cfg, self.rule, self.policy, self.signals)
        self.initial_batch = batch_size
        self.cooldown, self.window = cfg.cooldown, cfg.window
        self.batch_size, self.epoch, self.last_adaptation = batch_size, 0, 0
        maxlen = None if cfg.window == "full" else cfg.window
        self.windows: dict[str, deque[float]] = {
            name: deque(maxlen=maxlen) for name in self.signals
        }

    @property
    def accumulate(self) -> tuple:
        """What the signals ask a loop to sum over each epoch's steps (base.ACCUMULATORS), to
        pass to `step` as `accumulated={name: value}` with the epoch's `steps`."""
        return tuple(sorted({name for s in self.signals.values() for name in s.accumulate}))

    def observe(self, loss: float, grads, **epoch) -> dict:
        """Compute every signal for one finished epoch and update the windows; decide nothing.
        A fixed-batch run calls this alone, so its record carries the same signals.
        All or nothing: if anything raises, the scheduler is left as it was."""
        with self._transaction():
            return self._observe(loss, grads, **epoch)

    def _observe(self, loss: float, grads, steps=None, accumulated=None, dataset_size=None) -> dict:
        loss, grads = _loss(loss), _grads(grads)
        check_epoch_counts(steps, dataset_size, self.batch_size)
        accumulated = _accumulated(accumulated, grads, self.accumulate)
        # the same model every epoch: as many numbers (fewer where a None marks a parameter
        # frozen that epoch)
        size = sum(g.numel() for g in grads if g is not None)
        frozen = any(g is None for g in grads)  # not `in`: that compares tensors
        full = self._grad_numbers
        check(
            full is None or size == full or (frozen and size < full),
            "grads",
            f"<gradients holding {size} numbers>",
            f"the same model's gradients every epoch "
            f"({full} numbers before): a new model needs a new scheduler",
        )
        stats = grad_stats(grads)
        variance, norm = torch.stack([stats.variance, stats.norm]).tolist()  # one host sync
        check_grad_stats(variance, norm, grads)
        if not frozen:
            self._grad_numbers = size
        self.epoch += 1
        obs = Observation(
            self.epoch,
            loss,
            grads,
            variance,
            norm,
            self.batch_size,
            steps,
            accumulated,
            dataset_size,
        )
        values = {name: self._compute(name, signal, obs) for name, signal in self.signals.items()}
        for name, value in values.items():
            if value is not None:
                self.windows[name].append(value)
        return values

    def step(
        self, loss: float, grads, *, steps=None, accumulated=None, dataset_size=None
    ) -> StepRecord:
        """Observe one finished epoch; return the decision and the next epoch's batch size.
        `steps` and `accumulated` feed signals that sum per-step quantities (`accumulate`);
        `dataset_size`, the samples an epoch is drawn from without replacement, corrects them for
        a finite training set. All or nothing: a plugin that raises leaves the scheduler as it
        was before the call."""
        with self._transaction():
            return self._step(loss, grads, steps, accumulated, dataset_size)

    def _step(
        self, loss: float, grads, steps=None, accumulated=None, dataset_size=None
    ) -> StepRecord:
        values = self._observe(loss, grads, steps, accumulated, dataset_size)
        if self.epoch == 1:
            decision, reason = "hold", "first epoch"
        elif self.epoch <= self.last_adaptation + self.cooldown:
            decision, reason = "hold", "cooldown"
        else:
            decision, reason = self._decide(values), self.rule.name

        lr_factor = 1.0
        if decision != "hold":
            self.last_adaptation = self.epoch
            self.batch_size, lr_factor = self._update(decision)
        return StepRecord(
            self.epoch, decision, self.batch_size, values, reason, lr_factor, self.lr_scale()
        )

    def lr_scale(self) -> float:
        """η/η₀ for an epoch at the current batch size, as the policy's `lr_scale` says."""
        windows = {name: tuple(v) for name, v in self.windows.items()}
        with calling(f"policy {self.policy.name!r} lr_scale", self.epoch):
            scale = self.policy.lr_scale(self.batch_size, self.initial_batch, windows)
        return lr_scale_value(self.policy.name, scale, self.epoch)

    @contextmanager
    def _transaction(self):
        # Plugins assign to self.state rather than mutate it, so shallow copies suffice and no
        # gradient-sized state (e.g. grad_cosine's previous gradient) is ever copied.
        saved = (
            self.epoch,
            self.batch_size,
            self.last_adaptation,
            {name: deque(values, values.maxlen) for name, values in self.windows.items()},
            {name: dict(signal.state) for name, signal in self.signals.items()},
        )
        try:
            yield
        except BaseException:
            self.epoch, self.batch_size, self.last_adaptation, self.windows, states = saved
            for name, state in states.items():
                self.signals[name].state = state
            raise

    def cap_max_batch(self, size: int) -> None:
        """Lower max_batch for the rest of the run (e.g. after running out of device memory)."""
        self.policy.max_batch = max(self.policy.min_batch, min(self.policy.max_batch, size))
        self.batch_size = min(self.batch_size, self.policy.max_batch)

    def state_dict(self) -> dict:
        """What a checkpoint keeps; plugin state is refused here, naming the plugin, when a
        weights-only checkpoint could not hold it."""
        return {
            "epoch": self.epoch,
            "batch_size": self.batch_size,
            "last_adaptation": self.last_adaptation,
            "max_batch": self.policy.max_batch,
            "windows": {name: list(values) for name, values in self.windows.items()},
            "signals": {
                name: checkpointable(signal.state_dict(), f"signal {name!r}")
                for name, signal in self.signals.items()
            },
            "names": self._names(),
        }

    def _names(self) -> dict:
        return {
            "signals": list(self.signals),
            "rule": self.rule.name,
            "policy": self.policy.name,
            "window": self.window,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`'s output. Checked whole before anything changes: a bad state
        raises ConfigError naming the field and leaves the scheduler as it was."""
        check_state(
            state,
            self.state_dict(),
            self._names(),
            self.policy.min_batch,
            self.config.max_batch,
            self.window,
            self.world_size,
        )
        saved_max = self.policy.max_batch
        try:
            with self._transaction():
                for name, signal_state in state["signals"].items():
                    self.signals[name].load_state_dict(restored(signal_state))
                self.epoch, self.batch_size = state["epoch"], state["batch_size"]
                self.last_adaptation = state["last_adaptation"]
                self.policy.max_batch = state["max_batch"]
                for name, values in state["windows"].items():
                    self.windows[name].clear()
                    self.windows[name].extend(float(v) for v in values)
        except BaseException:
            self.policy.max_batch = saved_max
            raise

    def _compute(self, name, signal, obs):
        with calling(f"signal {name!r}", obs.epoch):
            value = signal.compute(obs)
        return signal_value(name, value, obs.epoch)

    def _decide(self, values):
        windows = {name: tuple(values) for name, values in self.windows.items()}
        self.rule.epoch, self.rule.batch_size = self.epoch, self.batch_size
        self.rule.growth, self.rule.rollback = self.policy.growth, self.policy.rollback
        with calling(f"rule {self.rule.name!r}", self.epoch):
            decision = self.rule.decide(dict(values), windows)
        return rule_decision(self.rule.name, decision, self.epoch)

    def _update(self, decision):
        with calling(f"policy {self.policy.name!r}", self.epoch):
            result = self.policy.update(decision, self.batch_size)
        size, lr_factor = policy_update(self.policy, result, decision, self.epoch)
        return fit_world(size, self.world_size, self.policy.min_batch), lr_factor


def fit_world(size: int, world: int, low: int) -> int:
    """A global batch of a W-process run (docs/cluster.md): `size` rounded down to a multiple of W,
    or up to the next one where rounding down would fall below `low` (min_batch): with W = 3 and
    min_batch 16, a rollback from 18 to 15 would leave the bounds, so 18 stays."""
    fitted = size - size % world
    return fitted + world if fitted < low else fitted
