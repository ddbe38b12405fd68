"""DEBA's options: `DebaConfig` (the paper's defaults, docs/pipeline.md) and the one table of what
each value may be. params.yaml's `deba` group and `DEBAScheduler(...)` both check against it."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypeGuard

from omegaconf import DictConfig, OmegaConf

from deba_pipeline.core.errors import ConfigError, fail

THRESHOLD_MODES = ("calibrated", "paper", "fixed")
GRADIENT_SOURCES = ("last_batch", "epoch_mean")
INITIAL_BATCH = 64  # samples: the paper's initial (and fixed-method) batch


@dataclass
class DebaConfig:
    thresholds: str = "paper"  # paper (Table 1) | calibrated (calibrate stage) | fixed
    theta_stab: float = 0.55  # ResNet-18's; read when thresholds is fixed, and by the library
    theta_conf: float = 0.6
    cooldown: int = 10  # epochs between adaptations
    window: Any = 15  # epochs of σ² history, or "full"
    growth: float = 1.5  # α_grow
    rollback: float = 0.8  # α_roll
    min_batch: int = 16  # samples
    max_batch: int = 2048  # samples
    signals: list[str] = field(
        default_factory=lambda: ["grad_variance", "grad_norm_variation", "loss_variation"]
    )
    rule: str = "deba"
    policy: str = "multiplicative"
    rule_options: dict[str, Any] = field(default_factory=dict)  # keywords of the rule's class
    policy_options: dict[str, Any] = field(default_factory=dict)  # keywords of the policy's class
    signal_options: dict[str, Any] = field(default_factory=dict)  # signal name -> its keywords
    gradient_source: str = "last_batch"  # last_batch | epoch_mean (docs/method.md)
    plugins: list[str] = field(default_factory=list)  # files in plugins/, e.g. grad_cosine.py


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def finite_number(v) -> TypeGuard[float]:
    """A finite int or float, not a bool (True is an int to Python); an int of any size is
    finite, where math.isfinite would overflow on it."""
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v))


def _names(v) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(n, str) and n for n in v)


def _mapping(v) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) for k in v)


DEBA_RULES = {  # key: (test, what is allowed)
    "thresholds": (lambda v: v in THRESHOLD_MODES, " | ".join(THRESHOLD_MODES)),
    "theta_stab": (lambda v: finite_number(v) and v >= 0, "a finite number >= 0"),
    "theta_conf": (lambda v: finite_number(v) and v >= 0, "a finite number >= 0"),
    "cooldown": (lambda v: _int(v) and v >= 0, "an integer >= 0 (epochs)"),
    "window": (lambda v: v == "full" or (_int(v) and v >= 2), 'an integer >= 2 (epochs) or "full"'),
    "growth": (lambda v: finite_number(v) and v > 1, "a finite number > 1"),
    "rollback": (lambda v: finite_number(v) and 0 < v < 1, "a number in (0, 1)"),
    "min_batch": (lambda v: _int(v) and v >= 1, "an integer >= 1 (samples)"),
    "max_batch": (lambda v: _int(v) and v >= 1, "an integer >= 1 (samples)"),
    "signals": (
        lambda v: _names(v) and 0 < len(v) == len(set(v)),
        "a non-empty list of distinct signal names",
    ),
    "rule": (lambda v: isinstance(v, str) and v != "", "a rule name (see `deba plugins`)"),
    "policy": (lambda v: isinstance(v, str) and v != "", "a policy name (see `deba plugins`)"),
    "rule_options": (_mapping, "a mapping of option names to values"),
    "policy_options": (_mapping, "a mapping of option names to values"),
    "signal_options": (
        lambda v: _mapping(v) and all(_mapping(o) for o in v.values()),
        "a mapping of signal names to mappings of options",
    ),
    "gradient_source": (lambda v: v in GRADIENT_SOURCES, " or ".join(GRADIENT_SOURCES)),
    "plugins": (_names, "a list of plugin file paths"),
}
DEBA_FIELDS = tuple(f.name for f in fields(DebaConfig))
assert set(DEBA_RULES) == set(DEBA_FIELDS), "every DebaConfig field needs a rule"


def check_deba(values: dict, where: str = "", prefix: str = "") -> None:
    """Raise one ConfigError for the first value of `values` that DEBA_RULES does not allow."""
    for key, value in values.items():
        test, allowed = DEBA_RULES[key]
        if not test(value):
            fail(f"{prefix}{key}", value, allowed, where)
    if values["min_batch"] > values["max_batch"]:
        fail(
            f"{prefix}min_batch",
            values["min_batch"],
            f"<= {prefix}max_batch ({values['max_batch']})",
            where,
        )
    unknown = set(values["signal_options"]) - set(values["signals"])
    if unknown:
        fail(
            f"{prefix}signal_options",
            sorted(unknown),
            f"options of signals listed in {prefix}signals",
            where,
        )
    if values["rule"] == "step_schedule":
        _check_schedule(values["rule_options"].get("at"), values["cooldown"], where, prefix)


def _check_schedule(at, cooldown, where, prefix) -> None:
    """The step schedule's epochs must each be able to fire: epoch 1 always holds, and a
    cooldown of C epochs holds the C epochs after every change, and epochs 1..C at the start
    (docs/method.md). Without this, at = [5, 12, 14] with the paper's cooldown 10 fires only at
    12."""
    if not at:
        fail(
            f"{prefix}rule_options.at",
            at,
            "a non-empty list of epochs at whose end "
            "step_schedule increases the batch, e.g. [30, 60, 80]",
            where,
        )
    if not isinstance(cooldown, int) or not all(_int(e) for e in at):
        return  # the rule itself names a malformed `at`
    blocked, last = [], 0  # the epoch of the last increase (t_last)
    for epoch in sorted(at):
        if epoch < 2 or epoch <= last + cooldown:
            blocked.append(epoch)
        else:
            last = epoch
    if blocked and cooldown == 0:
        fail(f"{prefix}rule_options.at", list(at), "epochs from 2 on: epoch 1 always holds", where)
    if blocked:
        fail(
            f"{prefix}rule_options.at",
            list(at),
            f"epochs the schedule can reach: "
            f"{prefix}cooldown = {cooldown} holds the {cooldown} epochs at the start and after "
            f"each increase, so {blocked} would never fire; set {prefix}cooldown: 0 (as "
            f"step_schedule is meant to run), or start after epoch {cooldown} and space the "
            f"epochs more than {cooldown} apart",
            where,
        )


def deba_config(config=None, **overrides) -> DebaConfig:
    """A validated DebaConfig from a DebaConfig, a mapping or None (the paper's), plus keywords."""
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    if config is not None and not isinstance(config, (DebaConfig, Mapping)):
        fail("config", config, "a DebaConfig, a mapping of DEBA options, or None (the paper's)")
    base = config if isinstance(config, DebaConfig) else DebaConfig()
    given = dict(config or {}) if not isinstance(config, DebaConfig) else {}
    given.update(overrides)
    unknown = [key for key in given if key not in DEBA_FIELDS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], DEBA_FIELDS, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else f" Known: {', '.join(DEBA_FIELDS)}."
        raise ConfigError(f"unknown DEBA option `{unknown[0]}`.{hint}")
    cfg = replace(base, **given)
    values = asdict(cfg)
    check_deba(values)
    if isinstance(cfg.signals, tuple):
        cfg.signals = list(cfg.signals)
    return cfg
