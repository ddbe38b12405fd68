import os
import subprocess

import pytest

from deba_pipeline.core import plugins

from helpers import copy_project, new_process

# `pytest -n W` (pytest-xdist) runs W workers side by side: each takes its share of the cores, as
# a stage on a busy machine would; a thread waiting on a core another worker holds slows a step
# several-fold.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
SHARE = max(1, len(os.sched_getaffinity(0)) // WORKERS)
if WORKERS > 1:
    import torch
    torch.set_num_threads(SHARE)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """The fast tier, `pytest -m "not slow"`, runs on two workers (pytest-xdist) unless -n says
    otherwise: about 80 s on 2 cores, against 110-190 s one test after another on a shared VM.
    The whole suite (`pytest`, CI) stays serial: its end-to-end tests time and load the machine."""
    if config.option.markexpr == "not slow" and config.pluginmanager.hasplugin("xdist") \
            and config.getoption("numprocesses", None) is None \
            and "PYTEST_XDIST_WORKER" not in os.environ:
        config.option.numprocesses = 2


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


@pytest.fixture(autouse=True)
def _an_idle_machine(monkeypatch):
    """A stage samples the machine's use before it trains (0.4 s) and gives its runs the free
    cores. In-process tests see an idle machine, at once: what they assert must not depend on
    whatever else runs beside them (another test worker of `pytest -n 2`, a neighbour of a shared
    VM). What the sample decides is tested in test_busy_machine.py with a stand-in psutil."""
    import psutil

    from deba_pipeline import execution
    monkeypatch.setattr(execution, "BUSY_SAMPLE_S", 0.02)  # cpu_percent below does not wait
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: 0.0)
    if WORKERS > 1:  # `pytest -n W`: each worker's runs take their share of the cores
        monkeypatch.setattr(execution.os, "sched_getaffinity", lambda pid: set(range(SHARE)))


@pytest.fixture(scope="session")
def micro_study(tmp_path_factory):
    """One `dvc repro` of the micro preset in a fresh copy: (workspace, completed process)."""
    workspace = copy_project(tmp_path_factory.mktemp("micro"))
    result = subprocess.run(["dvc", "repro"], cwd=workspace, capture_output=True, text=True)
    return workspace, result
