"""Hardening (issue 11), the classes closed so far: a plugin's learning-rate factor is checked
before it is used, and names from params never become paths outside a stage's folder."""
import math

import pytest
import torch

from deba_pipeline import DEBAScheduler, Policy, PluginError, hookimpl
from deba_pipeline.cli import main
from deba_pipeline.engine import loop
from helpers import small_params, tiny_spec


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
def test_a_learning_rate_factor_that_is_not_finite_and_positive_is_refused(register_plugin,
                                                                         factor):
    register_plugin(scaling_policy(factor), "scaling")
    sched = DEBAScheduler(policy="scaling", theta_conf=100.0, theta_stab=100.0, cooldown=0)
    sched.step(1.0, [torch.ones(2)])
    before = sched.state_dict()
    with pytest.raises(PluginError, match=r"policy 'scaling' returned learning-rate factor .* "
                                          r"at epoch 2: it must be a finite number > 0"):
        sched.step(0.9, [torch.ones(2)])
    assert sched.state_dict() == before


def test_a_run_stopped_by_a_bad_factor_is_not_cached_as_finished(tmp_path, register_plugin):
    register_plugin(scaling_policy(-1.0), "scaling")
    spec = tiny_spec(deba={"policy": "scaling", "theta_conf": 100.0, "theta_stab": 100.0})
    with pytest.raises(PluginError, match="learning-rate factor -1.0"):
        loop.train(spec, state_dir=tmp_path, progress=False)
    assert not (tmp_path / "finished").exists()


@pytest.mark.parametrize("name", ["../../escape", "a/b", ".hidden", "baseline"])
def test_a_variant_name_that_would_be_a_path_is_refused(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({"ablate": {"variants": {name: {}}}}))
    assert main(["ablate", "--arch", "test_resnet"]) == 2
    err = capsys.readouterr().err
    assert f"`ablate.variants.{name}` = '{name}' is not allowed: it must be a name of letters" \
        in err and "Traceback" not in err
    assert not list(tmp_path.parent.glob("*.json")) and not (tmp_path / "runs").exists()


def test_a_record_path_outside_the_stage_folder_is_refused_whatever_let_it_in(tmp_path):
    from deba_pipeline.errors import ConfigError
    from deba_pipeline.stages.runs import record_path
    spec = tiny_spec(variant="../../../../../escape")  # "deba-.." is a folder: 5 up leave it
    with pytest.raises(ConfigError, match="outside .*: architecture, dataset and variant names "
                                          "must not be paths"):
        record_path(tmp_path / "runs", spec)
    assert record_path("runs", tiny_spec()).as_posix() == \
        "runs/test_resnet/digits/deba-baseline-seed2.json"
