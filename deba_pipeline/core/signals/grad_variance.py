from deba_pipeline.core.base import Signal


class GradVariance(Signal):
    """σ²_t: population variance of the components of ∇_t (paper eq. 1)."""

    name = "grad_variance"

    def compute(self, obs):
        return obs.grad_variance
