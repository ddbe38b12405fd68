"""Failures through the real commands: a plugin's learning-rate factor is checked
before it is used; names from params never become paths; recovery advice is true when followed;
a bad file or folder is one line naming it with nothing half-written; a plugin's sys.exit is a
failed run. (Validation: test_bad_input.py; the library's contract: test_contract.py.)"""

import errno
import json
import math
import os

import pytest
import torch

from deba_pipeline import DEBAScheduler, PluginError, Policy, hookimpl
from deba_pipeline.cli import main
from deba_pipeline.engine import loop
from deba_pipeline.engine.files import load_torch
from deba_pipeline.execution import one_run

from helpers import new_process, small_params, stage, tiny_spec


def scaling_policy(factor):
    class Scaling(Policy):
        name = "scaling"

        def update(self, decision, batch_size):
            return min(self.max_batch, batch_size * 2), factor

    class Plugin:
        @hookimpl
        def register_policies(self, register):
            register(Scaling)

    return Plugin()


@pytest.mark.parametrize("factor", [-1.0, 0.0, math.nan, math.inf, "2"])
def test_a_learning_rate_factor_that_is_not_finite_and_positive_is_refused(register_plugin, factor):
    register_plugin(scaling_policy(factor), "scaling")
    sched = DEBAScheduler(policy="scaling", theta_conf=100.0, theta_stab=100.0, cooldown=0)
    sched.step(1.0, [torch.ones(2)])
    before = sched.state_dict()
    with pytest.raises(
        PluginError,
        match=r"policy 'scaling' returned learning-rate factor .* "
        r"at epoch 2: it must be a finite number > 0",
    ):
        sched.step(0.9, [torch.ones(2)])
    assert sched.state_dict() == before


def test_a_run_stopped_by_a_bad_factor_is_not_cached_as_finished(tmp_path, register_plugin):
    register_plugin(scaling_policy(-1.0), "scaling")
    spec = tiny_spec(deba={"policy": "scaling", "theta_conf": 100.0, "theta_stab": 100.0})
    with pytest.raises(PluginError, match="learning-rate factor -1.0"):
        one_run.train(spec, state_dir=tmp_path, progress=False)
    assert not (tmp_path / "finished").exists()


@pytest.mark.parametrize("name", ["../../escape", "a/b", ".hidden", "baseline"])
def test_a_variant_name_that_would_be_a_path_is_refused(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({"ablate": {"variants": {name: {}}}}))
    assert main(stage("ablate", "--arch", "test_resnet")) == 2
    err = capsys.readouterr().err
    assert (
        f"`ablate.variants.{name}` = '{name}' is not allowed: it must be a name of letters" in err
    )
    assert "Traceback" not in err
    assert not list(tmp_path.parent.glob("*.json"))
    assert not (tmp_path / "runs").exists()


def test_a_record_path_outside_the_stage_folder_is_refused_whatever_let_it_in(tmp_path):
    from deba_pipeline.core.errors import ConfigError
    from deba_pipeline.execution.study import record_path

    spec = tiny_spec(variant="../../../../../escape")  # "deba-.." is a folder: 5 up leave it
    with pytest.raises(
        ConfigError, match="outside .*: architecture, dataset and variant names must not be paths"
    ):
        record_path(tmp_path / "runs", spec)
    assert (
        record_path("runs", tiny_spec()).as_posix()
        == "runs/test_resnet/digits/deba-baseline-seed2.json"
    )


FLAKY_FILE = (  # a signal plugin that fails at epoch 2 until its file is fixed
    "from deba_pipeline import Signal, hookimpl\n"
    "class Flaky(Signal):\n    name = 'flaky'\n"
    "    def compute(self, obs):\n        return {value}\n"
    "@hookimpl\ndef register_signals(register):\n    register(Flaky)\n"
)
PLUGIN_STUDY = {
    "train": {"epochs": 3},
    "ablate": {"variants": {"only": {}}},
    "deba": {
        "thresholds": "fixed",
        "plugins": ["plugins/flaky.py"],
        "signals": ["grad_variance", "grad_norm_variation", "loss_variation", "flaky"],
    },
}


def plugin_project(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plugins").mkdir(exist_ok=True)
    (tmp_path / "plugins" / "flaky.py").write_text(FLAKY_FILE.format(value=value))
    (tmp_path / "params.yaml").write_text(small_params(PLUGIN_STUDY))


def test_the_advice_after_a_plugin_file_fault_is_what_happens_when_followed(
    tmp_path, monkeypatch, capsys
):
    plugin_project(tmp_path, monkeypatch, "float('nan') if obs.epoch == 2 else 1.0")
    assert main(stage("ablate", "--arch", "test_resnet")) == 2
    err = capsys.readouterr().err
    assert (
        "a fix to a file in plugins/ makes a new run (the files are part of its identity) "
        "that starts from epoch 1" in err
    )
    assert "Traceback" not in err
    new_process()  # each `deba` command is one
    plugin_project(tmp_path, monkeypatch, "1.0")  # the fix the message asks for
    assert main(stage("ablate", "--arch", "test_resnet")) == 0
    out = capsys.readouterr().out
    assert "resumed after epoch" not in out  # it started from epoch 1, as the advice said
    record = json.loads(next((tmp_path / "runs").rglob("deba-only-seed2.json")).read_text())
    assert [e["epoch"] for e in record["epochs"]] == [1, 2, 3]


def test_a_plugin_that_calls_sys_exit_is_a_failed_run_not_exit_0(tmp_path, monkeypatch, capsys):
    plugin_project(tmp_path, monkeypatch, "__import__('sys').exit(0) if obs.epoch == 2 else 1.0")
    assert main(stage("ablate", "--arch", "test_resnet")) == 2
    err = capsys.readouterr().err
    assert "signal 'flaky' raised at epoch 2: SystemExit: 0" in err
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("deba-only-seed2.json"))
    assert not (tmp_path / ".deba" / "finished").exists()


def test_non_finite_gradients_are_not_blamed_on_a_plugin_and_not_replayed(tmp_path, monkeypatch):
    original = loop.Trainer.train_epoch

    def poisoned(self, batch_size, batches=None):  # as bf16 on the CPU did: a finite loss,
        result = original(self, batch_size, batches)  # NaN gradients, in epoch 3
        if len(self.record["epochs"]) == 2:
            result.grads[0].fill_(math.nan)
        return result

    monkeypatch.setattr(loop.Trainer, "train_epoch", poisoned)
    with pytest.raises(loop.DebaError) as info:
        one_run.train(tiny_spec(train={"epochs": 4}), state_dir=tmp_path, progress=False)
    text = str(info.value)
    assert "epoch 3 ended with a non-finite loss or gradient" in text
    assert "plugin" not in text
    assert "Rerunning unchanged repeats this epoch: lower train.lr" in text
    assert load_torch(next((tmp_path / "checkpoints").glob("*.pt")))["epoch"] == 2


def test_a_truncated_record_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({}))
    record = tmp_path / "runs" / "train" / "test_resnet" / "r.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"schema": 2, "epochs": [')
    assert main(["aggregate", "--runs", "runs", "--out", "reports"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"deba: error: {record.relative_to(tmp_path)} is unreadable (Expecting "
        f"value): delete it and run `dvc repro`"
    )
    assert err.count("\n") == 1
    assert not (tmp_path / "reports").exists()


def test_missing_calibrated_thresholds_name_the_file_and_the_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({"deba": {"thresholds": "calibrated"}}))
    assert main(stage("train", "--arch", "test_resnet")) == 2
    assert capsys.readouterr().err == (
        "deba: error: results/thresholds.json does not exist: run the calibrate stage (`dvc "
        "repro calibrate`), or set deba.thresholds to paper or fixed.\n"
    )


def test_an_output_path_that_is_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({"timing": {"repeats": 1, "steps": 1}}))
    (tmp_path / "results").write_text("a file where a folder belongs")
    assert main(stage("steptime", "--arch", "test_resnet", "--runs", "none")) == 2
    err = capsys.readouterr().err
    assert err == (
        "deba: error: cannot write results/steptime/test_resnet.json: results is a "
        "file where a folder is needed: move it away or delete it, then rerun.\n"
    )


def test_a_full_disk_leaves_nothing_half_written(tmp_path, monkeypatch):
    from deba_pipeline.engine import files

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (tmp_path / "table.json").write_text('{"before": 1}')
    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(
        loop.DebaError,
        match=r"cannot write .*table.json: No space left on "
        r"device\. Make sure",
    ):
        files.write_json(tmp_path / "table.json", {"after": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["table.json"]
    assert json.loads((tmp_path / "table.json").read_text()) == {"before": 1}


@pytest.mark.parametrize(
    ("name", "error"),
    [
        (
            "test_resnet/digits/deba/99",  # no such seed: refused by name, no thresholds read
            "no run named 'test_resnet/digits/deba/99' in this study: a name is "
            "ARCH/DATASET/METHOD/SEED as a stage prints it, e.g. test_resnet/digits/fixed-profile/2.",
        ),
        (
            "test_resnet/digits/deba/2",  # a study run: its thresholds are the calibrate stage's
            "results/thresholds.json does not exist: run the calibrate stage (`dvc repro "
            "calibrate`), or set deba.thresholds to paper or fixed.",
        ),
    ],
)
def test_a_named_run_is_refused_for_its_name_before_its_thresholds(
    tmp_path, monkeypatch, capsys, name, error
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({}))
    assert main(["run", name]) == 2
    assert capsys.readouterr().err == f"deba: error: {error}\n"
