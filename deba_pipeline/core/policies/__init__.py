"""Built-in batch-update policies, registered through the `deba` entry point like any plugin."""

from deba_pipeline.core.hookspecs import hookimpl
from deba_pipeline.core.policies.multiplicative import Multiplicative


@hookimpl
def register_policies(register):
    register(Multiplicative)
