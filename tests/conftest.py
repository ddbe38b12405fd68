import os
import subprocess

import pytest

from deba_pipeline.core import plugins

from helpers import copy_project, new_process


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """The fast tier, `pytest -m "not slow"`, runs on two workers (pytest-xdist) unless -n says
    otherwise: about 80 s on 2 cores, against 110-190 s one test after another on a shared VM.
    The whole suite (`pytest`, CI) stays serial: its end-to-end tests time and load the machine."""
    if (
        config.option.markexpr == "not slow"
        and config.pluginmanager.hasplugin("xdist")
        and config.getoption("numprocesses", None) is None
        and "PYTEST_XDIST_WORKER" not in os.environ
    ):
        config.option.numprocesses = 2
        config.option.dist = "worksteal"  # an idle worker takes queued tests: no slow tail


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


@pytest.fixture(autouse=True)
def _plugin_files_do_not_outlive_a_test():
    yield
    new_process()


@pytest.fixture(scope="session")
def micro_study(tmp_path_factory):
    """One `dvc repro` of the micro preset in a fresh copy: (workspace, completed process)."""
    workspace = copy_project(tmp_path_factory.mktemp("micro"))
    result = subprocess.run(["dvc", "repro"], cwd=workspace, capture_output=True, text=True)
    return workspace, result


# a CPU burner that ends by itself should a test not stop it
BURNER = "import time\nend = time.monotonic() + 900\nwhile time.monotonic() < end: pass\n"


@pytest.fixture(scope="session")
def busy_micro_study(tmp_path_factory):
    """The micro preset's `dvc repro` in a fresh copy beside one CPU-burning process:
    (workspace, completed process)."""
    import sys

    workspace = copy_project(tmp_path_factory.mktemp("busy"))
    burner = subprocess.Popen([sys.executable, "-c", BURNER])
    try:
        result = subprocess.run(["dvc", "repro"], cwd=workspace, capture_output=True, text=True)
    finally:
        burner.kill()
        burner.wait()
    return workspace, result


@pytest.fixture(autouse=True, scope="session")
def _the_console_as_deba_sets_it_up():
    """The package's lines go where `deba` sends them, whichever test runs first: a test that
    reads a warning from stderr must not depend on an earlier test having called `main`."""
    from deba_pipeline.execution import console

    console.configure()
