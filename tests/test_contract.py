"""The library's contract: every bad argument to `DEBAScheduler`,
`step` and `load_state_dict` is a ConfigError naming it and leaves the scheduler as it was;
plugin state of common types checkpoints and restores, anything else is refused when saved;
a damaged checkpoint is refused, never resumed."""

import collections

import numpy as np
import pytest
import torch

from deba_pipeline import DEBAScheduler, Signal, hookimpl
from deba_pipeline.core.errors import ConfigError, DebaError, PluginError
from deba_pipeline.engine.files import load_torch, save_torch
from deba_pipeline.execution import one_run

from helpers import checkpoint_of, tiny_spec, without_times

GRADS = [torch.ones(3), torch.zeros(2)]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"batch_size": "64"}, "`batch_size` = '64'"),
        ({"batch_size": True}, "`batch_size` = True"),
        ({"signals": "grad_variance"}, "`signals` = 'grad_variance'"),  # not a list of letters
        ({"signals": []}, "`signals` = []"),
        ({"window": "5"}, "`window` = '5'"),
        ({"growth": float("nan")}, "`growth` = nan"),
        ({"rule": "nope"}, "unknown rule 'nope'"),
        ({"policy": 3}, "`policy` = 3 is not allowed: it must be a policy name"),
        ({"config": 5}, "`config` = 5"),
        ({"plugins": "x.py"}, "`plugins` = 'x.py'"),
        ({"rule_options": [1]}, "`rule_options` = [1]"),
        ({"cooldwn": 2}, "unknown DEBA option `cooldwn`. Did you mean `cooldown`?"),
    ],
)
def test_a_bad_constructor_argument_is_a_config_error_naming_it(kwargs, named):
    with pytest.raises(ConfigError) as info:
        DEBAScheduler(**kwargs)
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("loss", "grads", "named"),
    [
        ("1.0", GRADS, "`loss` = '1.0'"),
        (float("inf"), GRADS, "`loss` = inf"),
        (1.0, None, "`grads` = None"),
        (1.0, "abc", "`grads` = 'abc'"),
        (1.0, torch.ones(3), "`grads` = '<one tensor of shape (3,)>'"),
        (1.0, [None, None], "`grads` = '<2 items: all None>'"),
        (1.0, [torch.ones(2), 3.0], "`grads` = '<2 items: float>'"),
        (
            1.0,
            [torch.ones(3), torch.tensor([1.0, float("nan")])],  # the model's shape, one NaN
            "`grads` = '<gradients with variance nan",
        ),
        (1.0, [torch.ones(4)], "`grads` = '<gradients holding 4 numbers>'"),  # another model's
    ],
)
def test_a_bad_step_argument_is_a_config_error_and_changes_nothing(loss, grads, named):
    sched = DEBAScheduler(cooldown=0)
    sched.step(2.0, GRADS)
    before = sched.state_dict()
    with pytest.raises(ConfigError) as info:
        sched.step(loss, grads)
    assert named in str(info.value)
    assert sched.state_dict() == before


def test_a_one_element_tensor_loss_is_a_loss():
    assert DEBAScheduler().step(torch.tensor(2.5), GRADS).signals["loss_variation"] is None


def _edited(state, **changes):
    return {**state, **changes}


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda s: None, "`state` = 'NoneType'"),
        (lambda s: [], "`state` = 'list'"),
        (lambda s: {}, "`state` = [] is not allowed: it must be a mapping with exactly the keys"),
        (lambda s: _edited(s, extra=1), "'extra'"),
        (lambda s: _edited(s, batch_size="a"), "`state['batch_size']` = 'a'"),
        (lambda s: _edited(s, batch_size=4096), "`state['batch_size']` = 4096"),
        (lambda s: _edited(s, epoch=-1), "`state['epoch']` = -1"),
        (lambda s: _edited(s, last_adaptation=99), "`state['last_adaptation']` = 99"),
        (lambda s: _edited(s, max_batch=1), "`state['max_batch']` = 1"),
        (lambda s: _edited(s, windows={"x": []}), "`state['windows']` = {'x': []}"),
        (
            lambda s: _edited(s, windows={**s["windows"], "grad_variance": "abc"}),
            "`state['windows']['grad_variance']` = 'abc'",
        ),
        (
            lambda s: _edited(s, windows={**s["windows"], "grad_variance": [1.0] * 20}),
            "at most `window` = 15 long",
        ),
        (lambda s: _edited(s, names={**s["names"], "rule": "other"}), "scheduler state was saved"),
    ],
)
def test_a_bad_state_is_a_config_error_and_leaves_the_scheduler_as_it_was(edit, named):
    source = DEBAScheduler(cooldown=0)
    for loss in (2.0, 1.5, 1.2):
        source.step(loss, GRADS)
    target = DEBAScheduler(cooldown=0)
    target.step(3.0, GRADS)
    before = target.state_dict()
    with pytest.raises(ConfigError) as info:
        target.load_state_dict(edit(source.state_dict()))
    assert named in str(info.value)
    assert "load_state_dict: " in str(info.value)
    assert target.state_dict() == before
    target.load_state_dict(source.state_dict())  # a good one still loads
    assert target.state_dict() == source.state_dict()


class Remembering(Signal):
    """Keeps numpy scalars and arrays, a deque and a tuple: what a plugin author reaches for."""

    name = "remembering"

    def compute(self, obs):
        seen = self.state.get("seen", collections.deque(maxlen=3))
        seen.append(np.float32(obs.loss))
        self.state = {
            "seen": seen,
            "count": np.int64(obs.epoch),
            "losses": np.append(self.state.get("losses", np.zeros(0)), obs.loss),
            "pair": (obs.epoch, "epoch"),
        }
        return float(np.mean(seen))


class Opaque(Signal):
    name = "opaque"

    def compute(self, obs):
        self.state = {"handle": object()}
        return 1.0


def signal_plugin(cls):
    class Plugin:
        @hookimpl
        def register_signals(self, register):
            register(cls)

    return Plugin()


def test_plugin_state_of_common_types_checkpoints_and_restores(register_plugin, tmp_path):
    register_plugin(signal_plugin(Remembering), "remembering")
    sched = DEBAScheduler(
        signals=["grad_variance", "grad_norm_variation", "loss_variation", "remembering"],
        cooldown=0,
    )
    for loss in (2.0, 1.5, 1.2, 1.1):
        sched.step(loss, GRADS)
    save_torch(tmp_path / "s.pt", sched.state_dict())
    fresh = DEBAScheduler(config=sched.config)
    fresh.load_state_dict(load_torch(tmp_path / "s.pt"))
    state = fresh.signals["remembering"].state
    assert isinstance(state["seen"], collections.deque)
    assert state["seen"].maxlen == 3
    assert list(state["seen"]) == pytest.approx([1.5, 1.2, 1.1])
    assert state["count"] == 4
    assert isinstance(state["losses"], np.ndarray)
    assert state["pair"] == (4, "epoch")
    assert fresh.step(1.0, GRADS) == sched.step(1.0, GRADS)


def test_a_run_with_common_plugin_state_resumes_to_the_same_record(register_plugin, tmp_path):
    register_plugin(signal_plugin(Remembering), "remembering")

    def spec():
        signals = ["grad_variance", "grad_norm_variation", "loss_variation", "remembering"]
        return tiny_spec(train={"epochs": 5}, deba={"signals": signals})

    straight = one_run.train(spec(), state_dir=tmp_path / "a", progress=False)
    checkpoint_of(spec(), tmp_path / "b", 3)  # cut after epoch 3, as a kill would
    resumed = one_run.train(spec(), state_dir=tmp_path / "b", progress=False)
    assert without_times(resumed) == without_times(straight)


def test_plugin_state_a_checkpoint_cannot_hold_is_refused_when_saved(register_plugin, tmp_path):
    register_plugin(signal_plugin(Opaque), "opaque")
    spec = tiny_spec(
        deba={"signals": ["grad_variance", "grad_norm_variation", "loss_variation", "opaque"]}
    )
    with pytest.raises(
        PluginError,
        match=r"signal 'opaque' keeps state\['handle'\] = object in "
        r"its state, which a checkpoint cannot hold",
    ):
        one_run.train(spec, state_dir=tmp_path, progress=False)
    assert not (tmp_path / "finished").exists()


def test_a_damaged_checkpoint_is_refused_not_resumed(tmp_path):
    spec = tiny_spec(train={"epochs": 4})
    checkpoint = checkpoint_of(spec, tmp_path)
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the weights
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(
        DebaError,
        match=r"is damaged: its content does not match the checksum "
        r"written with it. Delete it to start",
    ):
        one_run.train(spec, state_dir=tmp_path, progress=False)
    assert not (tmp_path / "finished").exists()
