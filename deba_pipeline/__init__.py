"""deba-pipeline: DEBA adaptive batch scheduling, its plugins, and the study around it.

The names below import on first use (PEP 562), so `deba --help` and the commands that train
nothing do not pay for torch."""

from importlib import import_module

from deba_pipeline.core.errors import ConfigError, DebaError, PluginError
from deba_pipeline.core.hookspecs import hookimpl

__version__ = "0.1.0"
_LAZY = {
    "DECISIONS": ".core.base",
    "Dataset": ".core.base",
    "Observation": ".core.base",
    "Policy": ".core.base",
    "Rule": ".core.base",
    "Signal": ".core.base",
    "DEBAScheduler": ".core.scheduler",
    "StepRecord": ".core.scheduler",
}
__all__ = [
    "DEBAScheduler",
    "StepRecord",
    "Signal",
    "Rule",
    "Policy",
    "Observation",
    "Dataset",
    "DECISIONS",
    "hookimpl",
    "DebaError",
    "ConfigError",
    "PluginError",
    "__version__",
]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'deba_pipeline' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
