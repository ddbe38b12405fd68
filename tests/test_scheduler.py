import io
import random

import pytest
import torch

from deba_pipeline import ConfigError, DEBAScheduler, Policy, Rule, hookimpl
from deba_pipeline.core.policies.multiplicative import Multiplicative
from deba_pipeline.core.rules.deba import DebaRule, confidence_score

EPS = 1e-8


def test_grad_norm_and_loss_variation_hand_computed():
    sched = DEBAScheduler()
    first = sched.step(loss=2.0, grads=[torch.tensor([3.0, 4.0])])  # ‖∇‖ = 5
    assert first.signals["grad_norm_variation"] is None
    assert first.signals["loss_variation"] is None
    assert first.signals["grad_variance"] == pytest.approx(0.25, rel=1e-12)  # var(3, 4)
    second = sched.step(loss=1.5, grads=[torch.tensor([6.0]), torch.tensor([8.0])])  # ‖∇‖ = 10
    assert second.signals["grad_norm_variation"] == pytest.approx(5 / (5 + EPS), rel=1e-12)
    assert second.signals["loss_variation"] == pytest.approx(0.5 / (2.0 + EPS), rel=1e-12)
    third = sched.step(loss=-1.0, grads=[torch.tensor([0.0, 0.0])])  # negative loss: |L_{t-1}|
    assert third.signals["grad_norm_variation"] == pytest.approx(10 / (10 + EPS), rel=1e-12)
    assert third.signals["loss_variation"] == pytest.approx(2.5 / (1.5 + EPS), rel=1e-12)


def _variance_grads(variance):
    """A gradient whose population variance is exactly `variance`: [-s, s]."""
    s = variance**0.5
    return [torch.tensor([-s, s], dtype=torch.float64)]


def test_window_keeps_the_last_values_and_full_keeps_all():
    values = [1.0, 4.0, 9.0, 16.0, 25.0]
    windowed, full = DEBAScheduler(window=3), DEBAScheduler(window="full")
    for v in values:
        windowed.step(loss=1.0, grads=_variance_grads(v))
        full.step(loss=1.0, grads=_variance_grads(v))
    assert list(windowed.windows["grad_variance"]) == pytest.approx([9.0, 16.0, 25.0])
    assert list(full.windows["grad_variance"]) == pytest.approx(values)
    # Δ signals are undefined at epoch 1, so their windows start one epoch later
    assert len(full.windows["grad_norm_variation"]) == 4


def test_confidence_score_uses_the_window_median_including_the_current_value():
    assert confidence_score(3.0, (1.0, 2.0, 3.0)) == pytest.approx(3.0 / (2.0 + EPS))
    assert confidence_score(1.0, (1.0, 2.0, 3.0, 10.0)) == pytest.approx(1.0 / (2.5 + EPS))


@pytest.mark.parametrize(
    ("conf", "norm_var", "loss_var", "expected"),
    [
        (0.6, 0.1, 0.1, "increase"),  # c ≤ θ_conf exactly, both stable
        (0.5, 0.54, 0.54, "increase"),
        (0.61, 0.1, 0.1, "rollback"),  # c > θ_conf wins over stability
        (0.5, 1.66, 0.1, "rollback"),  # Δ‖∇‖ > 3θ_stab
        (0.5, 1.65, 0.1, "hold"),  # Δ‖∇‖ = 3θ_stab exactly: not > 3θ_stab, not < θ_stab
        (0.5, 0.55, 0.1, "hold"),  # Δ‖∇‖ = θ_stab: not stable
        (0.5, 0.1, 0.55, "hold"),  # ΔL = θ_stab: not stable
        (0.5, 0.1, 5.0, "hold"),  # unstable loss alone never rolls back
    ],
)
def test_decision_precedence(conf, norm_var, loss_var, expected):
    rule = DebaRule(theta_stab=0.55, theta_conf=0.6)
    window = (1.0,)  # median 1, so c = σ² / (1 + ε)
    signals = {
        "grad_variance": conf * (1 + EPS),
        "grad_norm_variation": norm_var,
        "loss_variation": loss_var,
    }
    assert rule.decide(signals, {"grad_variance": window}) == expected


def test_growth_ladder_and_clamp():
    policy = Multiplicative(1.5, 0.8, 16, 2048)
    ladder, size = [64], 64
    for _ in range(10):
        size = policy.update("increase", size)
        ladder.append(size)
    assert ladder == [64, 96, 144, 216, 324, 486, 729, 1093, 1639, 2048, 2048]


def test_rollback_floor_and_min_batch():
    policy = Multiplicative(1.5, 0.8, 16, 2048)
    assert policy.update("rollback", 64) == 51  # ⌊51.2⌋
    assert policy.update("rollback", 35) == 28  # exact decimal: 0.8 · 35 = 28
    assert policy.update("rollback", 20) == 16
    assert policy.update("rollback", 17) == 16  # ⌊13.6⌋ clamped to B_min
    assert policy.update("hold", 17) == 17


class AlwaysIncrease(Rule):
    name = "always_increase"

    def decide(self, signals, windows):
        return "increase"


class Scripted(Rule):
    name = "scripted"
    script: list = []

    def decide(self, signals, windows):
        return self.script.pop(0)


class Plugin:
    @hookimpl
    def register_rules(self, register):
        register(AlwaysIncrease)
        register(Scripted)


def _drive(sched, epochs):
    return [sched.step(loss=1.0, grads=_variance_grads(1.0)) for _ in range(epochs)]


def test_cooldown_first_adaptation_at_t_cool_plus_one(register_plugin):
    register_plugin(Plugin(), "test-rules")
    records = _drive(DEBAScheduler(rule="always_increase", cooldown=10), 33)
    adapted = [r.epoch for r in records if r.decision != "hold"]
    assert adapted == [11, 22, 33]
    assert {r.reason for r in records if r.decision == "hold"} == {"first epoch", "cooldown"}
    assert [r.batch_size for r in records][9:12] == [64, 96, 96]


def test_cooldown_zero_adapts_every_epoch_after_the_first(register_plugin):
    register_plugin(Plugin(), "test-rules")
    records = _drive(DEBAScheduler(rule="always_increase", cooldown=0), 4)
    assert [r.decision for r in records] == ["hold", "increase", "increase", "increase"]


def test_clamped_decision_still_restarts_cooldown(register_plugin):
    register_plugin(Plugin(), "test-rules")
    records = _drive(DEBAScheduler(rule="always_increase", cooldown=2, max_batch=64), 9)
    assert [r.epoch for r in records if r.decision == "increase"] == [3, 6, 9]
    assert {r.batch_size for r in records} == {64}


def test_rule_only_consulted_outside_cooldown(register_plugin):
    register_plugin(Plugin(), "test-rules")
    Scripted.script = ["hold", "rollback", "increase"]
    records = _drive(DEBAScheduler(rule="scripted", cooldown=1), 5)
    # t=1 first epoch; t=2 rule: hold; t=3 rule: rollback; t=4 cooldown; t=5 rule: increase
    assert [r.decision for r in records] == ["hold", "hold", "rollback", "hold", "increase"]
    assert [r.batch_size for r in records] == [64, 64, 51, 51, 76]
    assert Scripted.script == []


def _random_run(seed, epochs):
    rng = random.Random(seed)
    return [
        (
            rng.uniform(0.5, 2.0),
            [
                torch.randn(50, generator=torch.Generator().manual_seed(seed * 1000 + e))
                * rng.uniform(0.1, 3.0)
            ],
        )
        for e in range(epochs)
    ]


def test_resumed_scheduler_makes_the_same_decisions():
    kwargs = dict(theta_stab=0.5, theta_conf=1.0, cooldown=2, window=4)
    steps = _random_run(3, 40)
    straight = DEBAScheduler(**kwargs)
    expected = [straight.step(loss, grads) for loss, grads in steps]
    assert {r.decision for r in expected} >= {"increase", "rollback"}  # the run exercises both

    first = DEBAScheduler(**kwargs)
    got = [first.step(loss, grads) for loss, grads in steps[:17]]
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = DEBAScheduler(**kwargs)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    got += [resumed.step(loss, grads) for loss, grads in steps[17:]]
    assert got == expected


def test_cap_max_batch_clamps_now_and_later():
    sched = DEBAScheduler(batch_size=512)
    sched.cap_max_batch(300)
    assert sched.batch_size == 300
    assert sched.policy.max_batch == 300
    assert sched.state_dict()["max_batch"] == 300


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (
            dict(theta_stab=-0.1),
            "`theta_stab` = -0.1 is not allowed: it must be a finite number >= 0",
        ),
        (dict(theta_conf=float("nan")), "`theta_conf` = nan is not allowed"),
        (dict(growth=1.0), "`growth` = 1.0 is not allowed: it must be a finite number > 1"),
        (dict(rollback=1.0), "`rollback` = 1.0 is not allowed: it must be a number in (0, 1)"),
        (dict(rollback=0), "`rollback` = 0 is not allowed"),
        (
            dict(min_batch=64, max_batch=32, batch_size=32),
            "`min_batch` = 64 is not allowed: it must be <= max_batch (32)",
        ),
        (
            dict(window=1),
            '`window` = 1 is not allowed: it must be an integer >= 2 (epochs) or "full"',
        ),
        (dict(window="all"), "`window` = 'all' is not allowed"),
        (dict(cooldown=-1), "`cooldown` = -1 is not allowed"),
        (
            dict(batch_size=8),
            "`batch_size` = 8 is not allowed: it must be an integer in [min_batch, max_batch] = [16, 2048]",
        ),
    ],
)
def test_bad_values_name_argument_value_and_allowed(kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        DEBAScheduler(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("loss", "grad", "fragment"),
    [
        (float("nan"), torch.ones(3), "`loss` = nan is not allowed: it must be a finite number"),
        (float("inf"), torch.ones(3), "`loss` = inf is not allowed"),
        (1.0, torch.tensor([1.0, float("inf")]), "`grads` = "),
        (1.0, torch.tensor([1.0, float("nan")]), "must be finite everywhere"),
    ],
)
def test_non_finite_loss_or_gradient_is_refused(loss, grad, fragment):
    sched = DEBAScheduler()
    with pytest.raises(ConfigError, match="not allowed") as info:
        sched.step(loss=loss, grads=[grad])
    assert fragment in str(info.value)
    assert sched.epoch == 0  # nothing was counted


class BadPolicy(Policy):
    name = "bad_policy"

    def update(self, decision, batch_size):
        return batch_size * 100


def test_policy_out_of_bounds_names_the_policy(register_plugin):
    class Reg:
        @hookimpl
        def register_policies(self, register):
            register(BadPolicy)

    register_plugin(Plugin(), "test-rules")
    register_plugin(Reg(), "test-policy")
    sched = DEBAScheduler(rule="always_increase", policy="bad_policy", cooldown=0)
    sched.step(1.0, [torch.ones(2)])
    with pytest.raises(
        Exception, match=r"policy 'bad_policy' returned batch size 6400 .* \[16, 2048\]"
    ):
        sched.step(1.0, [torch.ones(2)])


def test_a_failing_plugin_leaves_the_scheduler_as_it_was(register_plugin):
    register_plugin(Plugin(), "test-rules")
    Scripted.script = ["hold", "sideways"]
    sched = DEBAScheduler(rule="scripted", cooldown=0)
    sched.step(2.0, _variance_grads(1.0))
    sched.step(1.0, _variance_grads(4.0))
    before = sched.state_dict()
    with pytest.raises(Exception, match="rule 'scripted' returned 'sideways' at epoch 3"):
        sched.step(0.5, _variance_grads(9.0))
    assert sched.state_dict() == before
    Scripted.script = ["increase"]  # the plugin fixed: the same epoch goes through
    assert sched.step(0.5, _variance_grads(9.0)).epoch == 3


def test_under_three_processes_every_size_is_a_multiple_of_three_inside_the_bounds(
    register_plugin,
):
    """docs/cluster.md with min_batch 16: rolling back from 18 gives 14, clamped to 16, and rounding
    down to 15 would leave the bounds, so the size stays at 18, the smallest multiple inside."""
    register_plugin(Plugin(), "test-rules")
    Scripted.script = ["rollback", "rollback"]
    sched = DEBAScheduler(batch_size=21, rule="scripted", cooldown=0, world_size=3, min_batch=16)
    sizes = [record.batch_size for record in _drive(sched, 3)]
    assert sizes == [21, 18, 18]  # hold; 21·0.8 = 16 → 15 → 18; 18·0.8 = 14 → 16 → 15 → 18
    with pytest.raises(
        ConfigError,
        match=r"`world_size` = 5 is not allowed: it must be a divisor "
        r"of some batch size in \[min_batch, max_batch\] = "
        r"\[16, 19\]",
    ):
        DEBAScheduler(batch_size=16, world_size=5, min_batch=16, max_batch=19)
