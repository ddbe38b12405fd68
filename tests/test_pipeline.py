"""The DVC pipeline end to end on the micro preset, and the presets' run counts."""

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from deba_pipeline.config import Params, load_params
from deba_pipeline.execution.preflight import count_runs

ROOT = Path(__file__).resolve().parents[1]


def test_paper_preset_counts_the_runs_of_spec_section_3():
    cfg = load_params(ROOT / "pipelines" / "paper.yaml")
    assert len(cfg.study.archs) == 6
    assert list(cfg.study.datasets) == ["cifar10", "cifar100"]
    assert cfg.train.epochs == 100
    assert cfg.deba.cooldown == 10
    assert cfg.deba.window == 15
    counts = count_runs(cfg)
    assert counts["profile"] == 6 * 2 * 3  # profile seeds 2, 42, 199
    assert counts["train"] == 6 * 2 * 5 * 2  # fixed and DEBA, five seeds
    assert counts["ablate"] == 6 * 4 * 5  # four ablations on CIFAR-10
    assert counts["train_reused_from_profile"] == 0  # fixed baselines trained apart
    assert counts["trained"] == 36 + 120 + 120
    cfg.study.reuse_profile_runs = True
    assert count_runs(cfg)["train_reused_from_profile"] == 6 * 2 * 3
    assert count_runs(cfg)["trained"] == 36 + 120 - 36 + 120


@pytest.mark.slow
def test_validate_command_on_every_preset():
    out = subprocess.run(
        ["deba", "validate", "paper", "micro", "quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (
        "paper.yaml: valid. 36 profile runs, 120 train records (fixed baselines trained "
        "apart from profiling), 120 ablation runs: 276 runs to train"
    ) in out
    assert out.count("valid.") == 3


def _micro(micro_study):
    """The micro study's workspace, after checking its `dvc repro` succeeded."""
    workspace, first = micro_study
    assert first.returncode == 0, first.stdout + first.stderr
    return workspace


@pytest.mark.slow
def test_micro_repro_writes_every_table_and_figure(micro_study):
    reports = _micro(micro_study) / "reports"
    for name in ("table1", "table2", "table3", "table4", "table5"):
        assert (reports / "tables" / f"{name}.md").read_text().startswith("| Architecture")
        assert (reports / "tables" / f"{name}.csv").stat().st_size > 0
    figures = sorted(p.name for p in (reports / "figures").glob("*.png"))
    assert figures == [
        "accuracy_against_time.png",
        "batch_size_trajectories.png",
        "figure1_time_per_epoch.png",
        "figure2_grad_variance_digits.png",
        "signal_trajectories.png",
    ]


@pytest.mark.slow
def test_micro_report_renders_and_names_nothing_a_clone_lacks(micro_study):
    report = (_micro(micro_study) / "reports" / "REPORT.md").read_text()
    assert "from 7 run records" in report
    assert "## Table 4" in report
    assert_markdown_tables_render(report)
    assert "## Glossary" in report
    assert "runs/" not in report


@pytest.mark.slow
def test_micro_metrics_carry_a_headline_per_cell_and_every_ablation(micro_study):
    metrics = json.loads((_micro(micro_study) / "reports" / "metrics.json").read_text())
    assert set(metrics["ablations"]) == {
        "baseline",
        "universal",
        "cooldown2",
        "cooldown5",
        "full_history",
    }
    headline = metrics["per_arch"]["test_resnet/digits"]
    assert set(headline) == {
        "delta_acc",
        "speedup_modelled_pct",
        "speedup_measured_pct",
        "speedup_modelled_table_noise_pct",
        "increases",
        "rollbacks",
        "holds",
        "batch_min",
        "batch_max",
    }
    assert headline["speedup_modelled_pct"] is not None
    # five epochs, four decisions that took effect: the last epoch's changes nothing
    assert headline["increases"] + headline["rollbacks"] + headline["holds"] == 4
    assert metrics["predictions"]["checked"] <= 1


@pytest.mark.slow
def test_micro_step_time_table_covers_every_size_reached_round_robin(micro_study):
    workspace = _micro(micro_study)
    table = json.loads((workspace / "results/steptime/test_resnet.json").read_text())["digits"]
    reached = {
        e["batch_size"]
        for path in (workspace / "runs").rglob("*.json")
        for e in json.loads(path.read_text())["epochs"]
    }
    assert reached <= {int(size) for size in table["step_s"]}
    # the sizes the predict stage timed, then the steptime stage's new ones, each round-robin:
    # every size it holds was timed `repeats` times (more when the machine ran slow), and its
    # rounds are the ones the order names
    order, rounds = table["order"], table["rounds"]
    assert set(order) == {int(size) for size in rounds} == {int(size) for size in table["step_s"]}
    for size, samples in rounds.items():
        assert order.count(int(size)) == len(samples["fastest_s"]) >= table["repeats"]


@pytest.mark.slow
def test_micro_dvc_plots_hold_the_curves_of_every_method(micro_study):
    workspace = _micro(micro_study)
    curves = sorted(p.name for p in (workspace / "reports" / "plots" / "batch_size").glob("*.csv"))
    assert curves == [
        "test_resnet_digits_deba-cooldown2.csv",
        "test_resnet_digits_deba-cooldown5.csv",
        "test_resnet_digits_deba-full_history.csv",
        "test_resnet_digits_deba-universal.csv",
        "test_resnet_digits_deba.csv",
        "test_resnet_digits_fixed.csv",
    ]
    plots = subprocess.run(
        ["dvc", "plots", "show", "--json"], cwd=workspace, capture_output=True, text=True
    )
    assert plots.returncode == 0
    assert "reports/plots/batch_size/test_resnet_digits_deba.csv" in plots.stdout


@pytest.mark.slow
def test_micro_stability_summary_names_the_class_and_prediction(micro_study):
    path = _micro(micro_study) / "results" / "stability" / "test_resnet.json"
    assert set(json.loads(path.read_text())["digits"]) >= {
        "S",
        "mu_S",
        "sigma_S",
        "class",
        "prediction",
    }


@pytest.mark.slow
def test_micro_fixed_baseline_is_trained_apart_from_the_profile_run(micro_study):
    runs = _micro(micro_study) / "runs"
    fixed = json.loads((runs / "train/test_resnet/digits/fixed-baseline-seed2.json").read_text())
    profile = json.loads((runs / "profile/test_resnet/digits/fixed-profile-seed2.json").read_text())
    assert fixed["key"] != profile["key"]
    assert "reused_from" not in fixed
    # the same trajectory, its own time
    assert [e["train_loss"] for e in fixed["epochs"]] == [
        e["train_loss"] for e in profile["epochs"]
    ]


@pytest.mark.slow
def test_micro_second_repro_is_up_to_date(micro_study):
    second = subprocess.run(
        ["dvc", "repro"], cwd=_micro(micro_study), capture_output=True, text=True
    )
    assert second.returncode == 0
    assert "Data and pipelines are up to date" in second.stdout


@pytest.mark.slow
def test_micro_dvc_metrics_show_one_line_per_cell_in_120_columns(micro_study):
    shown = subprocess.run(
        ["dvc", "metrics", "show", "reports/answer.json"],
        cwd=_micro(micro_study),
        capture_output=True,
        text=True,
    )
    lines = shown.stdout.splitlines()
    assert shown.returncode == 0
    assert lines[0].split() == ["Path", "test_resnet", "on", "digits"]
    assert lines[1].startswith("reports/answer.json")
    assert max(map(len, lines)) <= 120


def assert_markdown_tables_render(text):
    """Every table in `text`, parsed as Markdown (CommonMark + tables), has the header's cells
    in every row: a stray | would add a cell."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    rows, tables = [], 0
    for token in tokens:
        if token.type == "table_open":
            tables += 1
        elif token.type == "tr_open":
            rows.append(0)
        elif token.type in ("th_open", "td_open"):
            rows[-1] += 1
        elif token.type == "table_close":
            assert len(set(rows)) == 1, f"table {tables} has rows of {sorted(set(rows))} cells"
            rows = []
    assert tables >= 5
    source_rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert sum(1 for t in tokens if t.type == "tr_open") == len(source_rows)  # none fell out


@pytest.fixture
def presets_here(tmp_path, monkeypatch):
    """A git repository holding the presets, as the working folder: `main` of the CLI."""
    from deba_pipeline.cli import main

    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    return main


def test_preset_writes_the_complete_params(presets_here, capsys):
    assert presets_here(["preset", "micro"]) == 0
    assert "params.yaml now holds preset micro (valid. 1 profile runs" in capsys.readouterr().out
    written = OmegaConf.load("params.yaml")
    assert written == OmegaConf.structured(load_params("pipelines/micro.yaml"))  # complete
    assert written.deba.cooldown == 1
    assert written.train.lr == 0.01
    assert (
        Path("params.yaml")
        .read_text()
        .startswith("# The study `dvc repro` runs. Written by `deba preset micro`")
    )


def test_preset_never_overwrites_an_edit_git_does_not_hold(presets_here, capsys):
    assert presets_here(["preset", "micro"]) == 0
    Path("params.yaml").write_text(Path("params.yaml").read_text() + "# my note\n")
    assert presets_here(["preset", "quick"]) == 2
    assert (
        "params.yaml has changes git does not hold, and `deba preset quick` would overwrite "
        "them: commit them, or rerun with --force"
    ) in capsys.readouterr().err
    assert Path("params.yaml").read_text().endswith("# my note\n")


def test_preset_force_keeps_the_edited_file_as_bak(presets_here, capsys):
    assert presets_here(["preset", "micro"]) == 0
    Path("params.yaml").write_text(Path("params.yaml").read_text() + "# my note\n")
    assert presets_here(["preset", "quick", "--force"]) == 0
    assert "the previous file is params.yaml.bak" in capsys.readouterr().out
    assert Path("params.yaml.bak").read_text().endswith("# my note\n")
    assert OmegaConf.load("params.yaml").study.name == "quick"


def test_preset_replaces_a_file_git_holds(presets_here):
    assert presets_here(["preset", "quick"]) == 0
    subprocess.run(["git", "add", "params.yaml"], check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "p"], check=True
    )
    assert presets_here(["preset", "micro"]) == 0
    assert OmegaConf.load("params.yaml").study.name != "quick"


def test_an_unknown_preset_names_the_known_ones(presets_here, capsys):
    assert presets_here(["preset", "imagenet"]) == 2
    assert "unknown preset 'imagenet': choose one of micro, paper, quick" in capsys.readouterr().err


def test_preset_diff_shows_only_what_changes(tmp_path, monkeypatch, capsys):
    from deba_pipeline.cli import main

    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    monkeypatch.chdir(tmp_path)
    assert main(["preset", "--diff", "micro"]) == 0  # no params.yaml yet: against the defaults
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "preset micro against the defaults:"
    assert "  deba.cooldown: 10 → 1" in out
    assert "  train.epochs: 100 → 5" in out
    assert not any(line.startswith("  train.lr") for line in out)
    assert not Path("params.yaml").exists()  # --diff writes nothing
    assert main(["preset", "micro"]) == 0
    assert main(["preset", "--diff", "micro"]) == 0
    assert (
        capsys.readouterr().out.splitlines()[-1] == "preset micro changes nothing in params.yaml."
    )


@pytest.mark.parametrize("name", ["micro", "quick", "paper"])
def test_presets_are_overlays_of_only_what_differs(name):
    overlay = OmegaConf.to_container(OmegaConf.load(ROOT / "pipelines" / f"{name}.yaml"))
    defaults = OmegaConf.to_container(OmegaConf.structured(Params))
    for group, values in overlay.items():
        for key, value in values.items():
            assert value != defaults[group][key], f"{name}: {group}.{key} repeats the default"
    lines = [
        line
        for line in (ROOT / "pipelines" / f"{name}.yaml").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(lines) <= 20


def test_wandb_group_is_the_experiment_or_study_and_when_the_invocation_began(monkeypatch):
    from deba_pipeline.execution.invocation import wandb_group

    cfg = load_params(ROOT / "pipelines" / "micro.yaml")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.setenv("DEBA_INVOCATION", "2026-12-01 13:52:07")
    assert wandb_group(cfg) == "micro 2026-12-01 13:52:07"
    monkeypatch.setenv("DVC_EXP_NAME", "beige-seal")
    assert wandb_group(cfg) == "beige-seal 2026-12-01 13:52:07"


@pytest.mark.slow
def test_two_reproductions_of_one_study_log_to_two_wandb_groups(tmp_path):
    import os

    from helpers import copy_project, read_offline_run

    workspace = copy_project(tmp_path / "w")
    params = OmegaConf.load(workspace / "params.yaml")
    params.tracking.wandb = "offline"
    OmegaConf.save(params, workspace / "params.yaml")
    # not the W&B service an in-process test of this session may have started (WANDB_SERVICE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEBA_", "DVC_", "WANDB_"))}
    for _ in range(2):  # each trains the profile run afresh: no finished run to reuse
        shutil.rmtree(workspace / ".deba" / "finished", ignore_errors=True)
        done = subprocess.run(
            ["dvc", "repro", "--force", "profile"],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    pieces = [
        read_offline_run(p)["run"]
        for p in sorted((workspace / ".deba" / "wandb" / "wandb").glob("offline-run-*"))
    ]
    assert len(pieces) == 2
    assert pieces[0]["id"] == pieces[1]["id"]
    groups = [p["group"] for p in pieces]
    assert groups[0] != groups[1]
    assert all(g.startswith("micro 20") for g in groups)


def test_a_deba_command_outside_dvc_is_an_invocation_of_its_own(monkeypatch):
    import time

    import psutil

    from deba_pipeline.execution.invocation import invocation_started

    monkeypatch.setenv("DEBA_INVOCATION", "")  # unset, and unset again after the test
    began = psutil.Process().create_time()  # pytest is no dvc process, nor are its parents
    assert invocation_started() == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(began))


@pytest.mark.slow
def test_a_busy_machine_moves_measured_speedups_but_not_modelled_ones(
    micro_study, busy_micro_study, tmp_path
):
    """The study reproduced in a fresh clone beside a CPU-burning process, then its step-time
    tables measured again right after, with the burner gone: the two sets of modelled speedups
    agree up to the two tables' own noise (each table states it), as do the prediction verdicts.
    Side by side in time, as every timing comparison here is: a table measured minutes earlier
    sees another machine (a CI run moved a speedup 2.5 points between the session's first and
    last tables). The report's half-widths are 90% ones; the bound is the 99.9% one of the
    difference, so a busy machine that biases the table fails, and ordinary noise one run in a
    thousand. The measured speedups of the busy study are its own runs' clocks, free to move."""
    from statistics import NormalDist

    _, first = micro_study
    busy, result = busy_micro_study
    assert first.returncode == 0
    assert result.returncode == 0, result.stderr
    calm = tmp_path / "calm"
    shutil.copytree(busy, calm, symlinks=True)
    shutil.rmtree(calm / ".deba" / "steptime")  # measured again, not taken from the cache
    for command in (["dvc", "repro", "--force", "--single-item", "steptime"], ["dvc", "repro"]):
        again = subprocess.run(command, cwd=calm, capture_output=True, text=True)
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    a, b = (json.loads((w / "reports" / "metrics.json").read_text()) for w in (calm, busy))
    widen = NormalDist().inv_cdf(0.9995) / NormalDist().inv_cdf(0.95)  # 90% to 99.9%
    pairs = [(a["per_arch"][c], b["per_arch"][c], "") for c in a["per_arch"]] + [
        (a["ablations"][v], b["ablations"][v], "mean_") for v in a["ablations"]
    ]
    for calm_cell, busy_cell, prefix in pairs:
        moved = abs(
            calm_cell[f"{prefix}speedup_modelled_pct"] - busy_cell[f"{prefix}speedup_modelled_pct"]
        )
        noise = [
            cell[f"{prefix}speedup_modelled_table_noise_pct"] for cell in (calm_cell, busy_cell)
        ]
        assert None not in noise, (calm_cell, busy_cell)  # each table tells its own noise
        assert moved <= widen * math.hypot(*noise) + 1e-3, (calm_cell, busy_cell)  # 4 decimals
    verdicts = [
        (w / "reports" / "tables" / "table2.csv").read_text().splitlines() for w in (calm, busy)
    ]
    held = [[line.rsplit(",", 1)[1] for line in v] for v in verdicts]
    assert held[0] == held[1]


def test_the_committed_report_renders_and_its_metrics_carry_both_speedups():
    assert_markdown_tables_render((ROOT / "reports" / "REPORT.md").read_text())
    metrics = json.loads((ROOT / "reports" / "metrics.json").read_text())
    for cell in metrics["per_arch"].values():
        assert cell["speedup_modelled_pct"] is not None
        assert cell["speedup_measured_pct"] is not None
        assert cell["increases"] + cell["rollbacks"] + cell["holds"] > 0
    assert {"held", "checked"} == set(metrics["predictions"])


def test_validate_estimate_counts_the_steps_of_every_run(monkeypatch):
    from deba_pipeline.execution import estimate, pool

    monkeypatch.setattr(estimate, "step_seconds", lambda cfg, arch, dataset: 0.01)
    monkeypatch.setattr(estimate, "probe_batch", lambda cfg, side=0: 16)  # as for large inputs
    monkeypatch.setattr(pool, "usable_cores", lambda: 2)
    text = estimate.estimate(load_params(ROOT / "pipelines" / "quick.yaml"))
    # per arch on digits: 2 profile + 5 seeds × (fixed + 3 strategies) + 4 ablations × 5 seeds
    # = 42 runs of 12 epochs of 899 // 64 = 14 steps (half the digits train at test_fraction
    # 0.5) at 10 ms: 70.56 s = 0.0196 h; three archs: 0.0588 h, two at a time on 2 cores (one
    # thread a run): 0.0294 h of wall-clock
    assert (
        "test_resnet/digits: 10.0 ms a step at batch 64 (from batch 16, scaled by samples), "
        "42 runs: 0.020 device-hours"
    ) in text  # step_seconds stands in: scaling inside it
    assert (
        "total: 0.059 device-hours; about 0.029 hours of wall-clock with 2 run(s) in flight "
        "(local backend)" in text
    )


def test_validate_estimate_times_a_real_step_here(monkeypatch, capsys):
    from deba_pipeline.cli import main

    monkeypatch.chdir(ROOT)
    assert main(["validate", "micro", "--estimate"]) == 0
    out, err = capsys.readouterr()
    step_ms = float(out.split("test_resnet/digits: ")[1].split(" ms")[0])
    runs, hours = (
        out.split(" ms a step at batch 64, ")[1].split(" device-hours")[0].split(" runs: ")
    )
    # micro: 5 epochs of 1,438 // 64 = 22 steps a run; the step is printed to 0.1 ms
    steps = int(runs) * 5 * 22
    assert float(hours) == pytest.approx(
        step_ms / 1000 * steps / 3600, abs=0.0005 + 0.00005 * steps / 3600
    )
    assert out.count("estimate on ") == 1
    # progress as each architecture is timed (8-pixel digits: at the study's own batch)
    assert "deba: timing test_resnet on 8x8x1 inputs at batch " in err
    assert "(1 of 1)" in err


@pytest.mark.slow
def test_the_committed_report_recomputes_from_the_committed_records(tmp_path, monkeypatch):
    """The run records and step-time tables are committed (DVC outputs with cache: false), so
    `deba aggregate` in a clone gives the committed report without training."""
    from deba_pipeline.cli import main

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    out = tmp_path / "reports"
    assert (
        main(
            [
                "aggregate",
                "--runs",
                "runs",
                "--out",
                str(out),
                "--steptime",
                "results/steptime",
                "--prediction",
                "results/prediction.json",
            ]
        )
        == 0
    )
    for name in ("REPORT.md", "metrics.json", "answer.json", "strategies.json"):
        assert (out / name).read_text() == (root / "reports" / name).read_text(), name
