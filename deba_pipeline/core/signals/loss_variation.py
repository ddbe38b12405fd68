from deba_pipeline.core.base import EPS, Signal


class LossVariation(Signal):
    """ΔL_t = |L_t − L_{t−1}| / (|L_{t−1}| + ε) (paper eq. 3); undefined at epoch 1."""

    name = "loss_variation"

    def compute(self, obs):
        previous = self.state.get("previous")
        self.state["previous"] = obs.loss
        if previous is None:
            return None
        return abs(obs.loss - previous) / (abs(previous) + EPS)
