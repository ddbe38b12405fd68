"""deba-pipeline: DEBA adaptive batch scheduling, its plugins, and the study around it."""
from .base import DECISIONS, Dataset, Observation, Policy, Rule, Signal
from .errors import ConfigError, DebaError, PluginError
from .hookspecs import hookimpl
from .scheduler import DEBAScheduler, StepRecord

__version__ = "0.1.0"
__all__ = ["DEBAScheduler", "StepRecord", "Signal", "Rule", "Policy", "Observation", "Dataset",
           "DECISIONS",
           "hookimpl", "DebaError", "ConfigError", "PluginError", "__version__"]
