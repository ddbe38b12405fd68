"""Rules beside DEBA's (docs/peers.md): the gradient noise scale's and a step schedule's."""

import statistics

from deba_pipeline.core.base import Rule
from deba_pipeline.core.errors import ConfigError


class NoiseScaleRule(Rule):
    """With N the median of B_simple over the window: increase when N ≥ B·growth, roll back
    when N ≤ B·rollback, else hold; hold while N is undefined."""

    name = "gns"
    requires = ("gradient_noise_scale",)

    def decide(self, signals, windows):
        window = windows["gradient_noise_scale"]
        if not window:
            return "hold"
        noise = statistics.median(window)
        if noise >= self.batch_size * self.growth:
            return "increase"
        if noise <= self.batch_size * self.rollback:
            return "rollback"
        return "hold"


class StepSchedule(Rule):
    """Smith et al. 2018, "Don't decay the learning rate, increase the batch size": increase at
    the end of each epoch listed in `at` (so the next epoch trains at the larger batch), hold
    otherwise. Meant for cooldown 0. Epoch 1 always holds (the scheduler's first epoch)."""

    name = "step_schedule"

    def __init__(self, theta_stab, theta_conf, *, at=()):
        super().__init__(theta_stab, theta_conf)
        if not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in at):
            raise ConfigError(
                f"rule 'step_schedule': `at` = {list(at)!r} is not allowed: it "
                f"must be a list of epochs (integers >= 1), e.g. [30, 60, 80]."
            )
        self.at = frozenset(at)

    def decide(self, signals, windows):
        return "increase" if self.epoch in self.at else "hold"
