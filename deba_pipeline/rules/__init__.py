"""Built-in decision rules, registered through the `deba` entry point like any plugin."""
from ..hookspecs import hookimpl
from .deba import DebaRule
from .gns import NoiseScaleRule, StepSchedule


@hookimpl
def register_rules(register):
    register(DebaRule)
    register(NoiseScaleRule)
    register(StepSchedule)
