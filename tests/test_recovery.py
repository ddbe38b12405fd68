"""Faults lose nothing: a NaN loss, a misbehaving plugin, a corrupt checkpoint, a second process,
a killed `dvc repro` — each stops with a clear message and resumes to the same results."""

import math
import os
import signal
import subprocess
import time

import pytest
from filelock import FileLock
from omegaconf import OmegaConf

from deba_pipeline import Policy, Signal, hookimpl
from deba_pipeline.cli import main
from deba_pipeline.core.errors import DebaError, PluginError
from deba_pipeline.core.rules.deba import DebaRule
from deba_pipeline.engine import loop
from deba_pipeline.engine.files import load_torch
from deba_pipeline.execution import one_run

from helpers import (
    checkpoint_of,
    copy_project,
    small_params,
    stage,
    study_records,
    tiny_spec,
    without_times,
)

SIGNALS = ["grad_variance", "grad_norm_variation", "loss_variation", "flaky"]
FAULT = {"mode": None}  # what the flaky plugins do at epoch 3; None = behave


class Flaky(Signal):
    name = "flaky"

    def compute(self, obs):
        mode = FAULT["mode"] if obs.epoch == 3 else None
        if mode == "raise":
            raise RuntimeError("sensor offline")
        return {"nan": math.nan, "inf": math.inf, "type": "0.5"}.get(mode, 0.5)


class FlakyRule(DebaRule):
    name = "flaky_rule"

    def decide(self, signals, windows):
        return "sideways" if FAULT["mode"] == "decision" else super().decide(signals, windows)


class FlakyPolicy(Policy):
    name = "flaky_policy"

    def update(self, decision, batch_size):
        if FAULT["mode"] == "bounds":
            return 10**6
        if FAULT["mode"] == "float":
            return 80.5
        return batch_size + 8 if decision == "increase" else batch_size


class FlakyPlugin:
    @hookimpl
    def register_signals(self, register):
        register(Flaky)

    @hookimpl
    def register_rules(self, register):
        register(FlakyRule)

    @hookimpl
    def register_policies(self, register):
        register(FlakyPolicy)


def flaky_spec():
    return tiny_spec(
        train={"epochs": 6},
        deba={
            "signals": SIGNALS,
            "rule": "flaky_rule",
            "policy": "flaky_policy",
            "cooldown": 0,
            "theta_conf": 10.0,
            "theta_stab": 10.0,
        },
    )


@pytest.fixture(scope="module")
def straight_flaky_run(tmp_path_factory):
    """The flaky plugins' run when they behave, trained once for every fault case below."""
    from deba_pipeline.core import plugins

    plugins.registry("signal")  # installed plugins first, as register_plugin does
    plugins.pm.register(FlakyPlugin(), name="flaky-plugin")
    try:
        FAULT["mode"] = None
        return one_run.train(
            flaky_spec(), state_dir=tmp_path_factory.mktemp("straight"), progress=False
        )
    finally:
        plugins.pm.unregister(name="flaky-plugin")


@pytest.mark.parametrize(
    ("mode", "epoch", "message"),
    [  # the signal fails at epoch 3, the rule and
        ("raise", 3, "signal 'flaky' raised at epoch 3: RuntimeError: sensor offline"),  # policy
        ("nan", 3, "signal 'flaky' returned nan at epoch 3"),  # when first asked (epoch 2)
        ("inf", 3, "signal 'flaky' returned inf at epoch 3"),
        ("type", 3, "signal 'flaky' returned '0.5' (str) at epoch 3"),
        ("decision", 2, "rule 'flaky_rule' returned 'sideways' at epoch 2"),
        (
            "bounds",
            2,
            "policy 'flaky_policy' returned batch size 1000000 for 'increase' at epoch 2",
        ),
        ("float", 2, "policy 'flaky_policy' returned batch size 80.5"),
    ],
)
def test_plugin_fault_stops_after_checkpointing_and_resumes(
    tmp_path, register_plugin, mode, epoch, message, straight_flaky_run
):
    register_plugin(FlakyPlugin(), "flaky-plugin")
    FAULT["mode"] = mode
    with pytest.raises(PluginError) as info:
        one_run.train(flaky_spec(), state_dir=tmp_path / "state", progress=False)
    text = str(info.value)
    assert message in text
    assert f"The trained epoch {epoch} is saved in" in text
    checkpoint = next((tmp_path / "state" / "checkpoints").glob("*.pt"))
    saved = load_torch(checkpoint)
    assert saved["epoch"] == epoch - 1
    assert saved["pending"]["epoch"] == epoch
    FAULT["mode"] = None  # the plugin is fixed: the run resumes at that epoch's scheduler step
    resumed = one_run.train(flaky_spec(), state_dir=tmp_path / "state", progress=False)
    assert without_times(resumed) == without_times(straight_flaky_run)


def test_plugin_fault_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "flaky.py").write_text(
        "from deba_pipeline import Signal, hookimpl\n"
        "class Bad(Signal):\n    name = 'bad_signal'\n"
        "    def compute(self, obs):\n        return float('nan') if obs.epoch == 2 else 1.0\n"
        "@hookimpl\ndef register_signals(register):\n    register(Bad)\n"
    )
    params = {
        "study": {"archs": ["test_resnet"], "seeds": [2]},
        "train": {"epochs": 3, "device": "cpu"},
        "tracking": {"wandb": "disabled"},
        "deba": {
            "thresholds": "fixed",
            "plugins": ["plugins/flaky.py"],
            "signals": SIGNALS[:3] + ["bad_signal"],
        },
        "ablate": {"variants": {"only": {}}},
    }
    (tmp_path / "params.yaml").write_text(small_params(params))
    assert main(stage("ablate", "--arch", "test_resnet")) == 2
    err = capsys.readouterr().err
    assert "signal 'bad_signal' returned nan at epoch 2" in err
    assert "Traceback" not in err
    assert list((tmp_path / ".deba" / "checkpoints").glob("*.pt"))


def test_nan_loss_names_the_epoch_and_the_last_good_checkpoint(tmp_path, monkeypatch):
    real, calls = loop.forward_backward, {"n": 0}
    steps_per_epoch = 1438 // 64

    def poisoned(model, x, y, autocast):
        calls["n"] += 1
        loss = real(model, x, y, autocast)
        return loss * math.nan if calls["n"] > 2 * steps_per_epoch else loss

    monkeypatch.setattr(loop, "forward_backward", poisoned)
    spec = tiny_spec(train={"epochs": 5})
    with pytest.raises(DebaError) as info:
        one_run.train(spec, state_dir=tmp_path, progress=False)
    text = str(info.value)
    assert "the training loss became nan in epoch 3" in text
    assert "The last good checkpoint is" in text
    assert "(after epoch 2)" in text
    checkpoint = next((tmp_path / "checkpoints").glob("*.pt"))
    assert load_torch(checkpoint)["epoch"] == 2
    monkeypatch.setattr(loop, "forward_backward", real)
    resumed = one_run.train(spec, state_dir=tmp_path, progress=False)
    straight = one_run.train(spec, state_dir=tmp_path / "straight", progress=False)
    assert without_times(resumed) == without_times(straight)


def test_corrupt_checkpoint_is_refused(tmp_path):
    spec = tiny_spec(train={"epochs": 4})
    checkpoint = checkpoint_of(spec, tmp_path)
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated by a crash
    with pytest.raises(DebaError, match=f"checkpoint {checkpoint} is damaged: .* Delete it"):
        one_run.train(spec, state_dir=tmp_path, progress=False)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    spec = tiny_spec(train={"epochs": 4})
    other = tiny_spec(train={"epochs": 4}, arch="test_efficientnet")
    mine = checkpoint_of(spec, tmp_path / "a")
    theirs = checkpoint_of(other, tmp_path / "b")
    theirs.replace(mine)
    with pytest.raises(
        DebaError, match="belongs to another run \\(test_efficientnet/digits/deba/2\\)"
    ):
        one_run.train(spec, state_dir=tmp_path / "a", progress=False)


def test_a_second_process_on_the_same_run_is_refused(tmp_path):
    spec = tiny_spec()
    lock = tmp_path / "locks" / f"{spec.key()}.lock"
    lock.parent.mkdir(parents=True)
    with FileLock(lock), pytest.raises(DebaError, match="is being trained by another process"):
        one_run.train(spec, state_dir=tmp_path, progress=False)
    assert one_run.train(spec, state_dir=tmp_path, progress=False)["epochs"]  # free again


def _wait_for(predicate, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_two_dvc_repro_in_one_workspace(tmp_path):
    workspace = copy_project(tmp_path, brief_timing=True)
    params = OmegaConf.load(workspace / "params.yaml")
    params.train.epochs = 2  # only DVC's lock is under test here
    OmegaConf.save(params, workspace / "params.yaml")
    first = subprocess.Popen(
        ["dvc", "repro"], cwd=workspace, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert _wait_for(lambda: (workspace / ".deba" / "locks").exists())
    second = subprocess.run(["dvc", "repro"], cwd=workspace, capture_output=True, text=True)
    assert second.returncode != 0  # DVC's own lock refuses it, and its message is passed on
    assert "is being blocked by" in second.stderr
    assert "dvc repro" in second.stderr
    assert first.wait(timeout=300) == 0  # the first one finishes unharmed
    assert (workspace / "reports" / "REPORT.md").is_file()


@pytest.mark.slow
def test_killed_dvc_repro_resumes_to_the_same_results(tmp_path, micro_study):
    reference, clean = micro_study
    assert clean.returncode == 0
    workspace = copy_project(tmp_path, brief_timing=True)
    first = subprocess.Popen(
        ["dvc", "repro"],
        cwd=workspace,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    finished = workspace / ".deba" / "finished"
    checkpoints = workspace / ".deba" / "checkpoints"
    # kill it in the middle of a training stage: some runs finished, one checkpointed mid-run
    assert _wait_for(
        lambda: (
            finished.exists()
            and len(list(finished.glob("*.json"))) >= 2
            and checkpoints.exists()
            and list(checkpoints.glob("*.pt"))
        )
    )
    os.killpg(first.pid, signal.SIGKILL)
    before_kill = first.communicate()[0]
    done_before = {p.name for p in finished.glob("*.json")}

    second = subprocess.run(["dvc", "repro"], cwd=workspace, capture_output=True, text=True)
    assert second.returncode == 0, second.stdout + second.stderr
    trained_before = {
        line.split(":")[0] for line in before_kill.splitlines() if " epochs, " in line
    }
    trained_again = {
        line.split(":")[0] for line in second.stdout.splitlines() if " epochs, " in line
    }
    assert trained_before
    assert not trained_before & trained_again
    assert any("(resumed after epoch" in line for line in second.stdout.splitlines())
    assert done_before < {p.name for p in finished.glob("*.json")}
    assert study_records(workspace) == study_records(reference)


def test_diverging_run_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "runs" / "profile" / "test_resnet" / "digits" / "kept.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"computed": "before"}')
    params = {
        "study": {"archs": ["test_resnet"], "profile_seeds": [2]},
        "train": {"epochs": 3, "lr": 1000.0, "device": "cpu"},
        "tracking": {"wandb": "disabled"},
    }
    (tmp_path / "params.yaml").write_text(small_params(params))
    assert main(stage("profile", "--arch", "test_resnet")) == 2
    err = capsys.readouterr().err
    assert "the training loss became nan in epoch 1. No checkpoint was written yet" in err
    assert "Lower train.lr" in err
    assert "Traceback" not in err
    assert earlier.read_text() == '{"computed": "before"}'
