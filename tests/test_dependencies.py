"""The files that decide a run's result (the run key) and the files DVC lists as the training
stages' dependencies are one set: editing any of them makes `dvc status` name those stages."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deba_pipeline.engine.spec import PLUGIN_DIR, PROJECT, TRAINING_CODE, training_files

from helpers import tiny_spec

ROOT = Path(__file__).resolve().parents[1]
TRAINING_STAGES = ("profile", "train", "ablate")


def stage_deps() -> dict:
    return {
        name: stage["deps"]
        for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()
    }


def test_every_training_stage_lists_the_run_key_code():
    deps = stage_deps()
    for name in TRAINING_STAGES:
        assert deps[name][: len(TRAINING_CODE)] == list(TRAINING_CODE), name
        code = [d for d in deps[name] if d.startswith("deba_pipeline/")]
        extra = [d for d in code if d not in TRAINING_CODE]
        assert all(
            d.startswith(
                (
                    "deba_pipeline/stages/",
                    "deba_pipeline/report/analysis.py",
                    "deba_pipeline/execution/study.py",
                )
            )
            for d in extra
        ), f"{name} reads code the run key does not hash: {extra}"
    # a plugin file may register a model or a dataset, so every run reads plugins/
    assert all(PLUGIN_DIR in deps[name] for name in TRAINING_STAGES)


def test_run_key_hashes_the_plugin_files_named_in_params(tmp_path):
    plugin = tmp_path / "grad_cosine.py"
    shutil.copy(ROOT / "plugins" / "grad_cosine.py", plugin)
    spec = tiny_spec(deba={"plugins": [str(plugin)]})
    before = spec.key()
    assert before != tiny_spec().key()
    plugin.write_text(plugin.read_text() + "# a comment decides nothing\n")
    from deba_pipeline.engine import spec as spec_module

    spec_module._digest.cache_clear()
    assert spec.key() == before
    plugin.write_text(plugin.read_text() + "EDITED = True\n")
    spec_module._digest.cache_clear()
    assert spec.key() != before


def _stale(workspace) -> set:
    out = subprocess.run(
        ["dvc", "status", "--json"], cwd=workspace, capture_output=True, text=True, check=True
    ).stdout
    return {name.split("@")[0] for name in json.loads(out)}


def _expected(relative: str) -> set:
    """The stages whose deps hold `relative` (a file, or a folder above it)."""
    return {
        name
        for name, deps in stage_deps().items()
        if any(relative == d or relative.startswith(d.rstrip("/") + "/") for d in deps)
    }


@pytest.mark.slow
def test_editing_any_run_key_file_makes_dvc_status_name_the_training_stages(micro_study, tmp_path):
    source, repro = micro_study
    assert repro.returncode == 0, repro.stderr
    workspace = tmp_path / "ws"
    shutil.copytree(source, workspace, symlinks=True)
    assert _stale(workspace) == set()
    # one file per entry of TRAINING_CODE: DVC treats every file of a folder dependency alike
    edited = sorted(
        {
            entry: str(p.relative_to(PROJECT))
            for p in training_files()
            for entry in TRAINING_CODE
            if str(p.relative_to(PROJECT)).startswith(entry)
        }.values()
    )
    assert len(edited) == len(TRAINING_CODE)
    edited += [f"{PLUGIN_DIR}/grad_cosine.py", "deba_pipeline/report/tables.py"]
    for relative in edited:
        path = workspace / relative
        original = path.read_text()
        path.write_text(original + "# a comment is enough\n")
        stale = _stale(workspace)
        path.write_text(original)
        assert stale == _expected(relative), relative
        if relative in edited[:-2]:
            assert set(TRAINING_STAGES) <= stale, relative
    for relative in ("deba_pipeline/engine/tracking.py", "deba_pipeline/timing/steptime.py"):
        path = workspace / relative  # W&B's module and the step-time estimator decide nothing
        original = path.read_text()
        path.write_text(original + "# a comment is enough\n")
        stale = _stale(workspace)
        path.write_text(original)
        assert not stale & set(TRAINING_STAGES), relative
    assert _expected("deba_pipeline/timing/steptime.py") == {"steptime", "predict"}
    assert _expected(f"{PLUGIN_DIR}/grad_cosine.py") == {
        "profile",
        "train",
        "ablate",
        "steptime",
        "predict",
    }
    assert _expected("deba_pipeline/report/tables.py") == {"aggregate"}
    assert _stale(workspace) == set()


def test_every_package_the_code_imports_is_declared_in_pyproject():
    import ast
    import re
    import sys
    from importlib.metadata import packages_distributions, requires

    # the installed package's requirements: pyproject.toml's, extras included
    declared = {
        re.split(r"[<>=\[ ;(]", r, maxsplit=1)[0].lower() for r in requires("deba-pipeline")
    }
    imported = set()
    for path in (ROOT / "deba_pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"deba_pipeline"}
    owners = packages_distributions()  # import name -> the distributions that provide it
    undeclared = {
        name: owners.get(name)
        for name in third_party
        if not {d.lower() for d in owners.get(name, [])} & declared
    }
    assert undeclared == {}


def test_deba_run_reads_the_thresholds_the_calibrate_stage_writes():
    from deba_pipeline.cli.commands import THRESHOLDS_DEFAULT

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages["calibrate"]["cmd"].endswith(f"--out {THRESHOLDS_DEFAULT}")
