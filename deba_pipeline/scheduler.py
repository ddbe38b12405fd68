"""DEBAScheduler: one `step` per epoch turns (loss, gradients) into the next epoch's batch size.

Works in any PyTorch loop:

    sched = DEBAScheduler(batch_size=64)
    for epoch in range(epochs):
        ... train one epoch with sched.batch_size ...
        record = sched.step(loss=epoch_mean_loss, grads=[p.grad for p in model.parameters()])
"""
from __future__ import annotations

import math
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from . import plugins
from .base import DECISIONS, Observation
from .config import TrainConfig, deba_config
from .errors import PluginError, check
from .gradstats import grad_stats

@dataclass
class StepRecord:
    epoch: int               # the epoch just observed, from 1
    decision: str            # "increase" | "rollback" | "hold"
    batch_size: int          # the batch size for the next epoch
    signals: dict            # name -> value, None where undefined
    reason: str              # "first epoch" | "cooldown" | the rule's name
    lr_factor: float = 1.0   # learning-rate multiplier the policy asks for (1.0: unchanged)
    extra: dict = field(default_factory=dict)


class DEBAScheduler:
    """`DEBAScheduler(batch_size=64, **options)`: options are the fields of `DebaConfig`
    (config.py), whose defaults are the paper's: theta_stab, theta_conf, cooldown, window, growth,
    rollback, min_batch, max_batch, signals, rule, policy, rule_options, policy_options,
    signal_options, plugins (files to load). `config=` takes a whole DebaConfig or mapping."""

    def __init__(self, batch_size: int = TrainConfig.batch_size, config=None, **options):
        self.config = cfg = deba_config(config, **options)
        for path in cfg.plugins:
            plugins.load_plugin_file(path)
        self.policy = plugins.create("policy", cfg.policy, cfg.growth, cfg.rollback,
                                     cfg.min_batch, cfg.max_batch, options=cfg.policy_options,
                                     where="policy_options")
        check(isinstance(batch_size, int) and not isinstance(batch_size, bool)
              and cfg.min_batch <= batch_size <= cfg.max_batch, "batch_size", batch_size,
              f"an integer in [min_batch, max_batch] = [{cfg.min_batch}, {cfg.max_batch}]")
        self.rule = plugins.create("rule", cfg.rule, cfg.theta_stab, cfg.theta_conf,
                                   options=cfg.rule_options, where="rule_options")
        self.signals = {name: plugins.create("signal", name, options=cfg.signal_options.get(name),
                                             where=f"signal_options.{name}")
                        for name in cfg.signals}
        missing = [name for name in self.rule.requires if name not in self.signals]
        check(not missing, "signals", list(cfg.signals),
              f"a list that includes {missing}, which rule {cfg.rule!r} reads")
        self.cooldown, self.window = cfg.cooldown, cfg.window
        self.batch_size, self.epoch, self.last_adaptation = batch_size, 0, 0
        maxlen = None if cfg.window == "full" else cfg.window
        self.windows = {name: deque(maxlen=maxlen) for name in self.signals}

    def observe(self, loss: float, grads) -> dict:
        """Compute every signal for one finished epoch and update the windows; decide nothing.
        A fixed-batch run calls this alone, so its record carries the same signals.
        All or nothing: if anything raises, the scheduler is left as it was."""
        with self._transaction():
            return self._observe(loss, grads)

    def _observe(self, loss: float, grads) -> dict:
        loss = float(loss)
        check(math.isfinite(loss), "loss", loss, "a finite number (the epoch's mean training loss)")
        grads = list(grads)
        stats = grad_stats(grads)
        variance, norm = torch.stack([stats.variance, stats.norm]).tolist()  # one host sync
        check(math.isfinite(variance) and math.isfinite(norm), "grads",
              f"<gradients with variance {variance}, norm {norm}>", "finite everywhere")
        self.epoch += 1
        obs = Observation(self.epoch, loss, grads, variance, norm)
        values = {name: self._compute(name, signal, obs) for name, signal in self.signals.items()}
        for name, value in values.items():
            if value is not None:
                self.windows[name].append(value)
        return values

    def step(self, loss: float, grads) -> StepRecord:
        """Observe one finished epoch; return the decision and the next epoch's batch size.
        All or nothing: a plugin that raises leaves the scheduler as it was before the call."""
        with self._transaction():
            return self._step(loss, grads)

    def _step(self, loss: float, grads) -> StepRecord:
        values = self._observe(loss, grads)
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
        return StepRecord(self.epoch, decision, self.batch_size, values, reason, lr_factor)

    @contextmanager
    def _transaction(self):
        # Plugins assign to self.state rather than mutate it, so shallow copies suffice and no
        # gradient-sized state (e.g. grad_cosine's previous gradient) is ever copied.
        saved = (self.epoch, self.batch_size, self.last_adaptation,
                 {name: deque(values, values.maxlen) for name, values in self.windows.items()},
                 {name: dict(signal.state) for name, signal in self.signals.items()})
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
        return {"epoch": self.epoch, "batch_size": self.batch_size,
                "last_adaptation": self.last_adaptation, "max_batch": self.policy.max_batch,
                "windows": {name: list(values) for name, values in self.windows.items()},
                "signals": {name: signal.state_dict() for name, signal in self.signals.items()},
                "names": {"signals": list(self.signals), "rule": self.rule.name,
                          "policy": self.policy.name, "window": self.window}}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()["names"]
        if state.get("names") != mine:
            raise PluginError(f"scheduler state was saved with {state.get('names')} but this "
                              f"scheduler uses {mine}: build the scheduler with the same signals, "
                              f"rule, policy and window before loading.")
        self.epoch, self.batch_size = state["epoch"], state["batch_size"]
        self.last_adaptation, self.policy.max_batch = state["last_adaptation"], state["max_batch"]
        for name, values in state["windows"].items():
            self.windows[name].clear()
            self.windows[name].extend(values)
        for name, signal_state in state["signals"].items():
            self.signals[name].load_state_dict(signal_state)

    def _compute(self, name, signal, obs):
        try:
            value = signal.compute(obs)
        except Exception as exc:
            raise PluginError(f"signal {name!r} raised at epoch {obs.epoch}: "
                              f"{type(exc).__name__}: {exc}") from exc
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PluginError(f"signal {name!r} returned {value!r} ({type(value).__name__}) at "
                              f"epoch {obs.epoch}: a signal must return a float or None.")
        if not math.isfinite(value):
            raise PluginError(f"signal {name!r} returned {value} at epoch {obs.epoch}: a signal "
                              f"must return a finite float or None.")
        return float(value)

    def _decide(self, values):
        windows = {name: tuple(values) for name, values in self.windows.items()}
        try:
            decision = self.rule.decide(dict(values), windows)
        except Exception as exc:
            raise PluginError(f"rule {self.rule.name!r} raised at epoch {self.epoch}: "
                              f"{type(exc).__name__}: {exc}") from exc
        if decision not in DECISIONS:
            raise PluginError(f"rule {self.rule.name!r} returned {decision!r} at epoch "
                              f"{self.epoch}: a rule must return one of {', '.join(DECISIONS)}.")
        return decision

    def _update(self, decision):
        try:
            result = self.policy.update(decision, self.batch_size)
        except Exception as exc:
            raise PluginError(f"policy {self.policy.name!r} raised at epoch {self.epoch}: "
                              f"{type(exc).__name__}: {exc}") from exc
        size, lr_factor = result if isinstance(result, tuple) else (result, 1.0)
        low, high = self.policy.min_batch, self.policy.max_batch
        if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= high:
            raise PluginError(f"policy {self.policy.name!r} returned batch size {size!r} for "
                              f"{decision!r} at epoch {self.epoch}: it must be an integer in "
                              f"[{low}, {high}].")
        if isinstance(lr_factor, bool) or not isinstance(lr_factor, (int, float)) \
                or not (math.isfinite(lr_factor) and lr_factor > 0):
            raise PluginError(f"policy {self.policy.name!r} returned learning-rate factor "
                              f"{lr_factor!r} for {decision!r} at epoch {self.epoch}: it must be "
                              f"a finite number > 0 (1.0 leaves the rate unchanged).")
        return size, float(lr_factor)
