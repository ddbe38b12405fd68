"""The DVC pipeline end to end on the micro preset, and the presets' run counts."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from deba_pipeline.config import Params, load_params
from deba_pipeline.stages.plan import count_runs

ROOT = Path(__file__).resolve().parents[1]


def test_paper_preset_counts_the_runs_of_spec_section_3():
    cfg = load_params(ROOT / "pipelines" / "paper.yaml")
    assert len(cfg.study.archs) == 6 and list(cfg.study.datasets) == ["cifar10", "cifar100"]
    assert cfg.train.epochs == 100 and cfg.deba.cooldown == 10 and cfg.deba.window == 15
    counts = count_runs(cfg)
    assert counts["profile"] == 6 * 2 * 3                  # profile seeds 2, 42, 199
    assert counts["train"] == 6 * 2 * 5 * 2                # fixed and DEBA, five seeds
    assert counts["ablate"] == 6 * 4 * 5                   # four ablations on CIFAR-10
    assert counts["train_reused_from_profile"] == 6 * 2 * 3
    assert counts["trained"] == 36 + 120 - 36 + 120


def test_validate_command_on_every_preset():
    out = subprocess.run(["deba", "validate", "paper", "micro", "quick"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "paper.yaml: valid. 36 profile runs, 120 train records" in out
    assert out.count("valid.") == 3


def test_dvc_repro_on_the_micro_preset(micro_study):
    workspace, first = micro_study
    run = lambda *cmd: subprocess.run(cmd, cwd=workspace, capture_output=True, text=True)  # noqa
    assert first.returncode == 0, first.stdout + first.stderr
    reports = workspace / "reports"
    for name in ("table1", "table2", "table3", "table4"):
        assert (reports / "tables" / f"{name}.md").read_text().startswith("| Architecture")
        assert (reports / "tables" / f"{name}.csv").stat().st_size > 0
    figures = sorted(p.name for p in (reports / "figures").glob("*.png"))
    assert figures == ["batch_size_trajectories.png", "figure1_time_per_epoch.png",
                       "figure2_grad_variance_digits.png", "signal_trajectories.png"]
    report = (reports / "REPORT.md").read_text()
    assert "from 7 run records" in report and "## Table 4" in report
    metrics = json.loads((reports / "metrics.json").read_text())
    assert set(metrics["ablations"]) == {"baseline", "universal", "cooldown2", "cooldown5",
                                         "full_history"}
    stability = json.loads((workspace / "results" / "stability" / "test_resnet.json").read_text())
    assert set(stability["digits"]) >= {"S", "mu_S", "sigma_S", "class", "prediction"}
    # the fixed baseline was taken from the profile run, not trained twice
    fixed = json.loads((workspace / "runs/train/test_resnet/digits/fixed-baseline-seed2.json").read_text())
    profile = json.loads((workspace / "runs/profile/test_resnet/digits/fixed-profile-seed2.json").read_text())
    assert fixed["epochs"] == profile["epochs"] and fixed["variant"] == "baseline"

    second = run("dvc", "repro")
    assert second.returncode == 0 and "Data and pipelines are up to date" in second.stdout
    shown = run("dvc", "metrics", "show")
    assert shown.returncode == 0 and "reports/metrics.json" in shown.stdout


def test_preset_writes_the_complete_params_and_guards_uncommitted_edits(tmp_path, monkeypatch,
                                                                        capsys):
    from deba_pipeline.cli import main
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    assert main(["preset", "micro"]) == 0
    assert "params.yaml now holds preset micro (valid. 1 profile runs" in capsys.readouterr().out
    written = OmegaConf.load("params.yaml")
    assert written == OmegaConf.structured(load_params("pipelines/micro.yaml"))  # complete
    assert written.deba.cooldown == 1 and written.train.lr == 0.01  # preset, then default
    assert Path("params.yaml").read_text().startswith("# The study `dvc repro` runs. Written by "
                                                      "`deba preset micro`")
    # an edit git does not hold is never overwritten silently
    Path("params.yaml").write_text(Path("params.yaml").read_text() + "# my note\n")
    assert main(["preset", "quick"]) == 2
    assert ("params.yaml has changes git does not hold, and `deba preset quick` would overwrite "
            "them: commit them, or rerun with --force") in capsys.readouterr().err
    assert Path("params.yaml").read_text().endswith("# my note\n")
    assert main(["preset", "quick", "--force"]) == 0
    assert "the previous file is params.yaml.bak" in capsys.readouterr().out
    assert Path("params.yaml.bak").read_text().endswith("# my note\n")
    assert OmegaConf.load("params.yaml").study.name == "quick"
    # a committed file may be replaced: git holds it
    subprocess.run(["git", "add", "params.yaml"], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "p"],
                   check=True)
    assert main(["preset", "micro"]) == 0
    assert main(["preset", "imagenet"]) == 2
    assert "unknown preset 'imagenet': choose one of micro, paper, quick" in capsys.readouterr().err


def test_preset_diff_shows_only_what_changes(tmp_path, monkeypatch, capsys):
    from deba_pipeline.cli import main
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    monkeypatch.chdir(tmp_path)
    assert main(["preset", "--diff", "micro"]) == 0  # no params.yaml yet: against the defaults
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "preset micro against the defaults:"
    assert "  deba.cooldown: 10 → 1" in out and "  train.epochs: 100 → 5" in out
    assert not any(line.startswith("  train.lr") for line in out)
    assert not Path("params.yaml").exists()  # --diff writes nothing
    assert main(["preset", "micro"]) == 0 and main(["preset", "--diff", "micro"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "preset micro changes nothing in params.yaml."


@pytest.mark.parametrize("name", ["micro", "quick", "paper"])
def test_presets_are_overlays_of_only_what_differs(name):
    overlay = OmegaConf.to_container(OmegaConf.load(ROOT / "pipelines" / f"{name}.yaml"))
    defaults = OmegaConf.to_container(OmegaConf.structured(Params))
    for group, values in overlay.items():
        for key, value in values.items():
            assert value != defaults[group][key], f"{name}: {group}.{key} repeats the default"
    lines = [line for line in (ROOT / "pipelines" / f"{name}.yaml").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 20


def test_wandb_group_is_the_dvc_experiment_when_one_runs(monkeypatch):
    from deba_pipeline.stages.runs import experiment_name
    cfg = load_params(ROOT / "pipelines" / "micro.yaml")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert experiment_name(cfg) == "micro"
    monkeypatch.setenv("DVC_EXP_NAME", "beige-seal")
    assert experiment_name(cfg) == "beige-seal"
