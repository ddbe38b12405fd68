"""Built-in decision rules, registered through the `deba` entry point like any plugin."""

from deba_pipeline.core.hookspecs import hookimpl
from deba_pipeline.core.rules.deba import DebaRule
from deba_pipeline.core.rules.gns import NoiseScaleRule, StepSchedule


@hookimpl
def register_rules(register):
    register(DebaRule)
    register(NoiseScaleRule)
    register(StepSchedule)
