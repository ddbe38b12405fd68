"""Built-in signals (SPEC §1), registered through the `deba` entry point like any plugin."""
from ..hookspecs import hookimpl
from .grad_norm_variation import GradNormVariation
from .grad_variance import GradVariance
from .gradient_noise_scale import GradientNoiseScale
from .loss_variation import LossVariation


@hookimpl
def register_signals(register):
    register(GradVariance)
    register(GradNormVariation)
    register(LossVariation)
    register(GradientNoiseScale)
