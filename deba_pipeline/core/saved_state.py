"""A scheduler's state in a checkpoint: plugin state put in the types a weights-only checkpoint
holds (and rebuilt on the way out), and a state to load checked whole before anything changes,
each fault one ConfigError naming the field."""

from __future__ import annotations

import math
import numbers
from collections import deque
from collections.abc import Mapping

from deba_pipeline.core.errors import ConfigError, PluginError, fail
from deba_pipeline.core.inputs import _is_int

# -- plugin state in a checkpoint ----------------------------------------------------------------
# Checkpoints load with torch.load(weights_only=True), which reads tensors and plain containers
# only; the common types a plugin keeps are tagged on the way in and rebuilt on the way out.
_KEY = (type(None), bool, int, float, str)


def checkpointable(value, owner: str, path: str = "state"):
    """`value` in types a weights-only checkpoint holds; anything else is refused naming `owner`
    and where in its state it sits, when the state is saved (not when it is read back)."""
    import numpy as np  # here: a command that trains nothing loads the plugins without them
    import torch

    if isinstance(value, (*_KEY, torch.Tensor)):
        return value
    if isinstance(value, (np.generic, np.ndarray)) and value.dtype != object:
        try:  # as a tensor, so the dtype (and a float32's rounding) survives
            return {
                "__deba_numpy__": torch.from_numpy(np.array(value)),
                "scalar": isinstance(value, np.generic),
            }
        except TypeError:  # a dtype torch has no tensor for
            if isinstance(value, np.generic):
                return value.item()
    if isinstance(value, deque):
        return {
            "__deba_deque__": [
                checkpointable(v, owner, f"{path}[{i}]") for i, v in enumerate(value)
            ],
            "maxlen": value.maxlen,
        }
    if isinstance(value, tuple):
        return {
            "__deba_tuple__": [
                checkpointable(v, owner, f"{path}[{i}]") for i, v in enumerate(value)
            ]
        }
    if isinstance(value, list):
        return [checkpointable(v, owner, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, _KEY) for k in value):
        return {k: checkpointable(v, owner, f"{path}[{k!r}]") for k, v in value.items()}
    raise PluginError(
        f"{owner} keeps {path} = {type(value).__name__} in its state, which a "
        f"checkpoint cannot hold: keep numbers, strings, lists, tuples, dicts (with "
        f"plain keys), deques, tensors or numpy arrays there, or convert it in the "
        f"plugin's state_dict() and load_state_dict()."
    )


def restored(value):
    """The inverse of `checkpointable`."""
    if isinstance(value, list):
        return [restored(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__deba_numpy__" in value:
        array = value["__deba_numpy__"].numpy()
        return array[()] if value["scalar"] else array
    if "__deba_deque__" in value:
        return deque((restored(v) for v in value["__deba_deque__"]), value["maxlen"])
    if "__deba_tuple__" in value:
        return tuple(restored(v) for v in value["__deba_tuple__"])
    return {k: restored(v) for k, v in value.items()}


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
    _check_windows(windows, window, where)


def _check_windows(windows: Mapping, window, where: str) -> None:
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
