"""The one place that sets up a process that trains or times: its torch threads, how denormals
compute, oneDNN's kernel cache, its log level. The CLI calls `prepare` before anything computes,
and so do each pool worker, each torchrun rank and each Ray task, so a run computes alike
wherever it goes. Used as a library, the package calls none of it and changes no process setting.

Environment variables are read here, once and one way (`flag`).
"""

from __future__ import annotations

import os

from deba_pipeline.core.errors import DebaError

# oneDNN, PyTorch's CPU kernels, keeps 1,024 compiled primitives by default; a step-time table's
# sizes together need more (test_efficientnet's 17 ladder sizes evicted each other, and each
# first step's recompile, 23-31 ms, was counted as that size's epoch start). oneDNN reads it at
# its first primitive, so it is set before torch computes anything; a user's own value wins.
ENVIRONMENT = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16384"}

_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def flag(name: str) -> bool:
    """An on/off environment variable: 1/true/yes/on, or unset/empty/0/false/no/off."""
    value = os.environ.get(name, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise DebaError(
        f"the environment variable {name}={os.environ[name]!r} is neither on nor "
        f"off: set it to 1 (on) or 0 (off), or unset it."
    )


def threads_per_run(cpus_per_run: float) -> int:
    """The torch threads of a run: `execution.cpus_per_run` rounded down, at least one. Part of
    the run's identity, as CPU results depend on it (one seed read 97.49% with 2 threads and
    97.21% with 1)."""
    return max(1, int(cpus_per_run))


def prepare(threads: int | None, level: int | None = None) -> None:
    """Set up this process before torch computes: the environment, then (where `threads` is
    given, as it is wherever a run or a table computes) torch's threads and denormals, then the
    package's log lines at `level`, where given. The CLI calls it first with no threads, so a
    command that trains nothing imports no torch."""
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if threads is not None:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        # late in training, denormal weights halve a CPU step: every process flushes them alike
        torch.set_flush_denormal(True)
    if level is not None:
        from deba_pipeline.execution import console

        console.configure(level)
