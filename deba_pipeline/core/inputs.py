"""What a loop hands `DEBAScheduler.step` each epoch, checked before anything changes: the loss,
the gradients and the per-step sums, each refused with one ConfigError naming the argument."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping

import torch

from deba_pipeline.core.base import ACCUMULATORS
from deba_pipeline.core.errors import ConfigError, check, fail


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _loss(loss) -> float:
    """A finite float from a number or a one-element tensor."""
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        loss = loss.item()
    check(
        isinstance(loss, numbers.Real) and not isinstance(loss, bool) and math.isfinite(loss),
        "loss",
        loss,
        "a finite number (the epoch's mean training loss)",
    )
    return float(loss)


def _grads(grads) -> list:
    """The gradients as a list, refusing a lone tensor or string that would iterate silently."""
    allowed = "a list of gradient tensors, e.g. [p.grad for p in model.parameters()]"
    if isinstance(grads, torch.Tensor):
        fail(
            "grads",
            f"<one tensor of shape {tuple(grads.shape)}>",
            allowed + " (wrap one tensor in a list)",
        )
    if isinstance(grads, (str, bytes, Mapping)) or not isinstance(grads, Iterable):
        fail("grads", grads, allowed)
    grads = list(grads)
    wrong = [type(g).__name__ for g in grads if g is not None and not isinstance(g, torch.Tensor)]
    if wrong or all(g is None for g in grads):
        fail(
            "grads",
            f"<{len(grads)} items: {', '.join(wrong) or 'all None'}>",
            allowed + " with at least one tensor (None marks a frozen parameter)",
        )
    for i, g in enumerate(grads):
        kind = (
            None
            if g is None
            else "sparse"
            if g.layout != torch.strided
            else "complex"
            if g.is_complex()
            else "on the meta device"
            if g.device.type == "meta"
            else None
            if g.is_floating_point()
            else str(g.dtype).removeprefix("torch.")
        )
        if kind:
            fail(
                "grads",
                f"<gradient {i}: {kind}>",
                "dense, real floating-point tensors on a "
                "device that holds values (what backward() leaves in p.grad)",
            )
    return grads


def _accumulated(accumulated, grads, wanted) -> dict:
    """The per-step sums a loop passes, checked like `loss` and `grads`: a mapping of the names
    the signals asked for (base.ACCUMULATORS), Σ‖g‖² a finite number >= 0, Σg tensors holding
    as many numbers as the gradients."""
    if accumulated is None:
        return {}
    if not isinstance(accumulated, Mapping):
        fail(
            "accumulated",
            accumulated,
            "a mapping {name: value} of the per-step sums the "
            "signals' `accumulate` asks for, or None",
        )
    for name in accumulated:
        if name not in ACCUMULATORS:
            raise ConfigError(
                f"`accumulated` key {name!r} is not allowed: it must be one of "
                f"{', '.join(ACCUMULATORS)}."
            )
    missing = sorted(set(wanted) - set(accumulated))
    check(
        not missing,
        "accumulated",
        set(accumulated),
        f"a mapping holding "
        f"{', '.join(missing)} (what the signals' `accumulate` asks for), or None",
    )
    out = dict(accumulated)
    if "grad_sq_norm" in out:
        value = out["grad_sq_norm"]
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = out["grad_sq_norm"] = value.item()
        check(
            isinstance(value, numbers.Real)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and float(value) >= 0,
            "accumulated['grad_sq_norm']",
            value,
            "a finite number >= 0 (Σ over the epoch's steps of ‖gₜ‖²)",
        )
    if "grad_sum" in out:
        value, size = out["grad_sum"], sum(g.numel() for g in grads if g is not None)
        ok = isinstance(value, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in value)
        if not ok or sum(t.numel() for t in value) != size:
            shown = (
                f"<{len(value)} tensors of shapes {[tuple(t.shape) for t in value]}>"
                if ok
                else value
            )
            fail(
                "accumulated['grad_sum']",
                shown,
                f"tensors holding as many numbers as the "
                f"gradients ({size}): Σ over the epoch's steps of gₜ",
            )
        # once an epoch, one host sync: a NaN here is the loop's, not the signal's that reads it
        finite = (
            bool(torch.stack([torch.isfinite(t).all() for t in value]).all()) if value else True
        )
        check(
            finite,
            "accumulated['grad_sum']",
            "<tensors holding NaN or infinity>",
            "finite tensors (Σ over the epoch's steps of gₜ): check the loop that sums them",
        )
    return out


def check_state(
    state, current: dict, names: dict, low: int, high: int, window, world: int = 1
) -> None:
    """A scheduler state to load, against the scheduler's own `current` state_dict() (its keys,
    signals, window), its plugin `names`, its batch bounds [low, high] and its world size (a
    global batch splits evenly over the processes)."""
    where = "load_state_dict: "
    if not isinstance(state, Mapping):
        fail("state", type(state).__name__, "a mapping returned by state_dict()", where)
    keys = sorted(current)
    if sorted(state) != keys:
        fail("state", sorted(state), f"a mapping with exactly the keys {keys}", where)
    if state["names"] != names:
        raise ConfigError(
            f"{where}scheduler state was saved with {state['names']} but this "
            f"scheduler uses {names}: build the scheduler with the "
            f"same signals, rule, policy and window before loading."
        )
    checks = [
        ("epoch", _is_int(state["epoch"]) and state["epoch"] >= 0, "an integer >= 0"),
        (
            "max_batch",
            _is_int(state["max_batch"]) and low <= state["max_batch"] <= high,
            f"an integer in [{low}, {high}]",
        ),
        (
            "last_adaptation",
            _is_int(state["last_adaptation"])
            and 0 <= state["last_adaptation"] <= (state["epoch"] if _is_int(state["epoch"]) else 0),
            "an integer in [0, epoch]",
        ),
    ]
    for key, ok, allowed in checks:
        if not ok:
            fail(f"state['{key}']", state[key], allowed, where)
    size = state["batch_size"]
    if not (_is_int(size) and low <= size <= state["max_batch"]):
        fail("state['batch_size']", size, f"an integer in [{low}, {state['max_batch']}]", where)
    if size % world:
        fail(
            "state['batch_size']",
            size,
            f"a multiple of world_size = {world} (the batch is "
            f"global: each process takes batch_size / {world})",
            where,
        )
    windows, signals, known = state["windows"], state["signals"], list(current["signals"])
    for key, value in (("windows", windows), ("signals", signals)):
        if not isinstance(value, Mapping) or sorted(value) != sorted(known):
            fail(f"state['{key}']", value, f"a mapping over the signals {known}", where)
    limit = None if window == "full" else window
    for name, values in windows.items():
        if not (
            isinstance(values, (list, tuple))
            and all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                for v in values
            )
            and (limit is None or len(values) <= limit)
        ):
            fail(
                f"state['windows']['{name}']",
                values,
                f"a list of finite numbers, at most `window` = {window} long",
                where,
            )
