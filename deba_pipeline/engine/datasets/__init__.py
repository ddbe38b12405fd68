"""Built-in datasets, registered through the `deba` entry point like any plugin. Image folders
(`data.folders`) are read by folders.load_folder under the names the user gives them."""

from deba_pipeline.core.hookspecs import hookimpl
from deba_pipeline.engine.datasets.builtin import Cifar10, Cifar100, Digits, Synthetic


@hookimpl
def register_datasets(register):
    register(Digits)
    register(Synthetic)
    register(Cifar10)
    register(Cifar100)
