"""docs/peers.md: DEBA's peers. The noise scale, AdaScale's gain and the lr scalings pinned to their
formulas; the gns and step-schedule rules; strategies trained side by side."""

import math

import pytest
import torch
from test_scheduler import Plugin, Scripted  # a rule that returns scripted decisions

from deba_pipeline.core.base import Observation
from deba_pipeline.core.errors import ConfigError, PluginError
from deba_pipeline.core.policies.multiplicative import adascale_gain
from deba_pipeline.core.rules.gns import NoiseScaleRule
from deba_pipeline.core.scheduler import DEBAScheduler
from deba_pipeline.core.signals.gradient_noise_scale import GradientNoiseScale, noise_scale
from deba_pipeline.engine.loop import Trainer
from deba_pipeline.execution.one_run import train

from helpers import stage, tiny_spec

GNS = {"rule": "gns", "signals": ["gradient_noise_scale"]}


def test_noise_scale_is_spec_section_6_by_hand():
    # B = 4, T = 3 (B_big = 12), s̄ = 5, ‖Ḡ‖² = 2: |G|² = (12·2 − 4·5)/(12 − 4) = 0.5,
    # tr(Σ) = (5 − 2)/(1/4 − 1/12) = 18, B_simple = 36
    assert noise_scale(5.0, 2.0, 4, 3) == pytest.approx(36.0, rel=1e-12)
    assert noise_scale(10.0, 2.0, 4, 3) is None  # |G|² = (24 − 40)/8 < 0: undefined
    assert noise_scale(5.0, 2.0, 4, 1) is None  # one step: undefined
    # the same epoch drawn without replacement from N = 16 samples: tr(Σ) = 18 still,
    # |G|² = 2 − 18·(1/12 − 1/16) = 1.625, B_simple = 18/1.625
    assert noise_scale(5.0, 2.0, 4, 3, population=16) == pytest.approx(18 / 1.625, rel=1e-12)
    assert noise_scale(5.0, 2.0, 4, 3, population=12) == pytest.approx(9.0, rel=1e-12)  # ‖Ḡ‖²


def test_an_epoch_drawn_without_replacement_gives_the_per_sample_truth():
    """docs/peers.md: per-sample gradients gᵢ = G + noiseᵢ of a set of N = 4000, read the way the loop
    reads them: each epoch one permutation in steps of B = 16, so B_big = N. The truth
    tr(Σ)/|G|² ≈ 1300 (Σ with the 1/(N−1) of a finite population); the formula for independent
    draws reads about 1/(1 − 1300/4000) ≈ 1.48× as much."""
    gen = torch.Generator().manual_seed(0)
    n, d, batch = 4000, 20, 16
    steps = n // batch
    noise = torch.randn(n, d, generator=gen, dtype=torch.float64)
    per_sample = noise - noise.mean(0) + 1 / math.sqrt(1300)  # |G|² = d/1300 exactly
    mean = per_sample.mean(0)
    truth = float(((per_sample - mean) ** 2).sum() / (n - 1) / mean.dot(mean))
    corrected, independent = [], []
    for _ in range(20):  # epochs
        order = torch.randperm(n, generator=gen)
        step_grads = per_sample[order].view(steps, batch, d).mean(1)
        acc = {"grad_sq_norm": float((step_grads**2).sum()), "grad_sum": [step_grads.sum(0)]}
        for population, out in ((n, corrected), (None, independent)):
            obs = Observation(2, 1.0, [mean], 1.0, 1.0, batch, steps, acc, population)
            out.append(GradientNoiseScale().compute(obs))
    assert 1200 < truth < 1400
    assert sum(corrected) / len(corrected) == pytest.approx(truth, rel=0.03)
    assert sum(independent) / len(independent) > 1.3 * truth  # the bias the correction removes


def test_the_estimator_from_minibatch_norms_matches_the_per_sample_truth():
    """Least squares, parameters held fixed: per-sample gradients gᵢ = (xᵢ·w − yᵢ)xᵢ exactly,
    so tr(Σ)/|G|² is known; the estimator sees only each step's mini-batch gradient."""
    gen = torch.Generator().manual_seed(0)
    n, d, batch, steps = 20_000, 10, 8, 4_000
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = x @ torch.ones(d, dtype=torch.float64) + torch.randn(n, generator=gen, dtype=torch.float64)
    w = torch.full((d,), 0.7, dtype=torch.float64)
    per_sample = (x @ w - y)[:, None] * x  # n × d
    mean = per_sample.mean(0)
    truth = ((per_sample - mean) ** 2).sum(1).mean() / mean.dot(mean)  # tr(Σ)/|G|²
    index = torch.randint(0, n, (steps, batch), generator=gen)
    step_grads = per_sample[index].mean(1)  # steps × d
    sq_norms = (step_grads**2).sum(1)
    obs = Observation(
        2,
        1.0,
        [mean],
        1.0,
        1.0,
        batch,
        steps,
        {"grad_sq_norm": float(sq_norms.sum()), "grad_sum": [step_grads.sum(0)]},
    )
    estimate = GradientNoiseScale().compute(obs)
    assert estimate == pytest.approx(float(truth), rel=0.05)


def test_the_noise_scale_through_the_training_loop_is_finite_and_positive(tmp_path):
    record = train(tiny_spec(train={"epochs": 3}, deba=GNS), state_dir=tmp_path, progress=False)
    values = [e["signals"]["gradient_noise_scale"] for e in record["epochs"]]
    assert all(v is not None and math.isfinite(v) and v > 0 for v in values), values


@pytest.mark.parametrize(
    ("window", "batch", "expected"),
    [
        ((100.0, 40.0, 200.0), 64, "increase"),  # N = 100 ≥ 64·1.5 = 96
        ((90.0, 40.0, 200.0), 64, "hold"),  # 51.2 < 90 < 96
        ((10.0, 51.2, 60.0), 64, "rollback"),  # N = 51.2 ≤ 64·0.8
        ((), 64, "hold"),  # undefined so far
    ],
)
def test_gns_rule(window, batch, expected):
    rule = NoiseScaleRule(0.5, 0.5)
    rule.epoch, rule.batch_size, rule.growth, rule.rollback = 5, batch, 1.5, 0.8
    assert rule.decide({}, {"gradient_noise_scale": window}) == expected


def test_adascale_gain_is_its_closed_form_and_lies_between_1_and_the_batch_ratio():
    assert adascale_gain(100.0, 128, 64) == pytest.approx(
        (1 + 100 / 64) / (1 + 100 / 128), rel=1e-15
    )
    for noise in (0.0, 1.0, 64.0, 1e3, 1e9):
        for batch in (64, 96, 500, 2048):
            assert 1.0 - 1e-12 <= adascale_gain(noise, batch, 64) <= batch / 64 + 1e-12


@pytest.mark.parametrize(
    ("scaling", "expected"), [("linear", lambda r: r), ("sqrt", math.sqrt), ("none", lambda r: 1.0)]
)
def test_lr_scaling_follows_the_batch_directly_after_any_sequence(
    register_plugin, scaling, expected
):
    register_plugin(Plugin(), "test-rules")
    Scripted.script = [
        "increase",
        "increase",
        "rollback",
        "increase",
        "rollback",
        "rollback",
        "increase",
        "rollback",
        "rollback",
    ]
    sched = DEBAScheduler(
        batch_size=64, rule="scripted", cooldown=0, policy_options={"lr_scaling": scaling}
    )
    grads = [torch.ones(8)]
    for _ in range(len(Scripted.script) + 1):
        step = sched.step(1.0, grads)
        assert step.lr_scale == expected(step.batch_size / 64)  # exactly: from B, not a product


def test_adascale_reads_the_noise_scale_and_needs_it_selected():
    with pytest.raises(Exception, match="gradient_noise_scale"):
        DEBAScheduler(batch_size=64, policy_options={"lr_scaling": "adascale"})
    sched = DEBAScheduler(
        batch_size=64,
        cooldown=0,
        rule="step_schedule",
        rule_options={"at": [2]},
        signals=["gradient_noise_scale"],
        policy_options={"lr_scaling": "adascale"},
    )
    assert sched.step(1.0, [torch.ones(4)]).lr_scale == 1.0  # no noise scale yet: η₀
    step = sched.step(
        1.0,
        [torch.ones(4)],
        steps=3,
        accumulated={
            "grad_sq_norm": 15.0,
            "grad_sum": [torch.tensor([3 * math.sqrt(2.0), 0.0, 0.0, 0.0], dtype=torch.float64)],
        },
    )
    # B = 64 trained this epoch: s̄ = 5, ‖Ḡ‖² = 2 → |G|² = (192·2 − 64·5)/128 = 0.5,
    # tr(Σ) = 3/(1/64 − 1/192) = 288, N = 576; the next batch is 96
    assert step.signals["gradient_noise_scale"] == pytest.approx(576.0)
    assert step.batch_size == 96
    assert step.lr_scale == pytest.approx((1 + 576 / 64) / (1 + 576 / 96))


def test_step_schedule_increases_at_its_epochs_only():
    sched = DEBAScheduler(
        batch_size=64, rule="step_schedule", cooldown=0, rule_options={"at": [2, 4]}
    )
    decisions = [sched.step(1.0, [torch.ones(4)]).decision for _ in range(5)]
    assert decisions == ["hold", "increase", "hold", "increase", "hold"]
    with pytest.raises(Exception, match=r"`at` = \['x'\] is not allowed"):
        DEBAScheduler(batch_size=64, rule="step_schedule", rule_options={"at": ["x"]})


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"rule_options": {"at": [5, 12, 14]}},  # the paper's cooldown 10: only 12 would fire
            "`rule_options.at` = [5, 12, 14] is not allowed: it must be epochs the schedule can reach: "
            "cooldown = 10 holds the 10 epochs at the start and after each increase, so [5, 14] would "
            "never fire; set cooldown: 0 (as step_schedule is meant to run), or start after epoch 10 "
            "and space the epochs more than 10 apart.",
        ),
        (
            {"cooldown": 0, "rule_options": {"at": [1, 3]}},
            "`rule_options.at` = [1, 3] is not allowed: it must be epochs from 2 on: epoch 1 always "
            "holds.",
        ),
        (
            {"cooldown": 0},
            "`rule_options.at` = None is not allowed: it must be a non-empty list of "
            "epochs at whose end step_schedule increases the batch, e.g. [30, 60, 80].",
        ),
    ],
)
def test_a_step_schedule_epoch_that_could_never_fire_is_refused(options, expected):
    with pytest.raises(ConfigError) as caught:
        DEBAScheduler(batch_size=64, rule="step_schedule", **options)
    assert str(caught.value) == expected


def test_the_record_carries_the_rate_the_optimiser_used(tmp_path):
    from deba_pipeline.execution.study import run_spec

    from helpers import tiny_cfg

    step = {
        "rule": "step_schedule",
        "rule_options": {"at": [2]},
        "cooldown": 0,
        "policy_options": {"lr_scaling": "sqrt"},
    }  # a method: the ablations stay DEBA's
    spec = run_spec(
        tiny_cfg(train={"epochs": 4, "lr_schedule": "cosine"}),
        "test_resnet",
        "digits",
        2,
        "step",
        "baseline",
        deba_overrides=step,
    )
    record = train(spec, state_dir=tmp_path, progress=False)
    seen, total = 0, 4 * 1438  # four epochs of digits' training set: 1,438 samples
    for e in record["epochs"]:
        expected = (
            0.01 * math.sqrt(e["batch_size"] / 64) * 0.5 * (1 + math.cos(math.pi * seen / total))
        )
        assert e["lr"] == pytest.approx(expected, rel=1e-12), e["epoch"]
        seen += e["samples"]
    assert [e["batch_size"] for e in record["epochs"]] == [64, 64, 96, 96]


def test_each_optimiser_gets_its_own_defaults(tmp_path):
    adamw = Trainer(tiny_spec(train={"optimizer": "adamw"}), tmp_path / "a").optimizer
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.defaults["weight_decay"] == 0.01  # PyTorch's, not SGD's 5e-4
    sgd = Trainer(tiny_spec(), tmp_path / "s").optimizer
    assert (sgd.defaults["momentum"], sgd.defaults["weight_decay"]) == (0.9, 5e-4)  # the paper's
    spec = tiny_spec(train={"optimizer": "adamw", "weight_decay": 0.1})
    assert spec.train.weight_decay == 0.1
    assert spec.train.momentum is None


def test_an_option_the_optimiser_does_not_have_is_refused():
    from omegaconf import OmegaConf

    from deba_pipeline.config import merge

    with pytest.raises(ConfigError) as caught:
        merge(OmegaConf.create({"train": {"optimizer": "adamw", "momentum": 0.9}}))
    assert str(caught.value) == (
        "<params>: `train.momentum` = 0.9 is not allowed: it must be "
        "null with train.optimizer = adamw (it has no momentum option)."
    )


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
    profile = train(
        tiny_spec("fixed", "profile", train={"epochs": 2}), state_dir=tmp_path / "b", progress=False
    )
    for e, p in zip(record["epochs"], profile["epochs"]):  # the same trajectory: E‖g‖² ≥ Var‖g‖
        assert e["signals"]["mean_sq_norm"] > p["grad_norm_var"] > 0
    with pytest.raises(
        PluginError,
        match=r"signal 'greedy' asks to accumulate \['grad_cubes'\], "
        r"which the loop does not offer: it offers "
        r"grad_sq_norm, grad_sum",
    ):
        DEBAScheduler(
            batch_size=64,
            signals=["greedy"],
            rule="step_schedule",
            cooldown=0,
            rule_options={"at": [2]},
            plugins=[str(plugin)],
        )


@pytest.mark.slow  # trains a study's worth of runs: about 20 s on 2 cores
def test_strategies_train_against_one_fixed_baseline_and_are_reported_side_by_side(
    tmp_path, monkeypatch
):
    import json

    from deba_pipeline.cli import main

    from helpers import small_params

    monkeypatch.chdir(tmp_path)
    methods = {
        "deba": {},
        "gns": GNS,
        "step": {
            "rule": "step_schedule",
            "cooldown": 0,
            "rule_options": {"at": [2]},
            "policy_options": {"lr_scaling": "sqrt"},
        },
    }
    (tmp_path / "params.yaml").write_text(
        small_params(
            {
                "study": {"methods": methods},
                "deba": {"thresholds": "fixed"},
                "train": {"epochs": 3},
                "ablate": {"variants": {}},
            }
        )
    )
    assert main(stage("train")) == 0
    assert main(["aggregate", "--runs", "runs", "--out", "reports"]) == 0
    records = sorted(p.name for p in (tmp_path / "runs" / "train").rglob("*.json"))
    assert records == [
        "deba-baseline-seed2.json",
        "fixed-baseline-seed2.json",
        "gns-baseline-seed2.json",
        "step-baseline-seed2.json",
    ]
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
    from deba_pipeline.core.errors import ConfigError

    from helpers import tiny_cfg

    assert list(tiny_cfg(study={"methods": {"gns": GNS}}).study.methods) == ["gns"]
    with pytest.raises(ConfigError, match="`study.methods.fixed` = 'fixed' is not allowed"):
        tiny_cfg(study={"methods": {"fixed": {}}})


def test_the_loops_per_step_sums_are_those_of_each_steps_gradient(tmp_path, monkeypatch):
    """Σₜ‖gₜ‖² and Σₜgₜ as the loop keeps them (one flat buffer, float32 products) against each
    step's gradient snapshotted in float64 just before the optimiser uses it."""
    trainer = Trainer(tiny_spec(deba=GNS), tmp_path)
    snapshots, real_step = [], trainer.optimizer.step

    def step(*args, **kwargs):
        snapshots.append(torch.cat([p.grad.flatten() for p in trainer.params]).double())
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer.optimizer, "step", step)
    result = trainer.train_epoch(64)
    steps = torch.stack(snapshots)
    assert result.steps == len(snapshots) == trainer.data.train_size // 64
    assert result.accumulated["grad_sq_norm"] == pytest.approx(float((steps**2).sum()), rel=1e-6)
    kept = torch.cat([g.flatten() for g in result.accumulated["grad_sum"]]).double()
    assert float((kept - steps.sum(0)).norm() / steps.sum(0).norm()) < 1e-6


LOGGED_SUMS = """
import os
from pathlib import Path
from deba_pipeline import Signal, hookimpl
from deba_pipeline.core.gradstats import grad_stats
class Sums(Signal):
    name = 'sums'
    accumulate = ('grad_sq_norm', 'grad_sum')
    def compute(self, obs):
        with Path({log!r}).open('a') as f:
            f.write(f"{{os.environ.get('RANK', '0')}} {{obs.epoch}} {{obs.steps}} "
                    f"{{obs.accumulated['grad_sq_norm']!r}} "
                    f"{{float(grad_stats(obs.accumulated['grad_sum']).sumsq)!r}}\\n")
        return 1.0
@hookimpl
def register_signals(register):
    register(Sums)
"""


@pytest.mark.slow
def test_under_ddp_the_per_step_sums_are_the_global_batchs(tmp_path):
    """Two processes at half the batch each sum the same Σ‖gₜ‖² and ‖Σgₜ‖² as one process:
    each step's gradient is the all-reduced one of the global batch (docs/peers.md, docs/cluster.md)."""
    logged = {}
    for world in (1, 2):
        plugin = tmp_path / f"sums{world}.py"
        plugin.write_text(LOGGED_SUMS.format(log=str(tmp_path / f"log{world}.txt")))
        spec = tiny_spec(
            "deba",
            arch="test_vit",
            train={
                "epochs": 2,
                "processes": world,
                "model_kwargs": {"test_vit": {"patch_size": 4}},
            },
            deba={
                "plugins": [str(plugin)],
                "cooldown": 9,
                "signals": ["grad_variance", "grad_norm_variation", "loss_variation", "sums"],
            },
        )
        train(spec, state_dir=tmp_path / str(world), progress=False)
        logged[world] = [
            line.split() for line in (tmp_path / f"log{world}.txt").read_text().splitlines()
        ]
    assert {row[0] for row in logged[2]} == {"0", "1"}  # every rank computes the signals
    for one, two in zip(logged[1], [row for row in logged[2] if row[0] == "0"]):
        assert one[1:3] == two[1:3]  # epoch, steps
        assert float(two[3]) == pytest.approx(float(one[3]), rel=1e-4)
        assert float(two[4]) == pytest.approx(float(one[4]), rel=1e-4)


def test_the_gns_rule_decides_through_the_scheduler():
    """B = 64, T = 2 steps (B_big = 128), ‖Ḡ‖² = 1: B_simple = 128(s̄ − 1)/(2 − s̄); at B = 96,
    192(s̄ − 1)/(2 − s̄). The rule reads the median over a window of 2."""
    sched = DEBAScheduler(
        batch_size=64, rule="gns", signals=["gradient_noise_scale"], cooldown=0, window=2
    )
    seen = []
    for mean_sq_norm in (1.5, 1.5, 1.2, 1.1):
        step = sched.step(
            1.0,
            [torch.ones(4)],
            steps=2,
            accumulated={
                "grad_sq_norm": 2 * mean_sq_norm,
                "grad_sum": [torch.tensor([2.0, 0.0, 0.0, 0.0], dtype=torch.float64)],
            },
        )
        seen.append((step.signals["gradient_noise_scale"], step.decision, step.batch_size))
    assert [round(v, 6) for v, _, _ in seen] == [128.0, 128.0, 48.0, round(192 * 0.1 / 0.9, 6)]
    assert [(d, b) for _, d, b in seen] == [
        ("hold", 64),  # the first epoch
        ("increase", 96),  # median 128 ≥ 64·1.5
        ("hold", 96),  # median (128 + 48)/2 = 88, between 96·0.8 and 96·1.5
        ("rollback", 76),
    ]  # median (48 + 21.3)/2 = 34.7 ≤ 76.8: ⌊96·0.8⌋
