from deba_pipeline.core.base import EPS, Signal


class GradNormVariation(Signal):
    """Δ‖∇‖_t = |‖∇_t‖ − ‖∇_{t−1}‖| / (‖∇_{t−1}‖ + ε) (paper eq. 2); undefined at epoch 1."""

    name = "grad_norm_variation"

    def compute(self, obs):
        previous = self.state.get("previous")
        self.state["previous"] = obs.grad_norm
        if previous is None:
            return None
        return abs(obs.grad_norm - previous) / (previous + EPS)
