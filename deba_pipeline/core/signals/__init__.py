"""Built-in signals (docs/method.md), registered through the `deba` entry point like any plugin."""

from deba_pipeline.core.hookspecs import hookimpl
from deba_pipeline.core.signals.grad_norm_variation import GradNormVariation
from deba_pipeline.core.signals.grad_variance import GradVariance
from deba_pipeline.core.signals.gradient_noise_scale import GradientNoiseScale
from deba_pipeline.core.signals.loss_variation import LossVariation


@hookimpl
def register_signals(register):
    register(GradVariance)
    register(GradNormVariation)
    register(LossVariation)
    register(GradientNoiseScale)
