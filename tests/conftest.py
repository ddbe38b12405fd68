import pytest
from omegaconf import OmegaConf

from deba_pipeline.core import plugins


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


def new_process() -> None:
    """Forget what a new `deba` process would not have: plugin files loaded by path, and the
    code digest of the run keys (cached per process)."""
    from deba_pipeline.engine import spec
    for name, _ in plugins.pm.list_name_plugin():
        if name.startswith("file:"):
            plugins.pm.unregister(name=name)
    spec._digest.cache_clear()


@pytest.fixture(autouse=True)
def _plugin_files_do_not_outlive_a_test():
    yield
    new_process()


@pytest.fixture(autouse=True)
def _brief_busy_sampling(monkeypatch):
    """A stage samples the machine's use before it trains (0.4 s); in-process tests sample
    briefly (what the sample decides is tested in test_first_hour.py with a stand-in psutil)."""
    from deba_pipeline import execution
    monkeypatch.setattr(execution, "BUSY_SAMPLE_S", 0.02)


import shutil  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


BRIEF_TIMING = {"repeats": 3, "steps": 1}  # for tests that never read the step-time tables


def copy_project(dest: Path, brief_timing: bool = False) -> Path:
    """The project's tracked files in `dest`, as a fresh clone would have them, switched to the
    micro preset with `deba preset micro`; `brief_timing` measures its step-time table in a few
    seconds instead of about twenty (the records do not depend on it)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    files += [str(p.relative_to(ROOT)) for p in (ROOT / ".dvc").rglob("*")
              if p.is_file() and "tmp" not in p.parts and "cache" not in p.parts]
    for rel in set(files):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    (dest / "dvc.lock").unlink(missing_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["deba", "preset", "micro", "--force"], cwd=dest, check=True,
                   capture_output=True)  # as a user switches presets
    (dest / "params.yaml.bak").unlink(missing_ok=True)
    if brief_timing:
        params = OmegaConf.load(dest / "params.yaml")
        params.timing = OmegaConf.merge(params.timing, BRIEF_TIMING)
        OmegaConf.save(params, dest / "params.yaml")
    return dest


@pytest.fixture(scope="session")
def micro_study(tmp_path_factory):
    """One `dvc repro` of the micro preset in a fresh copy: (workspace, completed process)."""
    workspace = copy_project(tmp_path_factory.mktemp("micro"))
    result = subprocess.run(["dvc", "repro"], cwd=workspace, capture_output=True, text=True)
    return workspace, result
