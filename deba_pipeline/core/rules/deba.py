"""The paper's rule (§3.3, docs/method.md steps 3-5)."""

import statistics

from deba_pipeline.core.base import EPS, Rule


def confidence_score(variance: float, window) -> float:
    """c_t = σ²_t / (median of the window, σ²_t included, + ε) (paper eq. 4)."""
    return variance / (statistics.median(window) + EPS)


class DebaRule(Rule):
    name = "deba"
    requires = ("grad_variance", "grad_norm_variation", "loss_variation")

    def decide(self, signals, windows):
        norm_variation = signals["grad_norm_variation"]
        loss_variation = signals["loss_variation"]
        if norm_variation is None or loss_variation is None:
            return "hold"
        confidence = confidence_score(signals["grad_variance"], windows["grad_variance"])
        if (
            confidence <= self.theta_conf
            and norm_variation < self.theta_stab
            and loss_variation < self.theta_stab
        ):
            return "increase"
        if confidence > self.theta_conf or norm_variation > 3 * self.theta_stab:
            return "rollback"
        return "hold"
