import pytest

from deba_pipeline import plugins


@pytest.fixture
def register_plugin():
    """Register plugin objects (modules or classes with hookimpls) for one test only."""
    names = []

    def register(obj, name):
        plugins.registry("signal")  # make sure installed plugins are loaded first
        plugins.pm.register(obj, name=name)
        names.append(name)

    yield register
    for name in names:
        plugins.pm.unregister(name=name)
