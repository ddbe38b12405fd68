"""The house's layers (pyproject.toml's import-linter contracts): each layer imports only from
those below it, and no package's modules import each other in a circle."""
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["lint-imports", "--no-cache"], cwd=project, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(project)})


def test_the_layer_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def _copy(tmp_path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "pyproject.toml", project)
    shutil.copytree(ROOT / "deba_pipeline", project / "deba_pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return project


def test_an_upward_import_breaks_the_layers(tmp_path):
    project = _copy(tmp_path)
    scheduler = project / "deba_pipeline" / "core" / "scheduler.py"
    scheduler.write_text(scheduler.read_text() + "\nfrom deba_pipeline.engine import loop\n")
    result = lint_imports(project)
    assert result.returncode == 1
    assert "deba_pipeline.core.scheduler -> deba_pipeline.engine.loop" in result.stdout


def test_a_circle_inside_a_layer_is_refused(tmp_path):
    project = _copy(tmp_path)
    ddp = project / "deba_pipeline" / "engine" / "ddp.py"
    ddp.write_text(ddp.read_text() + "\nfrom deba_pipeline.engine import loop\n")
    result = lint_imports(project)
    assert result.returncode == 1
    assert "no import circles between the modules of any package BROKEN" in result.stdout
