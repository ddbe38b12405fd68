"""The paper's update (§3.4): grow by ⌊α_grow·B⌋, roll back by ⌊α_roll·B⌋, clamped to bounds;
with the option `lr_scaling`, the learning rate follows the batch (docs/peers.md)."""

import math
import statistics
from fractions import Fraction

from deba_pipeline.core.base import Policy
from deba_pipeline.core.errors import ConfigError

LR_SCALINGS = ("none", "linear", "sqrt", "adascale")


class Multiplicative(Policy):
    name = "multiplicative"

    def __init__(self, growth, rollback, min_batch, max_batch, *, lr_scaling="none"):
        super().__init__(growth, rollback, min_batch, max_batch)
        if lr_scaling not in LR_SCALINGS:
            raise ConfigError(
                f"policy 'multiplicative': `lr_scaling` = {lr_scaling!r} is not "
                f"allowed: it must be one of {', '.join(LR_SCALINGS)}."
            )
        self.lr_scaling = lr_scaling
        self.requires = ("gradient_noise_scale",) if lr_scaling == "adascale" else ()

    def update(self, decision, batch_size):
        if decision == "increase":
            return min(self.max_batch, floor_times(self.growth, batch_size))
        if decision == "rollback":
            return max(self.min_batch, floor_times(self.rollback, batch_size))
        return batch_size

    def lr_scale(self, batch_size, initial_batch, windows):
        """η/η₀: none 1; linear B/B₀ (Goyal et al. 2017); sqrt √(B/B₀) (Krizhevsky 2014);
        adascale r = (1 + N/B₀)/(1 + N/B) with N the median B_simple of the window (Johnson et
        al. 2020), 1 while N is undefined."""
        ratio = batch_size / initial_batch
        if self.lr_scaling == "linear":
            return ratio
        if self.lr_scaling == "sqrt":
            return math.sqrt(ratio)
        if self.lr_scaling == "adascale" and windows.get("gradient_noise_scale"):
            return adascale_gain(
                statistics.median(windows["gradient_noise_scale"]), batch_size, initial_batch
            )
        return 1.0


def adascale_gain(noise: float, batch_size: int, initial_batch: int) -> float:
    """r = (1 + N/B₀)/(1 + N/B): between 1 and B/B₀ for N ≥ 0 and B ≥ B₀ (docs/peers.md)."""
    return (1 + noise / initial_batch) / (1 + noise / batch_size)


def floor_times(factor: float, batch_size: int) -> int:
    """⌊factor·batch_size⌋ computed exactly in decimal."""
    # Exact decimal product: 0.8 * 35 must floor to 28, not to 27 through binary rounding.
    return math.floor(Fraction(repr(factor)) * batch_size)
