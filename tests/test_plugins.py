import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from deba_pipeline import (
    ConfigError,
    DEBAScheduler,
    PluginError,
    Policy,
    Rule,
    Signal,
    hookimpl,
)
from deba_pipeline.cli import main
from deba_pipeline.core import plugins

ROOT = Path(__file__).resolve().parents[1]


class Constant(Signal):
    name = "constant_seven"

    def compute(self, obs):
        return 7.0


class RollbackWhenSeven(Rule):
    name = "rollback_when_seven"
    requires = ("constant_seven",)

    def decide(self, signals, windows):
        return "rollback" if signals["constant_seven"] == 7.0 else "hold"


class Halve(Policy):
    name = "halve"

    def update(self, decision, batch_size):
        return (max(self.min_batch, batch_size // 2), 0.5) if decision == "rollback" else batch_size


class MyPlugin:
    @hookimpl
    def register_signals(self, register):
        register(Constant)

    @hookimpl
    def register_rules(self, register):
        register(RollbackWhenSeven)

    @hookimpl
    def register_policies(self, register):
        register(Halve)


def test_in_process_plugins_are_used_by_name(register_plugin, capsys):
    register_plugin(MyPlugin(), "my-plugin")
    sched = DEBAScheduler(
        signals=["constant_seven"], rule="rollback_when_seven", policy="halve", cooldown=0
    )
    sched.step(1.0, [torch.ones(3)])
    record = sched.step(1.0, [torch.ones(3)])
    assert (record.decision, record.batch_size, record.lr_factor) == ("rollback", 32, 0.5)
    assert record.signals == {"constant_seven": 7.0}
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for name in ("constant_seven", "rollback_when_seven", "halve"):
        assert f"{name}" in out
        assert "in-process (my-plugin)" in out


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(PluginError) as info:
        DEBAScheduler(policy="exponential")
    assert "unknown policy 'exponential'. Available policies: multiplicative" in str(info.value)


def test_rule_requiring_a_missing_signal_is_refused(register_plugin):
    register_plugin(MyPlugin(), "my-plugin")
    with pytest.raises(
        Exception, match="includes \\['constant_seven'\\], which rule 'rollback_when_seven' reads"
    ):
        DEBAScheduler(rule="rollback_when_seven")


def test_duplicate_name_names_both_sources(register_plugin):
    class Clash(Signal):
        name = "grad_variance"

    class ClashPlugin:
        @hookimpl
        def register_signals(self, register):
            register(Clash)

    register_plugin(ClashPlugin(), "clash")
    with pytest.raises(PluginError) as info:
        plugins.get("signal", "grad_variance")
    message = str(info.value)
    assert "signal 'grad_variance' is registered twice" in message
    assert "built-in (deba-pipeline" in message
    assert "in-process (clash)" in message


def test_plugin_that_raises_is_reported_with_its_name(register_plugin):
    class Broken:
        @hookimpl
        def register_rules(self, register):
            raise RuntimeError("boom")

    register_plugin(Broken(), "broken-plugin")
    with pytest.raises(
        PluginError,
        match="plugin 'broken-plugin' .* raised while registering rules: RuntimeError: boom",
    ):
        plugins.registry("rule")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (float("nan"), "returned nan at epoch 1"),
        ("high", "returned 'high' (str) at epoch 1"),
    ],
)
def test_signal_returning_garbage_is_named(register_plugin, value, fragment):
    class Garbage(Signal):
        name = "garbage"

        def compute(self, obs):
            return value

    class Reg:
        @hookimpl
        def register_signals(self, register):
            register(Garbage)

    register_plugin(Reg(), "garbage-plugin")
    sched = DEBAScheduler(
        signals=["grad_variance", "grad_norm_variation", "loss_variation", "garbage"]
    )
    with pytest.raises(
        PluginError, match=f"signal 'garbage' {fragment}".replace("(", r"\(").replace(")", r"\)")
    ):
        sched.step(1.0, [torch.ones(2)])


def test_example_grad_cosine_plugin_file():
    plugins.load_plugin_file(ROOT / "plugins" / "grad_cosine.py")
    sched = DEBAScheduler(
        signals=["grad_variance", "grad_norm_variation", "loss_variation", "grad_cosine"]
    )
    first = sched.step(1.0, [torch.tensor([1.0, 0.0]), torch.tensor([0.0])])
    second = sched.step(1.0, [torch.tensor([1.0, 1.0]), torch.tensor([0.0])])
    third = sched.step(1.0, [torch.tensor([-1.0, -1.0]), None])
    assert first.signals["grad_cosine"] is None
    assert second.signals["grad_cosine"] == pytest.approx(2**-0.5, rel=1e-6)
    assert third.signals["grad_cosine"] == pytest.approx(-1.0, rel=1e-6)


def test_missing_or_broken_plugin_file(tmp_path):
    with pytest.raises(PluginError, match="does not exist: fix the path"):
        plugins.load_plugin_file(tmp_path / "nope.py")
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    with pytest.raises(PluginError, match="broken.py' failed to import: ModuleNotFoundError"):
        plugins.load_plugin_file(broken)


PACKAGE = {
    "deba_extra_plugin.py": """
        from deba_pipeline import Signal, hookimpl

        class Ones(Signal):
            name = "always_one"
            def compute(self, obs):
                return 1.0

        @hookimpl
        def register_signals(register):
            register(Ones)
    """,
    "deba_extra_plugin-1.2.3.dist-info/METADATA": "Metadata-Version: 2.1\nName: deba-extra-plugin\nVersion: 1.2.3\n",
    "deba_extra_plugin-1.2.3.dist-info/entry_points.txt": "[deba]\nextra = deba_extra_plugin\n",
    "deba_extra_plugin-1.2.3.dist-info/RECORD": "",
}


@pytest.mark.slow
def test_entry_point_plugin_from_an_installed_distribution(tmp_path):
    """A tiny distribution in a temporary site directory, found through importlib metadata."""
    for rel, text in PACKAGE.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    listing = subprocess.run(
        [sys.executable, "-m", "deba_pipeline.cli", "plugins"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "always_one" in listing
    assert "package (deba-extra-plugin 1.2.3)" in listing
    use = (
        "import torch; from deba_pipeline import DEBAScheduler;"
        "s = DEBAScheduler(signals=['grad_variance','grad_norm_variation','loss_variation',"
        "'always_one']); print(s.step(1.0, [torch.ones(2)]).signals['always_one'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", use], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "1.0"


class EveryNth(Rule):
    """A rule with an option: increase every `period`-th time it is asked."""

    name = "every_nth"

    def __init__(self, theta_stab, theta_conf, *, period=2):
        super().__init__(theta_stab, theta_conf)
        if not isinstance(period, int) or period < 1:
            raise ConfigError(f"rule 'every_nth': period = {period!r} must be an integer >= 1")
        self.period, self.asked = period, 0

    def decide(self, signals, windows):
        self.asked += 1
        return "increase" if self.asked % self.period == 0 else "hold"


class Scaled(Signal):
    name = "scaled_loss"

    def __init__(self, *, factor=1.0):
        super().__init__()
        self.factor = factor

    def compute(self, obs):
        return self.factor * obs.loss


class OptionPlugin:
    @hookimpl
    def register_rules(self, register):
        register(EveryNth)

    @hookimpl
    def register_signals(self, register):
        register(Scaled)


def test_plugin_options_reach_the_constructor_and_are_checked(register_plugin):
    register_plugin(OptionPlugin(), "options")
    sched = DEBAScheduler(
        rule="every_nth",
        rule_options={"period": 3},
        cooldown=0,
        signals=["grad_variance", "scaled_loss"],
        signal_options={"scaled_loss": {"factor": 2.0}},
    )
    assert sched.rule.period == 3
    assert sched.signals["scaled_loss"].factor == 2.0
    decisions = [sched.step(1.5, [torch.ones(2)]) for _ in range(7)]
    assert [d.decision for d in decisions] == [
        "hold",
        "hold",
        "hold",
        "increase",
        "hold",
        "hold",
        "increase",
    ]  # asked from epoch 2, every third
    assert decisions[0].signals["scaled_loss"] == 3.0
    with pytest.raises(ConfigError, match="rule 'every_nth': period = 0 must be an integer >= 1"):
        DEBAScheduler(rule="every_nth", rule_options={"period": 0})
    with pytest.raises(ConfigError) as info:
        DEBAScheduler(rule="every_nth", rule_options={"perod": 3})
    assert str(info.value) == (
        "rule 'every_nth' does not take the option 'perod' (from `rule_options`); it takes period."
    )
    with pytest.raises(
        ConfigError,
        match="signal 'scaled_loss' does not take the option 'f' "
        r"\(from `signal_options.scaled_loss`\); it takes factor",
    ):
        DEBAScheduler(
            signals=["grad_variance", "grad_norm_variation", "loss_variation", "scaled_loss"],
            signal_options={"scaled_loss": {"f": 1}},
        )


def test_plugin_options_come_from_params(register_plugin):
    from helpers import tiny_spec

    register_plugin(OptionPlugin(), "options")
    spec = tiny_spec(deba={"rule": "every_nth", "rule_options": {"period": 4}})
    assert spec.new_scheduler().rule.period == 4


def test_a_listing_cut_short_by_its_reader_ends_quietly(tmp_path):
    listing = subprocess.run(
        "deba plugins | head -1",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        executable="/bin/bash",
    )
    assert listing.stdout == "signals:\n"
    assert listing.stderr == ""


def test_a_plugin_file_that_is_not_python_is_named_as_such(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a module")
    with pytest.raises(PluginError, match=r"notes.txt' is not a Python module: name a .py file"):
        plugins.load_plugin_file(notes)


def test_built_ins_arrive_only_through_the_package_s_entry_points(monkeypatch):
    import pluggy

    from deba_pipeline.core import hookspecs

    bare = pluggy.PluginManager("deba")
    bare.add_hookspecs(hookspecs)
    monkeypatch.setattr(bare, "load_setuptools_entrypoints", lambda group: 0)  # not installed
    monkeypatch.setattr(plugins, "pm", bare)
    monkeypatch.setattr(plugins, "_loaded", False)
    with pytest.raises(
        PluginError,
        match=r"built-in plugins were not found: they register "
        r"through the package's `deba` entry points.*"
        r"pip install -e \.",
    ):
        plugins.registry("signal")
