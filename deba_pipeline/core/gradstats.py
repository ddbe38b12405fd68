"""Variance and norm of a flattened gradient without ever flattening it.

One pass per tensor, in chunks cast to float64, combined with Chan's parallel formula, so the
extra memory is one chunk (CHUNK elements), never a copy of size P. The result stays on the
device as 0-d tensors; the caller decides when to sync.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CHUNK = 1 << 16  # elements cast to float64 at a time: 512 KiB of scratch, whatever P is


@dataclass
class GradStats:
    count: int  # number of gradient components P
    mean: torch.Tensor  # float64, 0-d
    m2: torch.Tensor  # float64, 0-d: sum of squared deviations from the mean
    sumsq: torch.Tensor  # float64, 0-d: squared L2 norm

    @property
    def variance(self) -> torch.Tensor:
        """Population variance (1/P normalisation), docs/method.md σ²."""
        return self.m2 / self.count

    @property
    def norm(self) -> torch.Tensor:
        return self.sumsq.sqrt()

    def merged(self, other: GradStats) -> GradStats:
        """The statistics of both parts' concatenation (Chan's parallel formula)."""
        total = self.count + other.count
        delta = other.mean - self.mean
        return GradStats(
            total,
            self.mean + delta * (other.count / total),
            self.m2 + other.m2 + delta * delta * (self.count * other.count / total),
            self.sumsq + other.sumsq,
        )


def grad_stats(grads: Iterable[torch.Tensor | None]) -> GradStats:
    """σ² and ‖∇‖ of the concatenation of `grads`; None entries (frozen parameters) are skipped."""
    import torch  # here: loading the built-in signals does not import torch

    stats: GradStats | None = None
    for grad in grads:
        if grad is None:
            continue
        flat = grad.detach().reshape(-1)
        for start in range(0, flat.numel(), CHUNK):
            chunk = flat[start : start + CHUNK].to(torch.float64, copy=True)  # the only scratch
            mean, sumsq = chunk.mean(), chunk.dot(chunk)
            part = GradStats(chunk.numel(), mean, chunk.sub_(mean).square_().sum(), sumsq)
            stats = part if stats is None else stats.merged(part)
    if stats is None:
        raise ValueError("grads holds no tensor: pass the .grad of at least one parameter")
    return stats
