"""Verdicts that chance cannot make: no outcome below three seeds, outcomes where the intervals
decide them, and modelled-speedup intervals that carry the step-time table's own noise."""

import math

import pytest

from deba_pipeline.report.comparison import compare
from deba_pipeline.report.held import prediction_held
from deba_pipeline.report.outcome import MIN_SEEDS

from helpers import record_of

TRAIN_SIZE = 1000


def _record(method, seed, accuracy, sizes, seconds_a_step=0.01):
    epochs = [
        {
            "epoch": i + 1,
            "batch_size": b,
            "decision": "hold",
            "steps": TRAIN_SIZE // b,
            "epoch_time_s": TRAIN_SIZE // b * seconds_a_step,
            "samples": TRAIN_SIZE // b * b,
        }
        for i, b in enumerate(sizes)
    ]
    for before, after in zip(epochs, epochs[1:]):
        if after["batch_size"] > before["batch_size"]:
            before["decision"] = "increase"
    return record_of(method, seed, epochs, accuracy)


def _cell(fixed_acc, method_acc, method_sizes=(64, 96, 96, 96), steptime=None):
    seeds = range(len(fixed_acc))
    records = [_record("fixed", s, a, (64,) * 4) for s, a in zip(seeds, fixed_acc)] + [
        _record("deba", s, a, method_sizes) for s, a in zip(seeds, method_acc)
    ]
    return compare(records, steptime=steptime)[("a", "d")]


def test_two_seeds_that_tie_give_no_outcome():
    # both seeds lost exactly one point: an interval of zero width, decided by a tie
    cell = _cell([98.0, 97.0], [97.0, 96.0])
    assert cell.delta_acc_ci == (-1.0, -1.0)
    assert MIN_SEEDS == 3
    assert cell.outcome == "too few seeds"
    held, why = prediction_held("benefit", cell)
    assert held == "n/a"
    assert "2 seeds: an outcome needs at least 3" in why


def test_five_seeds_beyond_doubt_give_an_outcome():
    fixed = [98.0, 97.5, 98.2, 97.8, 98.1]
    cell = _cell(fixed, [a - 5.0 + 0.1 * i for i, a in enumerate(fixed)])
    assert cell.outcome == "degraded"
    faster = _cell(fixed, [a + 0.5 + 0.1 * i for i, a in enumerate(fixed)])
    assert faster.outcome == "benefit"  # 96 a step: fewer steps, each no slower here


def test_a_cell_whose_seeds_took_one_schedule_is_as_wide_as_its_table_noise():
    table = {
        "step_s": {"64": 0.010, "96": 0.012},
        "epoch_start_s": {"64": 0.0, "96": 0.0},
        "ratio_error": {"64": 0.0, "96": 0.05},
    }
    cell = _cell([98.0, 97.5, 98.2], [98.1, 97.6, 98.3], steptime={"a": {"d": table}})
    assert len(set(cell.model_speedups)) == 1  # one schedule: no spread over seeds
    noise = cell.model_speedup_table_noise
    low, high = cell.model_speedup_ci
    assert noise > 0
    assert high - low == pytest.approx(2 * noise)
    # by hand: the method's 96-epochs are 3 × 10 steps × 0.012 s of a fixed run's 4 × 15 × 0.01;
    # d speedup / d ln(step_96) = -100 × 0.36 / 0.6 = -60 points, times its 5% error, at 90%
    assert noise == pytest.approx(1.6448536 * 60 * 0.05, rel=1e-6)


SEEN = """
from pathlib import Path
from deba_pipeline import Signal, hookimpl
class Seen(Signal):
    name = 'seen'
    def compute(self, obs):
        with Path({log!r}).open('a') as f:
            f.write(f"{{obs.epoch}} {{obs.dataset_size}}\\n")
        return 1.0
@hookimpl
def register_signals(register):
    register(Seen)
"""


def _seen_spec(tmp_path, processes):
    from helpers import tiny_spec

    plugin = tmp_path / "seen.py"
    plugin.write_text(SEEN.format(log=str(tmp_path / f"seen-{processes}.txt")))
    return tiny_spec(
        train={"epochs": 2, "processes": processes},
        deba={
            "plugins": [str(plugin)],
            "signals": ["grad_variance", "grad_norm_variation", "loss_variation", "seen"],
        },
    )


def _sizes_seen(tmp_path, processes):
    lines = (tmp_path / f"seen-{processes}.txt").read_text().split("\n")
    return [tuple(int(v) for v in line.split()) for line in lines if line]


def test_the_loop_hands_the_signals_its_training_set_size(tmp_path):
    from deba_pipeline.engine.loop import Trainer

    trainer = Trainer(_seen_spec(tmp_path, 1), tmp_path / "state")
    trainer.run(progress=False)
    assert trainer.data.train_size == 1438  # digits: 1,797 images less 359 for testing
    assert _sizes_seen(tmp_path, 1) == [(1, 1438), (2, 1438)]


@pytest.mark.slow
def test_two_processes_hand_the_signals_the_whole_training_set_not_a_share(tmp_path):
    from deba_pipeline.execution.one_run import train

    train(_seen_spec(tmp_path, 2), state_dir=tmp_path / "state", progress=False)
    # every rank steps the scheduler alike, each with the whole set's size, never its share
    assert sorted(set(_sizes_seen(tmp_path, 2))) == [(1, 1438), (2, 1438)]


def _curve(method, seed, accuracies, seconds=1.0, classes=10):
    epochs = [
        {"epoch": i + 1, "batch_size": 64, "test_accuracy": a, "epoch_time_s": seconds}
        for i, a in enumerate(accuracies)
    ]
    return record_of(method, seed, epochs, accuracies[-1], num_classes=classes)


def test_time_to_accuracy_is_interpolated_within_the_epoch_that_crosses_the_target():
    from deba_pipeline.report.time_to_accuracy import time_to

    run = _curve("deba", 2, [50.0, 80.0, 90.0], seconds=2.0)
    # 70% lies two thirds of the way from 50 to 80 in the second epoch: 2 + 2 × 2/3 seconds
    assert time_to(run, 70.0)[1] == pytest.approx(2 + 4 / 3)
    # in the first epoch, from chance (10%) at time 0: 20% is a quarter of the way to 50
    assert time_to(run, 20.0)[1] == pytest.approx(0.5)
    assert time_to(run, 95.0) == (None, None)


def test_a_seed_that_never_reaches_its_target_is_censored_and_named():
    from deba_pipeline.report.time_to_accuracy import rows

    records = [
        _curve("fixed", 2, [80.0, 90.0]),
        _curve("fixed", 42, [80.0, 92.0]),
        _curve("deba", 2, [85.0, 91.0]),
        _curve("deba", 42, [70.0, 80.0]),
    ]
    fixed, deba = rows(records, None, tolerance=0.5)
    assert deba["Reached"] == "1 of 2 seeds"
    assert deba["Censored"] == "seed 42 (not reached in 2.0 s)"
    assert deba["Targets (%)"] == "seed 2: 89.50, seed 42: 91.50"
    assert fixed["Censored"] == "none"


def test_a_faster_method_of_equal_accuracy_is_a_benefit_within_the_margin():
    fixed = [98.0, 97.5, 98.2, 97.8, 98.1]
    method = [a + d for a, d in zip(fixed, (0.3, -0.3, 0.0, 0.2, -0.2))]  # ΔAcc 0 ± 0.25
    records = [_record("fixed", s, a, (64,) * 4) for s, a in enumerate(fixed)] + [
        _record("deba", s, a, (64, 96, 96, 96)) for s, a in enumerate(method)
    ]
    assert compare(records)[("a", "d")].outcome == "benefit"  # δ = 1 point by default
    strict = compare(records, margin=0.0)[("a", "d")]  # "ΔAcc ≥ 0": equal can never be shown
    assert strict.outcome == "inconclusive"
    assert strict.seeds_needed is None


def test_a_speedup_interval_is_read_on_the_log_of_the_time_ratio_and_stays_below_100():
    from deba_pipeline.report.intervals import speedup_interval

    # seeds at 20% and 40%: ln 0.8 and ln 0.6, mean −0.366985, std 0.203422, t(0.95, 1) = 6.3138
    half = 6.313751514675043 * 0.20342194 / math.sqrt(2)
    low, high = speedup_interval([20.0, 40.0])
    assert (low, high) == pytest.approx(
        (100 * (1 - math.exp(-0.3669845 + half)), 100 * (1 - math.exp(-0.3669845 - half))), rel=1e-5
    )
    assert high < 100  # the plain t interval of the speedups reads 30 ± 63.1: up to 93.1
    assert speedup_interval([90.0, -50.0])[1] < 100  # spread seeds: never a negative time
    assert speedup_interval([20.0]) is None
    assert speedup_interval([100.0, 20.0]) is None


def _hits(*bits):
    import numpy as np

    return np.array(bits, dtype=bool)


def test_the_test_set_term_of_a_paired_delta_acc_is_worked_by_hand():
    from deba_pipeline.report.intervals import test_set_terms

    # one seed: per-sample right-minus-wrong 0, -1, +1, +1, 0 (McNemar: 1 lost, 2 gained);
    # its sample variance 0.7, so the mean's standard error is 100·√(0.7 / 5)
    se, spread = test_set_terms([_hits(1, 1, 0, 0, 1)], [_hits(1, 0, 1, 1, 1)])
    assert se == pytest.approx(100 * math.sqrt(0.7 / 5))
    assert spread == pytest.approx(se)
    # two seeds whose gains and losses cancel sample by sample: the mean is 0 on every sample
    se, spread = test_set_terms([_hits(1, 0, 1), _hits(0, 1, 1)], [_hits(0, 1, 1), _hits(1, 0, 1)])
    assert se == 0.0
    assert spread == pytest.approx(100 * math.sqrt(1.0 / 3))
    assert test_set_terms([_hits(1, 0)], [None]) is None  # a record without its results
    assert test_set_terms([_hits(1, 0)], [_hits(1, 0, 1)]) is None  # another test set


def test_a_delta_acc_interval_floors_the_seeds_spread_and_adds_the_test_set_term():
    from deba_pipeline.report.intervals import delta_interval

    t2 = 2.919986  # Student t, 2 degrees of freedom, 95th percentile
    assert delta_interval([-1.0, -1.0, -1.0]) == (-1.0, -1.0)  # a tie: zero width by itself
    low, high = delta_interval([-1.0, -1.0, -1.0], floor=0.6)
    assert high - low == pytest.approx(2 * t2 * 0.6 / math.sqrt(3), rel=1e-6)
    low, high = delta_interval([-1.0, -1.0, -1.0], floor=0.6, test_se=0.5)
    assert high - low == pytest.approx(
        2 * math.hypot(t2 * 0.6 / math.sqrt(3), 1.6448536 * 0.5), rel=1e-6
    )
    # a spread above the floor is kept: 0, -1, -2 has a standard deviation of 1
    low, high = delta_interval([0.0, -1.0, -2.0], floor=0.6)
    assert (low + high) / 2 == pytest.approx(-1.0)
    assert high - low == pytest.approx(2 * t2 / math.sqrt(3), rel=1e-6)


def test_the_study_pools_its_cells_spreads_into_each_cells_floor():
    from deba_pipeline.report.comparison import pooled_delta_spread
    from deba_pipeline.report.intervals import pooled_spread

    # variances 1 (on 2 degrees of freedom) and 2 (on 1), pooled: (2·1 + 1·2) / 3; one value
    # alone has no spread to pool
    assert pooled_spread([[0.0, 1.0, 2.0], [0.0, 2.0], [5.0]]) == pytest.approx(math.sqrt(4 / 3))
    records = [_record("fixed", s, 98.0, (64,) * 4) for s in range(3)] + [
        _record("deba", s, a, (64,) * 4) for s, a in zip(range(3), (97.0, 97.0, 97.0))
    ]
    tied = compare(records, floor=pooled_delta_spread(records))[("a", "d")]
    assert tied.delta_acc_ci == (-1.0, -1.0)  # the only cell: nothing to pool but a tie
    other = [
        {**_record("deba", s, a, (64,) * 4), "variant": "cooldown2"}
        for s, a in zip(range(3), (97.0, 98.0, 99.0))
    ]  # ΔAcc −1, 0, +1: spread 1
    floor = pooled_delta_spread(records + other)
    assert floor == pytest.approx(math.sqrt(2 * 1.0 / 4))  # pooled over 2 + 2 dof
    low, high = compare(records + other, floor=floor)[("a", "d")].delta_acc_ci
    assert high - low == pytest.approx(2 * 2.919986 * floor / math.sqrt(3), rel=1e-6)


def test_a_record_keeps_which_test_samples_its_final_evaluation_got_right(tmp_path):
    from deba_pipeline.core.record import unpack_hits
    from deba_pipeline.engine.loop import Trainer

    from helpers import tiny_spec

    record = Trainer(tiny_spec(train={"epochs": 2}), tmp_path / "state").run(progress=False)
    hits = unpack_hits(record)
    assert hits.size == 359
    assert 100.0 * hits.sum() / 359 == record["final_test_accuracy"]
    assert len(record["test_hits"]["bits"]) == 60  # 359 bits: 45 bytes, 60 in base64
    # results that do not give the record's own accuracy are not read
    assert unpack_hits({**record, "final_test_accuracy": record["final_test_accuracy"] + 1}) is None
