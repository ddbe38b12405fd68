"""The house's layers (pyproject.toml's import-linter contracts): each layer imports only from
those below it, and no package's modules import each other in a circle."""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["lint-imports", "--no-cache"],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(project)},
    )


def test_the_layer_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def lint_with_import(tmp_path, module: str) -> subprocess.CompletedProcess:
    """`lint-imports` on a copy of the package where `module` (a path under deba_pipeline/)
    also imports the engine's loop."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "pyproject.toml", project)
    shutil.copytree(
        ROOT / "deba_pipeline",
        project / "deba_pipeline",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    edited = project / "deba_pipeline" / module
    edited.write_text(edited.read_text() + "\nfrom deba_pipeline.engine import loop\n")
    return lint_imports(project)


def test_an_upward_import_breaks_the_layers(tmp_path):
    result = lint_with_import(tmp_path, "core/scheduler.py")
    assert result.returncode == 1
    assert "deba_pipeline.core.scheduler -> deba_pipeline.engine.loop" in result.stdout


def test_a_circle_inside_a_layer_is_refused(tmp_path):
    result = lint_with_import(tmp_path, "engine/ddp.py")
    assert result.returncode == 1
    assert "no import circles between the modules of any package BROKEN" in result.stdout


PACKAGE_AND_TOOLS = ("deba_pipeline", "plugins", "pipelines", "benchmarks")
LONG_BY_NATURE = {"deba_pipeline/cli/parser.py:build_parser"}  # one argparse call a flag


def test_every_module_stays_under_300_lines_and_every_function_under_60():
    import ast

    long_modules, long_functions = [], []
    for folder in PACKAGE_AND_TOOLS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = path.read_text()
            where = path.relative_to(ROOT).as_posix()
            if len(source.splitlines()) > 300:
                long_modules.append(where)
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = f"{where}:{node.name}"
                    if node.end_lineno - node.lineno + 1 > 60 and name not in LONG_BY_NATURE:
                        long_functions.append(name)
    assert long_modules == [], "split these modules along their jobs"
    assert long_functions == [], "split these functions"
