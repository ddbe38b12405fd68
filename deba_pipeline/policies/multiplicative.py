"""The paper's update (§3.4): grow by ⌊α_grow·B⌋, roll back by ⌊α_roll·B⌋, clamped to bounds."""
import math
from fractions import Fraction

from ..base import Policy


class Multiplicative(Policy):
    name = "multiplicative"

    def update(self, decision, batch_size):
        if decision == "increase":
            return min(self.max_batch, floor_times(self.growth, batch_size))
        if decision == "rollback":
            return max(self.min_batch, floor_times(self.rollback, batch_size))
        return batch_size


def floor_times(factor: float, batch_size: int) -> int:
    """⌊factor·batch_size⌋ computed exactly in decimal."""
    # Exact decimal product: 0.8 * 35 must floor to 28, not to 27 through binary rounding.
    return math.floor(Fraction(repr(factor)) * batch_size)
