"""SPEC §6: DEBA's peers. The noise scale, AdaScale's gain and the lr scalings pinned to their
formulas; the gns and step-schedule rules; strategies trained side by side."""
import math

import pytest
import torch

from deba_pipeline.base import Observation
from deba_pipeline.engine.loop import train
from deba_pipeline.errors import PluginError
from deba_pipeline.policies.multiplicative import adascale_gain
from deba_pipeline.rules.gns import NoiseScaleRule
from deba_pipeline.scheduler import DEBAScheduler
from deba_pipeline.signals.gradient_noise_scale import GradientNoiseScale, noise_scale
from helpers import tiny_spec
from test_scheduler import Plugin, Scripted  # a rule that returns scripted decisions

GNS = {"rule": "gns", "signals": ["gradient_noise_scale"]}


def test_noise_scale_is_spec_section_6_by_hand():
    # B = 4, T = 3 (B_big = 12), s̄ = 5, ‖Ḡ‖² = 2: |G|² = (12·2 − 4·5)/(12 − 4) = 0.5,
    # tr(Σ) = (5 − 2)/(1/4 − 1/12) = 18, B_simple = 36
    assert noise_scale(5.0, 2.0, 4, 3) == pytest.approx(36.0, rel=1e-12)
    assert noise_scale(10.0, 2.0, 4, 3) is None  # |G|² = (24 − 40)/8 < 0: undefined
    assert noise_scale(5.0, 2.0, 4, 1) is None   # one step: undefined


def test_the_estimator_from_minibatch_norms_matches_the_per_sample_truth():
    """Least squares, parameters held fixed: per-sample gradients gᵢ = (xᵢ·w − yᵢ)xᵢ exactly,
    so tr(Σ)/|G|² is known; the estimator sees only each step's mini-batch gradient."""
    gen = torch.Generator().manual_seed(0)
    n, d, batch, steps = 20_000, 10, 8, 4_000
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = x @ torch.ones(d, dtype=torch.float64) + torch.randn(n, generator=gen,
                                                             dtype=torch.float64)
    w = torch.full((d,), 0.7, dtype=torch.float64)
    per_sample = (x @ w - y)[:, None] * x                   # n × d
    mean = per_sample.mean(0)
    truth = ((per_sample - mean) ** 2).sum(1).mean() / mean.dot(mean)   # tr(Σ)/|G|²
    index = torch.randint(0, n, (steps, batch), generator=gen)
    step_grads = per_sample[index].mean(1)                  # steps × d
    sq_norms = (step_grads ** 2).sum(1)
    obs = Observation(2, 1.0, [mean], 1.0, 1.0, batch, steps,
                      {"grad_sq_norm": float(sq_norms.sum()), "grad_sum": [step_grads.sum(0)]})
    estimate = GradientNoiseScale().compute(obs)
    assert estimate == pytest.approx(float(truth), rel=0.05)


def test_the_noise_scale_through_the_training_loop_is_finite_and_positive(tmp_path):
    record = train(tiny_spec(train={"epochs": 3}, deba=GNS), state_dir=tmp_path, progress=False)
    values = [e["signals"]["gradient_noise_scale"] for e in record["epochs"]]
    assert all(v is not None and math.isfinite(v) and v > 0 for v in values), values


@pytest.mark.parametrize("window, batch, expected", [
    ((100.0, 40.0, 200.0), 64, "increase"),   # N = 100 ≥ 64·1.5 = 96
    ((90.0, 40.0, 200.0), 64, "hold"),        # 51.2 < 90 < 96
    ((10.0, 51.2, 60.0), 64, "rollback"),     # N = 51.2 ≤ 64·0.8
    ((), 64, "hold"),                         # undefined so far
])
def test_gns_rule(window, batch, expected):
    rule = NoiseScaleRule(0.5, 0.5)
    rule.epoch, rule.batch_size, rule.growth, rule.rollback = 5, batch, 1.5, 0.8
    assert rule.decide({}, {"gradient_noise_scale": window}) == expected


def test_adascale_gain_is_its_closed_form_and_lies_between_1_and_the_batch_ratio():
    assert adascale_gain(100.0, 128, 64) == pytest.approx((1 + 100 / 64) / (1 + 100 / 128),
                                                          rel=1e-15)
    for noise in (0.0, 1.0, 64.0, 1e3, 1e9):
        for batch in (64, 96, 500, 2048):
            assert 1.0 - 1e-12 <= adascale_gain(noise, batch, 64) <= batch / 64 + 1e-12


@pytest.mark.parametrize("scaling, expected", [("linear", lambda r: r), ("sqrt", math.sqrt),
                                               ("none", lambda r: 1.0)])
def test_lr_scaling_follows_the_batch_directly_after_any_sequence(register_plugin, scaling,
                                                                  expected):
    register_plugin(Plugin(), "test-rules")
    Scripted.script = ["increase", "increase", "rollback", "increase", "rollback", "rollback",
                       "increase", "rollback", "rollback"]
    sched = DEBAScheduler(batch_size=64, rule="scripted", cooldown=0,
                          policy_options={"lr_scaling": scaling})
    grads = [torch.ones(8)]
    for _ in range(len(Scripted.script) + 1):
        step = sched.step(1.0, grads)
        assert step.lr_scale == expected(step.batch_size / 64)  # exactly: from B, not a product


def test_adascale_reads_the_noise_scale_and_needs_it_selected():
    with pytest.raises(Exception, match="gradient_noise_scale"):
        DEBAScheduler(batch_size=64, policy_options={"lr_scaling": "adascale"})
    sched = DEBAScheduler(batch_size=64, cooldown=0, rule="step_schedule",
                          rule_options={"at": [1, 2]}, signals=["gradient_noise_scale"],
                          policy_options={"lr_scaling": "adascale"})
    assert sched.step(1.0, [torch.ones(4)]).lr_scale == 1.0  # no noise scale yet: η₀
    step = sched.step(1.0, [torch.ones(4)], steps=3, accumulated={
        "grad_sq_norm": 15.0, "grad_sum": [torch.tensor([3 * math.sqrt(2.0), 0.0, 0.0, 0.0],
                                                        dtype=torch.float64)]})
    # B = 64 trained this epoch: s̄ = 5, ‖Ḡ‖² = 2 → |G|² = (192·2 − 64·5)/128 = 0.5,
    # tr(Σ) = 3/(1/64 − 1/192) = 288, N = 576; the next batch is 96
    assert step.signals["gradient_noise_scale"] == pytest.approx(576.0)
    assert step.batch_size == 96
    assert step.lr_scale == pytest.approx((1 + 576 / 64) / (1 + 576 / 96))


def test_step_schedule_increases_at_its_epochs_only():
    sched = DEBAScheduler(batch_size=64, rule="step_schedule", cooldown=0,
                          rule_options={"at": [2, 4]})
    decisions = [sched.step(1.0, [torch.ones(4)]).decision for _ in range(5)]
    assert decisions == ["hold", "increase", "hold", "increase", "hold"]
    with pytest.raises(Exception, match=r"`at` = \['x'\] is not allowed"):
        DEBAScheduler(batch_size=64, rule="step_schedule", rule_options={"at": ["x"]})


def test_the_record_carries_the_rate_the_optimiser_used(tmp_path):
    spec = tiny_spec(train={"epochs": 4, "lr_schedule": "cosine"}, deba={
        "rule": "step_schedule", "rule_options": {"at": [2]}, "cooldown": 0,
        "policy_options": {"lr_scaling": "sqrt"}})
    record = train(spec, state_dir=tmp_path, progress=False)
    seen, total = 0, 4 * 1438  # four epochs of digits' training set: 1,438 samples
    for e in record["epochs"]:
        expected = 0.01 * math.sqrt(e["batch_size"] / 64) * 0.5 * (
            1 + math.cos(math.pi * seen / total))
        assert e["lr"] == pytest.approx(expected, rel=1e-12), e["epoch"]
        seen += e["samples"]
    assert [e["batch_size"] for e in record["epochs"]] == [64, 64, 96, 96]


def test_adamw_is_the_optimiser_asked_for(tmp_path):
    from deba_pipeline.engine.loop import Trainer
    trainer = Trainer(tiny_spec(train={"optimizer": "adamw"}), tmp_path)
    assert isinstance(trainer.optimizer, torch.optim.AdamW)


ACCUMULATING = """
from deba_pipeline import Signal, hookimpl
class MeanSquaredNorm(Signal):
    name = 'mean_sq_norm'
    accumulate = ('grad_sq_norm',)
    def compute(self, obs):
        return obs.accumulated['grad_sq_norm'] / obs.steps
class Greedy(Signal):
    name = 'greedy'
    accumulate = ('grad_cubes',)
    def compute(self, obs):
        return 0.0
@hookimpl
def register_signals(register):
    register(MeanSquaredNorm)
    register(Greedy)
"""


def test_a_signal_from_a_plugin_file_asks_for_a_per_step_sum(tmp_path):
    plugin = tmp_path / "accumulating.py"
    plugin.write_text(ACCUMULATING)
    signals = ["grad_variance", "grad_norm_variation", "loss_variation", "mean_sq_norm"]
    spec = tiny_spec(train={"epochs": 2}, deba={"plugins": [str(plugin)], "signals": signals})
    record = train(spec, state_dir=tmp_path / "a", progress=False)
    profile = train(tiny_spec("fixed", "profile", train={"epochs": 2}), state_dir=tmp_path / "b",
                    progress=False)
    for e, p in zip(record["epochs"], profile["epochs"]):  # the same trajectory: E‖g‖² ≥ Var‖g‖
        assert e["signals"]["mean_sq_norm"] > p["grad_norm_var"] > 0
    with pytest.raises(PluginError, match=r"signal 'greedy' asks to accumulate \['grad_cubes'\], "
                                          r"which the loop does not offer: it offers "
                                          r"grad_sq_norm, grad_sum"):
        DEBAScheduler(batch_size=64, signals=["greedy"], rule="step_schedule",
                      plugins=[str(plugin)])


def test_strategies_train_against_one_fixed_baseline_and_are_reported_side_by_side(
        tmp_path, monkeypatch):
    import json
    from deba_pipeline.cli import main
    from helpers import small_params
    monkeypatch.chdir(tmp_path)
    methods = {"deba": {}, "gns": GNS,
               "step": {"rule": "step_schedule", "cooldown": 0, "rule_options": {"at": [2]},
                        "policy_options": {"lr_scaling": "sqrt"}}}
    (tmp_path / "params.yaml").write_text(small_params({
        "study": {"methods": methods}, "deba": {"thresholds": "fixed"},
        "train": {"epochs": 3}, "ablate": {"variants": {}}}))
    assert main(["train"]) == 0 and main(["aggregate"]) == 0
    records = sorted(p.name for p in (tmp_path / "runs" / "train").rglob("*.json"))
    assert records == ["deba-baseline-seed2.json", "fixed-baseline-seed2.json",
                       "gns-baseline-seed2.json", "step-baseline-seed2.json"]
    step = json.loads(next((tmp_path / "runs").rglob("step-*.json")).read_text())
    assert [e["batch_size"] for e in step["epochs"]] == [64, 64, 96]  # increased after epoch 2
    assert [e["lr"] for e in step["epochs"]] == [0.01, 0.01, 0.01 * math.sqrt(1.5)]
    table = (tmp_path / "reports" / "tables" / "strategies.md").read_text().splitlines()
    assert [line.split("|")[3].strip() for line in table[2:]] == ["deba", "gns", "step"]
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert set(metrics["strategies"]["test_resnet/digits"]) == {"deba", "gns", "step"}
    assert metrics["strategies"]["test_resnet/digits"]["step"]["final_batch"] == 96
    assert (tmp_path / "reports" / "figures" / "strategy_trajectories.png").stat().st_size > 0
    report = (tmp_path / "reports" / "REPORT.md").read_text()
    assert "## Strategies side by side" in report


def test_a_users_methods_replace_the_default_and_fixed_is_not_a_method_name():
    from deba_pipeline.errors import ConfigError
    from helpers import tiny_cfg
    assert list(tiny_cfg(study={"methods": {"gns": GNS}}).study.methods) == ["gns"]
    with pytest.raises(ConfigError, match="`study.methods.fixed` = 'fixed' is not allowed"):
        tiny_cfg(study={"methods": {"fixed": {}}})
