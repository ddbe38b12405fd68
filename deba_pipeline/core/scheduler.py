"""DEBAScheduler: one `step` per epoch turns (loss, gradients) into the next epoch's batch size.

Works in any PyTorch loop:

    sched = DEBAScheduler(batch_size=64)
    for epoch in range(epochs):
        ... train one epoch with sched.batch_size ...
        record = sched.step(loss=epoch_mean_loss, grads=[p.grad for p in model.parameters()])
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from deba_pipeline.core import plugins
from deba_pipeline.core.base import ACCUMULATORS, DECISIONS, Observation, checkpointable, restored
from deba_pipeline.core.errors import PLUGIN_FAULTS, PluginError, check
from deba_pipeline.core.gradstats import grad_stats
from deba_pipeline.core.inputs import _accumulated, _grads, _is_int, _loss, check_state
from deba_pipeline.core.options import INITIAL_BATCH, deba_config


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
        check(
            isinstance(batch_size, int)
            and not isinstance(batch_size, bool)
            and cfg.min_batch <= batch_size <= cfg.max_batch,
            "batch_size",
            batch_size,
            f"an integer in [min_batch, max_batch] = [{cfg.min_batch}, {cfg.max_batch}]",
        )
        check(
            _is_int(world_size) and 1 <= world_size <= cfg.min_batch,
            "world_size",
            world_size,
            f"an integer in [1, min_batch = {cfg.min_batch}]",
        )
        check(
            cfg.max_batch // world_size * world_size >= cfg.min_batch,
            "world_size",
            world_size,
            f"a divisor of some batch size in [min_batch, max_batch] = "
            f"[{cfg.min_batch}, {cfg.max_batch}] (every global batch is a multiple of it)",
        )
        check(
            _is_int(batch_size) and batch_size % world_size == 0,
            "batch_size",
            batch_size,
            f"a multiple of world_size = {world_size}",
        )
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
        missing = [name for name in self.rule.requires if name not in self.signals]
        check(
            not missing,
            "signals",
            list(cfg.signals),
            f"a list that includes {missing}, which rule {cfg.rule!r} reads",
        )
        missing = [name for name in self.policy.requires if name not in self.signals]
        check(
            not missing,
            "signals",
            list(cfg.signals),
            f"a list that includes {missing}, "
            f"which policy {cfg.policy!r} reads with policy_options {cfg.policy_options}",
        )
        for name, signal in self.signals.items():
            unknown = sorted(set(signal.accumulate) - set(ACCUMULATORS))
            if unknown:
                raise PluginError(
                    f"signal {name!r} asks to accumulate {unknown}, which the "
                    f"loop does not offer: it offers {', '.join(ACCUMULATORS)}."
                )
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
        check(
            dataset_size is None
            or (
                isinstance(dataset_size, numbers.Integral)
                and not isinstance(dataset_size, bool)
                and int(dataset_size) > 0
            ),
            "dataset_size",
            dataset_size,
            "a positive integer (the samples an epoch draws "
            "from without replacement), or None for independent draws",
        )
        check(
            steps is None
            or (
                isinstance(steps, numbers.Integral)
                and not isinstance(steps, bool)
                and 1 <= int(steps) < 2**53
            ),
            "steps",
            steps,
            "an integer in [1, 2^53) (the epoch's optimiser steps; beyond, a "
            "float cannot count them), or None",
        )
        if steps is not None and dataset_size is not None:
            check(
                dataset_size >= steps * self.batch_size,
                "dataset_size",
                dataset_size,
                f"at least the epoch's samples (steps × batch = {steps * self.batch_size}): "
                f"an epoch draws each sample at most once",
            )
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
        if not (math.isfinite(variance) and math.isfinite(norm)):
            finite = all(bool(torch.isfinite(g).all()) for g in grads if g is not None)
            check(
                False,
                "grads",
                f"<gradients with variance {variance}, norm {norm}>",
                "gradients whose squares fit a float64 (these are finite but too large: "
                "scale the loss down)"
                if finite
                else "finite everywhere",
            )
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
        try:
            scale = self.policy.lr_scale(
                self.batch_size,
                self.initial_batch,
                {name: tuple(v) for name, v in self.windows.items()},
            )
        except PLUGIN_FAULTS as exc:
            raise PluginError(
                f"policy {self.policy.name!r} lr_scale raised at epoch "
                f"{self.epoch}: {type(exc).__name__}: {exc}"
            ) from exc
        if (
            isinstance(scale, bool)
            or not isinstance(scale, numbers.Real)
            or not (math.isfinite(scale) and float(scale) > 0)
        ):
            raise PluginError(
                f"policy {self.policy.name!r} returned learning-rate scale "
                f"{scale!r} at epoch {self.epoch}: it must be a finite number > 0."
            )
        return float(scale)

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
        try:
            value = signal.compute(obs)
        except PLUGIN_FAULTS as exc:
            raise PluginError(
                f"signal {name!r} raised at epoch {obs.epoch}: {type(exc).__name__}: {exc}"
            ) from exc
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise PluginError(
                f"signal {name!r} returned {value!r} ({type(value).__name__}) at "
                f"epoch {obs.epoch}: a signal must return a float or None."
            )
        if not math.isfinite(value):
            raise PluginError(
                f"signal {name!r} returned {value} at epoch {obs.epoch}: a signal "
                f"must return a finite float or None."
            )
        return float(value)

    def _decide(self, values):
        windows = {name: tuple(values) for name, values in self.windows.items()}
        self.rule.epoch, self.rule.batch_size = self.epoch, self.batch_size
        self.rule.growth, self.rule.rollback = self.policy.growth, self.policy.rollback
        try:
            decision = self.rule.decide(dict(values), windows)
        except PLUGIN_FAULTS as exc:
            raise PluginError(
                f"rule {self.rule.name!r} raised at epoch {self.epoch}: {type(exc).__name__}: {exc}"
            ) from exc
        if decision not in DECISIONS:
            raise PluginError(
                f"rule {self.rule.name!r} returned {decision!r} at epoch "
                f"{self.epoch}: a rule must return one of {', '.join(DECISIONS)}."
            )
        return decision

    def _update(self, decision):
        try:
            result = self.policy.update(decision, self.batch_size)
        except PLUGIN_FAULTS as exc:
            raise PluginError(
                f"policy {self.policy.name!r} raised at epoch {self.epoch}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        size, lr_factor = result if isinstance(result, tuple) else (result, 1.0)
        low, high = self.policy.min_batch, self.policy.max_batch
        if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= high:
            raise PluginError(
                f"policy {self.policy.name!r} returned batch size {size!r} for "
                f"{decision!r} at epoch {self.epoch}: it must be an integer in "
                f"[{low}, {high}]."
            )
        size = fit_world(size, self.world_size, low)
        if (
            isinstance(lr_factor, bool)
            or not isinstance(lr_factor, (int, float))
            or not (math.isfinite(lr_factor) and lr_factor > 0)
        ):
            raise PluginError(
                f"policy {self.policy.name!r} returned learning-rate factor "
                f"{lr_factor!r} for {decision!r} at epoch {self.epoch}: it must be "
                f"a finite number > 0 (1.0 leaves the rate unchanged)."
            )
        return size, float(lr_factor)


def fit_world(size: int, world: int, low: int) -> int:
    """A global batch of a W-process run (docs/cluster.md): `size` rounded down to a multiple of W,
    or up to the next one where rounding down would fall below `low` (min_batch): with W = 3 and
    min_batch 16, a rollback from 18 to 15 would leave the bounds, so 18 stays."""
    fitted = size - size % world
    return fitted + world if fitted < low else fitted
