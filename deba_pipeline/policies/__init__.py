"""Built-in batch-update policies, registered through the `deba` entry point like any plugin."""
from ..hookspecs import hookimpl
from .multiplicative import Multiplicative


@hookimpl
def register_policies(register):
    register(Multiplicative)
