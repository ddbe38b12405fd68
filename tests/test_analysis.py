"""The report's computations (docs/method.md, docs/pipeline.md) pinned to values worked out by hand."""

from dataclasses import replace

import pytest

from deba_pipeline.config import TaxonomyConfig
from deba_pipeline.core.errors import DebaError
from deba_pipeline.report.analysis import (
    aggressiveness,
    calibrate,
    classify,
    convergence_stability,
    predict,
    profile_summary,
    stability_score,
)
from deba_pipeline.report.cell import Cell
from deba_pipeline.report.comparison import compare
from deba_pipeline.report.held import prediction_held
from deba_pipeline.report.modelled import clock_noise, modelled_time

from helpers import record_of

BOUNDS = vars(TaxonomyConfig())
EPS = 1e-8


def profile(seed, variances, norm_vars, loss_vars, losses, norm_variation=None, arch="a"):
    norm_variation = norm_variation or [None] * len(variances)
    epochs = [
        {
            "epoch": i + 1,
            "batch_size": 64,
            "train_loss": loss,
            "grad_norm_var": nv,
            "loss_var": lv,
            "decision": "hold",
            "signals": {"grad_variance": v, "grad_norm_variation": dn},
        }
        for i, (v, nv, lv, loss, dn) in enumerate(
            zip(variances, norm_vars, loss_vars, losses, norm_variation)
        )
    ]
    return {
        "schema": 2,
        "arch": arch,
        "dataset": "d",
        "seed": seed,
        "method": "fixed",
        "variant": "profile",
        "epochs": epochs,
    }


# S = 1 / (1 + CV(σ²) + mean Var(‖∇L‖) + mean Var(L))
HALF = profile(2, [1.0, 3.0], [0.2, 0.4], [0.1, 0.3], [2.0, 1.0])  # 1 / (1 + 0.5 + 0.3 + 0.2)
QUARTER = profile(42, [1.0, 3.0], [1.5, 1.5], [1.0, 1.0], [1.0, 1.0])  # 1 / (1 + 0.5 + 1.5 + 1)


def test_stability_score_and_convergence_stability_by_hand():
    assert stability_score(HALF) == pytest.approx(0.5, rel=1e-12)
    assert stability_score(QUARTER) == pytest.approx(0.25, rel=1e-12)
    assert convergence_stability(HALF) == pytest.approx(0.5)  # pstdev(2, 1)
    assert convergence_stability(QUARTER) == 0.0


def test_profile_summary_by_hand():
    summary = profile_summary([QUARTER, HALF], BOUNDS)["a"]["d"]
    assert summary["S"] == {2: pytest.approx(0.5), 42: pytest.approx(0.25)}
    assert summary["mu_S"] == pytest.approx(0.375)
    assert summary["sigma_S"] == pytest.approx(0.17677669529663687)  # stdev(0.5, 0.25), ddof 1
    assert summary["convergence_stability"] == pytest.approx(0.25)  # mean of 0.5 and 0
    assert summary["class"] == "dynamically stable"  # σ_S > 0.15 comes first
    assert summary["prediction"] == "benefit through rollbacks, seed-sensitive"


@pytest.mark.parametrize(
    ("mu", "sigma", "expected"),
    [
        (0.50, 0.16, "dynamically stable"),
        (0.50, 0.15, "moderately stable"),  # σ_S = 0.15 is not > 0.15
        (0.20, None, "naturally unstable"),  # one seed: no σ_S
        (0.26, 0.0, "intermediate"),  # μ_S = 0.26 is not < 0.26
        (0.44, 0.0, "intermediate"),
        (0.45, 0.0, "moderately stable"),
        (0.54, 0.0, "moderately stable"),  # μ_S = 0.54 is not > 0.54
        (0.5401, 0.0, "overly stable"),
    ],
)
def test_classify_in_spec_order(mu, sigma, expected):
    assert classify(mu, sigma, BOUNDS) == expected


@pytest.mark.parametrize(
    ("cls", "convergence", "expected"),
    [
        ("moderately stable", 0.9, "benefit"),
        ("overly stable", 0.19, "benefit"),
        ("overly stable", 0.20, "marginal"),  # stagnation bound 0.20 is not < 0.20
        ("dynamically stable", 0.0, "benefit through rollbacks, seed-sensitive"),
        ("naturally unstable", 0.0, "unreliable, seed-dependent"),
        ("intermediate", 0.0, "no prediction (intermediate)"),
    ],
)
def test_predict(cls, convergence, expected):
    assert predict(cls, convergence, BOUNDS) == expected


def comparison(acc_fixed, acc_method, speedup, rollbacks=0, speedups=None, test_spread=None):
    """A cell as comparison._cell makes it: every seed at `speedup` unless `speedups` says."""
    from deba_pipeline.report.intervals import t_interval
    from deba_pipeline.report.outcome import outcome

    deltas = [b - a for a, b in zip(acc_fixed, acc_method)]
    speedups = speedups or [speedup] * len(deltas)
    c = Cell(
        seeds=list(range(len(deltas))),
        acc_fixed=acc_fixed,
        acc_method=acc_method,
        delta_accs=deltas,
        delta_acc=sum(deltas) / len(deltas),
        delta_acc_ci=t_interval(deltas),
        verdict_speedup=sum(speedups) / len(speedups),
        verdict_speedups=speedups,
        verdict_speedup_ci=t_interval(speedups),
        speedup_basis="modelled",
        rollback=rollbacks,
        test_spread=test_spread,
    )
    return replace(c, outcome=outcome(c))


@pytest.mark.parametrize(
    ("prediction", "c", "expected"),
    [
        ("benefit", comparison([80] * 3, [81] * 3, 10.0), "yes"),  # ΔAcc ≥ 0, faster
        ("benefit", comparison([80] * 3, [79.5] * 3, 10.0), "yes"),  # within δ = 1
        ("benefit", comparison([80] * 3, [78.5] * 3, 10.0), "no"),  # ΔAcc < −δ
        ("benefit", comparison([80] * 3, [81] * 3, -1.0), "no"),  # slower
        ("benefit", comparison([80] * 2, [81] * 2, 10.0), "n/a"),  # two seeds: no call
        ("marginal", comparison([80] * 3, [79.5] * 3, 30.0), "yes"),  # within a point
        ("marginal", comparison([80] * 3, [78] * 3, 30.0), "no"),  # fell by 2 points
        ("marginal", comparison([80] * 3, [81] * 3, 9.9), "yes"),  # a small benefit
        ("marginal", comparison([80] * 3, [81] * 3, 10.0), "no"),  # a clear benefit
        # ΔAcc +1, +3.5, +6 (std 2.5): its spread's 90% lower bound, 1.65, is above the line of 1
        (
            "benefit through rollbacks, seed-sensitive",
            comparison([80] * 3, [81, 83.5, 86], 5.0, 2),
            "yes",
        ),
        # ΔAcc +1 with seeds at −1, +3, +1: its interval [−2.4, +4.4] decides nothing
        (
            "benefit through rollbacks, seed-sensitive",
            comparison([80] * 3, [79, 83, 81], 5.0, 2),
            "inconclusive",
        ),
        (
            "benefit",
            comparison([80] * 3, [80.5] * 3, 1.9, speedups=[-21.4, 25.2, 1.9]),
            "inconclusive",
        ),
        (
            "benefit through rollbacks, seed-sensitive",
            comparison([80] * 3, [79, 83, 81], 5.0, 0),
            "no",
        ),
        (
            "benefit through rollbacks, seed-sensitive",
            comparison([80] * 3, [81, 81.2, 81.1], 5.0, 2),
            "no",
        ),
        ("benefit through rollbacks, seed-sensitive", comparison([80], [81], 5.0, 2), "n/a"),
        # std 2: its spread lies in [1.32, 6.16] (90% one-sided bounds, chi-square on 2 dof)
        ("unreliable, seed-dependent", comparison([80] * 3, [78, 82, 80], 5.0), "yes"),
        # std 1.5: [0.99, 4.62] straddles the line of 1, though the point is above it
        ("unreliable, seed-dependent", comparison([80] * 3, [79, 82, 80.5], 5.0), "inconclusive"),
        # seeds that disagree in sign, std 0.35: [0.23, 1.08], no call
        (
            "unreliable, seed-dependent",
            comparison([80] * 3, [79.8, 80.5, 80.2], 5.0),
            "inconclusive",
        ),
        ("unreliable, seed-dependent", comparison([80] * 3, [80.5, 80.6, 80.55], 5.0), "no"),
        # std 2 where the test set alone explains a spread of 3: the line moves to 3
        (
            "unreliable, seed-dependent",
            comparison([80] * 3, [78, 82, 80], 5.0, test_spread=3.0),
            "inconclusive",
        ),
        ("no prediction (intermediate)", comparison([80] * 3, [81] * 3, 5.0), "n/a"),
    ],
)
def test_prediction_check(prediction, c, expected):
    held, why = prediction_held(prediction, c, seed_spread=1.0)
    assert held == expected
    assert why.startswith(f"ΔAcc {c.delta_acc:+.2f} ")


def test_prediction_check_says_why():
    assert prediction_held("marginal", comparison([80] * 3, [78] * 3, 30.0)) == (
        "no",
        "ΔAcc -2.00 [-2.00, -2.00], modelled speedup 30.0% [30.0, 30.0]: marginal needs "
        "ΔAcc ≥ −1 and no clear benefit (ΔAcc ≥ 0 with a speedup ≥ 10%)",
    )


def test_a_t_interval_and_the_seeds_a_verdict_needs_by_hand():
    from deba_pipeline.report.intervals import seeds_needed, seeds_needed_range, t_interval

    # [1, 3]: mean 2, std √2, t(0.95, 1 dof) = 6.3138: 2 ± 6.3138·√2/√2
    low, high = t_interval([1.0, 3.0])
    assert (low, high) == (pytest.approx(2 - 6.313752), pytest.approx(2 + 6.313752))
    assert t_interval([1.0]) is None
    # at 80% power: (t(0.95, n−1) + t(0.80, n−1))·√2/√n ≤ 2: n = 4 gives (2.3534 + 0.9785)
    # ·√2/2 = 2.36, n = 5 gives (2.1318 + 0.9410)·√2/√5 = 1.94
    assert seeds_needed([1.0, 3.0], 0.0) == 5
    # the true spread within its 80% interval from one degree of freedom: √2·√(1/2.706) = 0.86
    # to √2·√(1/0.0158) = 11.3; the fewest (n = 3: (2.920 + 1.061)·0.86/√3 = 1.98 ≤ 2) and the
    # most (n = 198: (1.6526 + 0.8430)·11.25/√198 = 1.996; n = 197 gives 2.001)
    assert seeds_needed_range([1.0, 3.0], 0.0) == (3, 198)
    assert seeds_needed([1.0], 0.0) is None
    assert seeds_needed([2.0, 2.0], 2.0) is None


def test_a_modelled_speedup_of_1_9_plus_minus_23_on_three_seeds_is_inconclusive():
    c = comparison([80] * 3, [80.5] * 3, 1.9, speedups=[-21.4, 25.2, 1.9])
    assert c.outcome == "inconclusive"  # once called "marginal"


def run(method, seed, sizes, seconds, steps=None):
    return record_of(
        method,
        seed,
        [
            {
                "epoch": i + 1,
                "batch_size": b,
                "epoch_time_s": t,
                "decision": "hold",
                "steps": None if steps is None else steps[i],
                "samples": None if steps is None else steps[i] * b,
                "signals": {},
            }
            for i, (b, t) in enumerate(zip(sizes, seconds))
        ],
    )


STEPTIME = {"a": {"d": {"step_s": {"64": 0.010, "96": 0.012}}}}


def test_modelled_time_is_steps_times_the_table():
    r = run("deba", 2, [64, 96, 96], [1.0, 1.0, 1.0], steps=[22, 14, 14])
    assert modelled_time(r, STEPTIME) == pytest.approx(22 * 0.010 + 2 * 14 * 0.012)
    assert modelled_time(run("deba", 2, [64, 144], [1, 1], steps=[22, 9]), STEPTIME) is None
    assert modelled_time(run("deba", 2, [64], [1.0]), STEPTIME) is None  # no steps: schema 1
    assert modelled_time(r, {}) is None
    # each epoch's own start at its size (the permutation, the loader's first batch) is added
    started = {"a": {"d": {**STEPTIME["a"]["d"], "epoch_start_s": {"64": 0.003, "96": 0.001}}}}
    assert modelled_time(r, started) == pytest.approx(22 * 0.010 + 0.003 + 2 * (14 * 0.012 + 0.001))


def test_clock_noise_is_the_spread_of_epoch_times_after_the_first():
    r = run("fixed", 2, [64] * 4, [9.0, 1.0, 1.2, 0.8])  # the first epoch warms up
    assert clock_noise(r) == pytest.approx(0.16329931618554522)  # pstdev(1, 1.2, .8) / 1


def test_modelled_speedup_ignores_a_disturbed_clock():
    fixed = run("fixed", 2, [64] * 3, [1.0, 1.0, 1.0], steps=[22] * 3)
    calm = run("deba", 2, [64, 96, 96], [1.0, 0.8, 0.8], steps=[22, 14, 14])
    disturbed = run("deba", 2, [64, 96, 96], [3.0, 2.4, 2.4], steps=[22, 14, 14])
    a = compare([fixed, calm], steptime=STEPTIME)[("a", "d")]
    b = compare([fixed, disturbed], steptime=STEPTIME)[("a", "d")]
    expected = 100 * (1 - (0.22 + 2 * 0.168) / (3 * 0.22))
    assert a.model_speedup_mean == b.model_speedup_mean == pytest.approx(expected)
    assert a.speedup_mean == pytest.approx(100 * (1 - 2.6 / 3))
    assert b.speedup_mean == pytest.approx(100 * (1 - 7.8 / 3))
    assert b.disagree is True
    assert b.verdict_speedup == b.model_speedup_mean
    # three epochs, two decisions that took effect: the last epoch's changes nothing
    assert (a.increase, a.rollback, a.hold, a.batch_min, a.batch_max) == (0, 0, 2, 64, 96)
    assert a.samples_per_s_method == pytest.approx((22 * 64 + 28 * 96) / 2.6)


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        (("increase", "increase", "rollback", "hold"), 1 / 3),
        # the last epoch's rollback takes no effect: no epoch follows it
        (("increase", "increase", "hold", "rollback"), 1.0),
        (("hold",), 0.0),
    ],
)
def test_aggressiveness_counts_the_decisions_that_took_effect(decisions, expected):
    assert aggressiveness({"epochs": [{"decision": d} for d in decisions]}) == pytest.approx(
        expected
    )


def test_calibrate_by_hand():
    # window 2. Run A: c = 1/(1+ε), 2/(1.5+ε), 4/(3+ε); run B: 2/(2+ε), 6/(4+ε).
    a = profile(2, [1.0, 2.0, 4.0], [0, 0, 0], [0, 0, 0], [1, 1, 1], [None, 0.1, 0.3])
    b = profile(42, [2.0, 6.0], [0, 0], [0, 0], [1, 1], [None, 0.5])
    out = calibrate([a, b], window=2)["a"]["d"]
    # median of the five c_t: sorted 1, 1, 4/3, 4/3, 3/2 (each less a hair of ε)
    assert out["theta_conf"] == pytest.approx(2 / (1.5 + EPS), rel=1e-12)
    # 75th percentile of Δ‖∇‖ pooled (0.1, 0.3, 0.5), numpy's linear rule: 0.3 + 0.5·0.2
    assert out["theta_stab"] == pytest.approx(0.4, rel=1e-12)
    assert (out["epochs"], out["runs"]) == (5, 2)
    full = calibrate([a, b], window="full")["a"]["d"]  # run A's third c_t becomes 4/(2+ε)
    assert full["theta_conf"] == pytest.approx(2 / (1.5 + EPS), rel=1e-12)


def test_calibrate_without_a_defined_variation_is_a_clear_error():
    one_epoch = profile(2, [1.0], [0], [0], [1])
    with pytest.raises(
        DebaError,
        match="cannot calibrate a/d: its profile runs have no epoch with a defined Δ‖∇‖ and c_t",
    ):
        calibrate([one_epoch], window=2)
