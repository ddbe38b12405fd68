"""What a caller hands `DEBAScheduler`, checked before anything changes: its first batch and
world size, and each epoch's loss, gradients, counts and per-step sums, each refused with one
ConfigError naming the argument."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping

import torch

from deba_pipeline.core.base import ACCUMULATORS
from deba_pipeline.core.errors import ConfigError, check, fail


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_sizes(batch_size, world_size, min_batch: int, max_batch: int) -> None:
    """A scheduler's first batch and world size: the batch within the bounds, and global (a
    multiple of the world size)."""
    check(
        isinstance(batch_size, int)
        and not isinstance(batch_size, bool)
        and min_batch <= batch_size <= max_batch,
        "batch_size",
        batch_size,
        f"an integer in [min_batch, max_batch] = [{min_batch}, {max_batch}]",
    )
    check(
        _is_int(world_size) and 1 <= world_size <= min_batch,
        "world_size",
        world_size,
        f"an integer in [1, min_batch = {min_batch}]",
    )
    check(
        max_batch // world_size * world_size >= min_batch,
        "world_size",
        world_size,
        f"a divisor of some batch size in [min_batch, max_batch] = "
        f"[{min_batch}, {max_batch}] (every global batch is a multiple of it)",
    )
    check(
        _is_int(batch_size) and batch_size % world_size == 0,
        "batch_size",
        batch_size,
        f"a multiple of world_size = {world_size}",
    )


def check_epoch_counts(steps, dataset_size, batch_size: int) -> None:
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
            dataset_size >= steps * batch_size,
            "dataset_size",
            dataset_size,
            f"at least the epoch's samples (steps × batch = {steps * batch_size}): "
            f"an epoch draws each sample at most once",
        )


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


def check_grad_stats(variance: float, norm: float, grads: list) -> None:
    """The epoch's gradient variance and norm are finite; where not, says whether the
    gradients hold a NaN or infinity or are only too large to square."""
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
        out["grad_sq_norm"] = _grad_sq_norm(out["grad_sq_norm"])
    if "grad_sum" in out:
        _check_grad_sum(out["grad_sum"], sum(g.numel() for g in grads if g is not None))
    return out


def _grad_sq_norm(value):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    check(
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and float(value) >= 0,
        "accumulated['grad_sq_norm']",
        value,
        "a finite number >= 0 (Σ over the epoch's steps of ‖gₜ‖²)",
    )
    return value


def _check_grad_sum(value, size: int) -> None:
    ok = isinstance(value, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in value)
    if not ok or sum(t.numel() for t in value) != size:
        shown = (
            f"<{len(value)} tensors of shapes {[tuple(t.shape) for t in value]}>" if ok else value
        )
        fail(
            "accumulated['grad_sum']",
            shown,
            f"tensors holding as many numbers as the "
            f"gradients ({size}): Σ over the epoch's steps of gₜ",
        )
    # once an epoch, one host sync: a NaN here is the loop's, not the signal's that reads it
    finite = bool(torch.stack([torch.isfinite(t).all() for t in value]).all()) if value else True
    check(
        finite,
        "accumulated['grad_sum']",
        "<tensors holding NaN or infinity>",
        "finite tensors (Σ over the epoch's steps of gₜ): check the loop that sums them",
    )
