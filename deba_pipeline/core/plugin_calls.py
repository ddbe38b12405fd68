"""What the scheduler checks of its plugins: that the chosen signals, rule and policy fit
together, and that what each call returns is a value the scheduler can use. A plugin's own
exception, or a value of the wrong kind, becomes one PluginError naming the plugin and the epoch."""

from __future__ import annotations

import math
import numbers
from contextlib import contextmanager

from deba_pipeline.core.base import ACCUMULATORS, DECISIONS
from deba_pipeline.core.errors import PLUGIN_FAULTS, PluginError, check


def check_wiring(cfg, rule, policy, signals: dict) -> None:
    """The rule and policy read only signals the config computes; the signals sum only what
    the loop offers (base.ACCUMULATORS)."""
    missing = [name for name in rule.requires if name not in signals]
    check(
        not missing,
        "signals",
        list(cfg.signals),
        f"a list that includes {missing}, which rule {cfg.rule!r} reads",
    )
    missing = [name for name in policy.requires if name not in signals]
    check(
        not missing,
        "signals",
        list(cfg.signals),
        f"a list that includes {missing}, "
        f"which policy {cfg.policy!r} reads with policy_options {cfg.policy_options}",
    )
    for name, signal in signals.items():
        unknown = sorted(set(signal.accumulate) - set(ACCUMULATORS))
        if unknown:
            raise PluginError(
                f"signal {name!r} asks to accumulate {unknown}, which the "
                f"loop does not offer: it offers {', '.join(ACCUMULATORS)}."
            )


@contextmanager
def calling(what: str, epoch: int):
    """Run a plugin's call; its own exception comes out as a PluginError naming `what`."""
    try:
        yield
    except PLUGIN_FAULTS as exc:
        raise PluginError(f"{what} raised at epoch {epoch}: {type(exc).__name__}: {exc}") from exc


def signal_value(name: str, value, epoch: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PluginError(
            f"signal {name!r} returned {value!r} ({type(value).__name__}) at "
            f"epoch {epoch}: a signal must return a float or None."
        )
    if not math.isfinite(value):
        raise PluginError(
            f"signal {name!r} returned {value} at epoch {epoch}: a signal "
            f"must return a finite float or None."
        )
    return float(value)


def rule_decision(name: str, decision, epoch: int) -> str:
    if decision not in DECISIONS:
        raise PluginError(
            f"rule {name!r} returned {decision!r} at epoch "
            f"{epoch}: a rule must return one of {', '.join(DECISIONS)}."
        )
    return decision


def policy_update(policy, result, decision: str, epoch: int) -> tuple[int, float]:
    """`policy.update`'s result, a size or (size, lr_factor): the size an integer within the
    policy's bounds, the factor a finite number > 0."""
    size, lr_factor = result if isinstance(result, tuple) else (result, 1.0)
    low, high = policy.min_batch, policy.max_batch
    if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= high:
        raise PluginError(
            f"policy {policy.name!r} returned batch size {size!r} for "
            f"{decision!r} at epoch {epoch}: it must be an integer in "
            f"[{low}, {high}]."
        )
    if (
        isinstance(lr_factor, bool)
        or not isinstance(lr_factor, (int, float))
        or not (math.isfinite(lr_factor) and lr_factor > 0)
    ):
        raise PluginError(
            f"policy {policy.name!r} returned learning-rate factor "
            f"{lr_factor!r} for {decision!r} at epoch {epoch}: it must be "
            f"a finite number > 0 (1.0 leaves the rate unchanged)."
        )
    return size, float(lr_factor)


def lr_scale_value(name: str, scale, epoch: int) -> float:
    if (
        isinstance(scale, bool)
        or not isinstance(scale, numbers.Real)
        or not (math.isfinite(scale) and float(scale) > 0)
    ):
        raise PluginError(
            f"policy {name!r} returned learning-rate scale "
            f"{scale!r} at epoch {epoch}: it must be a finite number > 0."
        )
    return float(scale)
