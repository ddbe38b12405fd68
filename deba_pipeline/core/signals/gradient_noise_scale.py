"""The simple gradient noise scale B_simple = tr(Σ)/|G|² (McCandlish et al. 2018, App. A;
docs/peers.md), from the squared norms of an epoch's step gradients and their running sum,
corrected for an epoch drawn without replacement from a finite training set (the
finite-population correction).

The parameters move during the epoch, so the epoch's mean gradient averages over a short
trajectory rather than one point: the same approximation as gpt-neox's estimate from
consecutive steps. It asks the loop for two per-step accumulations (ACCUMULATORS in base.py),
kept on the device with one host sync an epoch.
"""

from deba_pipeline.core.base import Signal
from deba_pipeline.core.gradstats import grad_stats


def noise_parts(
    mean_sq_norm: float, mean_grad_sq: float, batch: int, steps: int, population: int | None = None
) -> tuple | None:
    """(|G|², tr(Σ)): the squared norm of the true gradient and the per-sample gradient
    variance, from s̄ (the mean of ‖gₜ‖²), ‖Ḡ‖² (the squared norm of the mean gradient), the
    batch B, the steps T (B_big = T·B) and the N samples the epoch drew them from without
    replacement (None: independent draws, N → ∞); None where T < 2 (docs/peers.md).

    Without replacement a batch of b samples has E‖g_b‖² = |G|² + (1/b − 1/N)·tr(Σ), so an epoch
    that reads most of the data has a mean gradient close to the full one; the formula for
    independent draws then overstates B_simple (1.6× on digits)."""
    if steps < 2:
        return None
    big = steps * batch
    inverse_n = 0.0 if population is None else 1 / population
    trace = (mean_sq_norm - mean_grad_sq) / (1 / batch - 1 / big)  # tr(Σ)
    return mean_grad_sq - trace * (1 / big - inverse_n), trace  # |G|², tr(Σ)


def noise_scale(
    mean_sq_norm: float, mean_grad_sq: float, batch: int, steps: int, population: int | None = None
) -> float | None:
    """B_simple = tr(Σ)/|G|² (`noise_parts`); None where T < 2 or |G|² ≤ 0."""
    parts = noise_parts(mean_sq_norm, mean_grad_sq, batch, steps, population)
    if parts is None or parts[0] <= 0:
        return None
    return parts[1] / parts[0]


class GradientNoiseScale(Signal):
    """B_simple of the epoch, in samples."""

    name = "gradient_noise_scale"
    accumulate = ("grad_sq_norm", "grad_sum")

    def compute(self, obs):
        steps, acc = obs.steps, obs.accumulated
        if not steps or steps < 2 or "grad_sum" not in acc:
            return None
        mean_grad_sq = float(grad_stats(acc["grad_sum"]).sumsq) / steps**2  # ‖Σgₜ/T‖²
        return noise_scale(
            acc["grad_sq_norm"] / steps, mean_grad_sq, obs.batch_size, steps, obs.dataset_size
        )
