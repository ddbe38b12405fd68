"""The simple gradient noise scale B_simple = tr(Σ)/|G|² (McCandlish et al. 2018, App. A;
SPEC §6), from the squared norms of an epoch's step gradients and their running sum.

The parameters move during the epoch, so the epoch's mean gradient averages over a short
trajectory rather than one point: the same approximation as gpt-neox's estimate from
consecutive steps. It asks the loop for two per-step accumulations (ACCUMULATORS in base.py),
kept on the device with one host sync an epoch.
"""
from typing import Optional

from ..base import Signal
from ..gradstats import grad_stats


def noise_scale(mean_sq_norm: float, mean_grad_sq: float, batch: int,
                steps: int) -> Optional[float]:
    """B_simple from s̄ (the mean of ‖gₜ‖²), ‖Ḡ‖² (the squared norm of the mean gradient), the
    batch B and the steps T (B_big = T·B); None where T < 2 or |G|² ≤ 0 (SPEC §6)."""
    if steps < 2:
        return None
    big = steps * batch
    true_sq = (big * mean_grad_sq - batch * mean_sq_norm) / (big - batch)  # |G|²
    if true_sq <= 0:
        return None
    trace = (mean_sq_norm - mean_grad_sq) / (1 / batch - 1 / big)        # tr(Σ)
    return trace / true_sq


class GradientNoiseScale(Signal):
    """B_simple of the epoch, in samples."""

    name = "gradient_noise_scale"
    accumulate = ("grad_sq_norm", "grad_sum")

    def compute(self, obs):
        steps, acc = obs.steps, obs.accumulated
        if not steps or steps < 2 or "grad_sum" not in acc:
            return None
        mean_grad_sq = float(grad_stats(acc["grad_sum"]).sumsq) / steps ** 2  # ‖Σgₜ/T‖²
        return noise_scale(acc["grad_sq_norm"] / steps, mean_grad_sq, obs.batch_size, steps)
