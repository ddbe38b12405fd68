"""The progress model, the replay and the trace reader (docs/method.md "prediction"), against
values worked by hand; the profile's noise-scale parts; the predict stage's refusals."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from deba_pipeline.core.errors import DebaError
from deba_pipeline.core.signals.gradient_noise_scale import noise_parts
from deba_pipeline.engine.loop import Trainer
from deba_pipeline.engine.sums import StepSums
from deba_pipeline.prediction.check import band, beside, own_curve, what_broke
from deba_pipeline.prediction.model import NoiseCurve, progress_after, step_gain, steps_between
from deba_pipeline.prediction.replay import (
    Epoch,
    accuracy_at,
    epoch_seconds,
    progress_at_accuracy,
    progress_at_end,
    time_to_progress,
)
from deba_pipeline.prediction.strategies import gns_rule, simulate
from deba_pipeline.prediction.traces import noise_curve, read_trace, read_workload
from deba_pipeline.stages import predict

from helpers import tiny_spec

CURVE = NoiseCurve(10, (100.0, 300.0), (10.0, 30.0))  # r at 20: 4/3, then 1.6


def test_a_steps_gain_follows_adascale_and_the_learning_rate_it_trains_at():
    # N = 192 at B₀ = 64, B = 128, no transfer: r = (1 + 3)/(1 + 1.5) = 1.6
    assert step_gain(192, 128, 64, None, 0.0) == pytest.approx(1.6)
    assert step_gain(192, 128, 64, 1.0, 0.0) == pytest.approx(2 - 1 / 1.6)  # rate kept: 1.375
    assert step_gain(192, 128, 64, math.sqrt(2), 0.0) == pytest.approx(2 * math.sqrt(2) - 1.25)
    assert step_gain(192, 128, 64, 4.0, 0.0) == 0.0  # a rate beyond 2r makes no progress
    assert step_gain(192, 64, 64, 1.0, 0.38) == pytest.approx(1.0)  # the base batch: 1
    # transfer 0.5: the noise a batch of 2·B₀ sees is 192·√2
    n = 192 * math.sqrt(2)
    assert step_gain(192, 128, 64, None, 0.5) == pytest.approx((1 + n / 64) / (1 + n / 128))
    assert step_gain(math.inf, 128, 64, None) == 2.0  # |G|² measured 0: r = B/B₀


def test_steps_and_progress_cross_the_profiles_epochs_piece_by_piece():
    # 100 base steps at r = 4/3 take 75 steps, 200 at 1.6 take 125, 40 more beyond at 1.6: 25
    assert steps_between(CURVE, 20, 0.0, 340.0, None, 0.0) == pytest.approx(225.0)
    assert progress_after(CURVE, 20, 0.0, 225.0, None, 0.0) == pytest.approx(340.0)
    assert progress_after(CURVE, 20, 50.0, 10.0, None, 0.0) == pytest.approx(50 + 40 / 3)
    assert steps_between(CURVE, 20, 0.0, 50.0, 4.0, 0.0) == math.inf  # stalled


def test_a_trajectory_replayed_on_a_table_reaches_its_target_progress_when_worked_by_hand():
    table = {"step_s": {"10": 1.0, "20": 1.5}}
    # the fixed batch of 10 on 200 samples: 20 steps, 20 progress and 20 s an epoch: 50 in 50 s
    assert time_to_progress(CURVE, [Epoch(10, 1.0)], table, 200, 50.0, 0.0) == pytest.approx(50)
    # batch 20 at AdaScale's rate: 10 steps of 4/3 = 13.3 progress in 15 s; 50 in 3.75 epochs
    assert time_to_progress(CURVE, [Epoch(20, None)], table, 200, 50.0, 0.0) == pytest.approx(56.25)
    # the rate kept: 10 steps of 2 − 3/4 = 1.25 a step, 12.5 an epoch: 4 epochs, 60 s
    assert time_to_progress(CURVE, [Epoch(20, 1.0)], table, 200, 50.0, 0.0) == pytest.approx(60)


def test_a_size_between_two_measured_ones_takes_the_line_between_them():
    table = {"step_s": {"64": 1.0, "96": 2.0}, "epoch_start_s": {"64": 0.0, "96": 0.4}}
    assert epoch_seconds(table, 76, 10) == pytest.approx(10 * (1 + 12 / 32) + 0.4 * 12 / 32)
    with pytest.raises(KeyError, match="no batch size 144 \\(it holds 64..96\\)"):
        epoch_seconds(table, 144, 10)


def test_the_target_progress_is_interpolated_within_the_epoch_that_crosses_it():
    record = {
        "num_classes": 10,
        "epochs": [{"test_accuracy": 50.0, "steps": 20}, {"test_accuracy": 90.0, "steps": 20}],
    }
    assert progress_at_accuracy(record, 30.0) == pytest.approx(20 * (30 - 10) / (50 - 10))
    assert progress_at_accuracy(record, 70.0) == pytest.approx(30.0)
    assert progress_at_accuracy(record, 95.0) is None


def test_the_accuracy_risk_reads_the_profiles_accuracy_where_a_trajectory_ends():
    record = {
        "num_classes": 10,
        "epochs": [{"test_accuracy": 50.0, "steps": 20}, {"test_accuracy": 90.0, "steps": 20}],
    }
    assert accuracy_at(record, 10.0) == pytest.approx(30.0)  # half way from chance to 50
    assert accuracy_at(record, 30.0) == pytest.approx(70.0)
    assert accuracy_at(record, 99.0) == 90.0  # beyond its end: its last
    # batch 20 at the rate kept over 200 samples: 10 steps of 1.25 an epoch (CURVE, r = 4/3)
    assert progress_at_end(CURVE, [Epoch(20, 1.0)] * 2, 200, 0.0) == pytest.approx(25.0)


def test_the_gns_rule_is_simulated_under_the_schedulers_cooldown():
    deba = OmegaConf.create(
        {
            "cooldown": 3,
            "window": 5,
            "growth": 1.5,
            "rollback": 0.8,
            "min_batch": 16,
            "max_batch": 2048,
            "policy_options": {},
        }
    )
    high = NoiseCurve(64, (22.0 * 64,), (1000.0,))
    batches = [e.batch for e in simulate(high, deba, 12, 1438, gns_rule(deba), 0.0)]
    assert batches == [64] * 4 + [96] * 4 + [144] * 4  # as every gns run on digits took
    low = NoiseCurve(64, (22.0 * 64,), (10.0,))
    assert [e.batch for e in simulate(low, deba, 6, 1438, gns_rule(deba), 0.0)] == [64] * 4 + [
        51
    ] * 2
    # two processes: every batch a multiple of 2, as the scheduler fits it (51 → 50)
    assert [e.batch for e in simulate(low, deba, 6, 1438, gns_rule(deba), 0.0, world=2)] == [
        64
    ] * 4 + [50] * 2


def test_the_predict_stage_measures_only_the_sizes_a_strategy_can_reach():
    from helpers import tiny_cfg

    cfg = tiny_cfg(
        train={"epochs": 12},
        deba={"cooldown": 3},
        study={"methods": {"deba": {}, "slow": {"cooldown": 5}}},
    )
    # cooldown 3 over 12 epochs: changes at epochs 2, 6 and 10 at the most: three steps
    assert predict.reachable(cfg).deba.min_batch == 32
    assert predict.reachable(cfg).deba.max_batch == 216
    assert predict.reachable(cfg).timing.sizes == "ladder"


def test_a_runs_own_noise_scale_becomes_a_curve_over_its_own_progress():
    run = {
        "config": {"train": {"lr": 0.1}},
        "epochs": [
            {"batch_size": 20, "lr": 0.1, "steps": 10, "signals": {"gradient_noise_scale": 20.0}}
        ],
    }
    # r = (1 + 20/10)/(1 + 20/20) = 1.5; the rate kept: 2 − 1/1.5 a step, 10 steps
    curve = own_curve(run, 10, transfer=0.0)
    assert curve.ends == pytest.approx((10 * (2 - 1 / 1.5),))
    assert curve.noise == (20.0,)
    assert own_curve(run, 10, transfer=1.0).noise == (10.0,)  # 20 measured at 2·B₀
    run["epochs"][0]["signals"] = {"gradient_noise_scale": None}
    assert own_curve(run, 10) is None


def test_a_miss_names_the_replay_that_halves_the_gap():
    row = {"predicted": 0.0, "with_own_noise_scale": 9.0, "at_adascale_rate": 3.0}
    assert what_broke(row, 10.0) == (
        "the transfer from the profile's batch: the runs' own noise scale gives 9.0"
    )
    row = {"predicted": 0.0, "with_own_noise_scale": None, "at_adascale_rate": 6.0}
    assert what_broke(row, 10.0).startswith("the learning-rate regime")
    row = {"predicted": 0.0, "with_own_noise_scale": 4.0, "at_adascale_rate": 4.0}
    assert what_broke(row, 10.0).startswith("accuracy against progress")


def test_bands_are_worked_by_hand():
    t90_1 = 3.0776835371752536  # Student's t, 0.90 quantile, 1 degree of freedom
    low, high = band([1.0, 3.0], runs=3)
    half = t90_1 * math.sqrt(2) * math.sqrt(1 / 2 + 1 / 3)
    assert (low, high) == pytest.approx((2 - half, 2 + half))
    assert band([1.0], runs=3) is None
    t90_3 = 1.6377443536962102  # 3 degrees of freedom
    low, high = beside([1.0, 3.0], [0.0, 2.0, 4.0])
    half = t90_3 * math.sqrt(2 / 2 + 4 / 3)
    assert (low, high) == pytest.approx((2 - half, 2 + half))


def test_the_noise_scales_parts_are_those_of_the_formula():
    # s̄ = 5, ‖Ḡ‖² = 2, B = 4, T = 3: tr(Σ) = 3/(1/4 − 1/12) = 18, |G|² = 2 − 18/12 = 0.5
    assert noise_parts(5.0, 2.0, 4, 3) == pytest.approx((0.5, 18.0))
    assert noise_parts(5.0, 2.0, 4, 3, population=16) == pytest.approx((1.625, 18.0))
    assert noise_parts(5.0, 2.0, 4, 1) is None


def test_a_profile_epoch_sums_each_half_apart():
    p = torch.nn.Parameter(torch.zeros(2))
    sums = StepSums([p], torch.device("cpu"), ("grad_sq_norm", "grad_sum"), profile=True, half=2)
    for g in ([1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]):
        p.grad = torch.tensor(g)
        sums.add(torch.tensor(1.0))
    result = sums.result(batch_size=4, steps=4)
    sums = result.noise_sums  # float32 norms: √2 squared is 2 to 1e-7
    assert sums["whole"] == pytest.approx([4, 1.5, 0.625], rel=1e-6)
    assert sums["halves"][0] == pytest.approx([2, 1.0, 0.5], rel=1e-6)
    assert sums["halves"][1] == pytest.approx([2, 2.0, 1.0], rel=1e-6)


def test_a_profile_run_records_the_noise_scales_parts_per_epoch(tmp_path):
    spec = tiny_spec(method="fixed", variant="profile", train={"epochs": 2})
    record = Trainer(spec, tmp_path).run(progress=False)
    assert record["train_size"] == 1438  # 80% of the 1,797 digits
    for epoch in record["epochs"]:
        parts = epoch["gradient"]
        assert parts["sqr"] > 0
        assert parts["trace"] > 0
        assert len(parts["halves"]) == 2
    plain = Trainer(tiny_spec(method="fixed", train={"epochs": 2}), tmp_path / "b")
    assert plain.step_sums(64).half is None  # a run that is not a profile sums nothing more


def _trace(folder, batch, rows):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["progress,iteration,metric,grad_sqr,grad_var"] + [",".join(map(str, r)) for r in rows]
    (folder / f"validation-{batch}.csv").write_text("\n".join(lines) + "\n")


def test_the_trace_reader_reads_a_workload_and_predicts_it(tmp_path):
    # base 10: noise 10·1/1 = 10 then 10·3/1 = 30, the CURVE above; the run at 20 took 225
    _trace(tmp_path / "w", 10, [(100, 100, 0.5, 1.0, 1.0), (300, 300, 0.7, 1.0, 3.0)])
    _trace(tmp_path / "w", 20, [(100, 75, 0.5, 1.0, 1.0), (340, 225, 0.7, 1.0, 3.0)])
    workload = read_workload(tmp_path / "w")
    assert list(workload) == [10, 20]
    assert noise_curve(workload[10]).noise == (10.0, 30.0)
    from benchmarks.prediction import pairs  # `python -m pytest` runs from the project root

    assert pairs(workload, 0.0) == [(20, pytest.approx(225.0), 225.0, pytest.approx(0.0))]


def test_a_bad_trace_is_refused_by_name(tmp_path):
    path = tmp_path / "validation-8.csv"
    path.write_text("progress,iteration\n1,1\n")
    with pytest.raises(ValueError, match="needs the columns progress, iteration, metric"):
        read_trace(path)
    path.write_text("progress,iteration,metric,grad_sqr,grad_var\n1,1,x,1,nan\n")
    with pytest.raises(ValueError, match="column 'metric' holds a value that is not a number"):
        read_trace(path)
    with pytest.raises(ValueError, match="validation-<batch size>.csv"):
        read_trace(tmp_path / "trace.csv")


def test_the_predict_stage_needs_profile_runs(tmp_path):
    cfg = OmegaConf.create({"study": {"datasets": ["digits"]}})
    with pytest.raises(DebaError, match=r"no profile run records under .*dvc repro profile"):
        predict.run(
            cfg, ["test_resnet"], str(tmp_path), str(tmp_path / "t"), str(tmp_path / "p.json")
        )


def test_the_shipped_transfer_and_model_error_are_those_the_pollux_traces_give():
    from benchmarks.prediction import pollux
    from deba_pipeline.prediction.model import MODEL_ERROR, TRANSFER

    result = pollux()
    assert result["in_sample"]["alpha"] == TRANSFER
    assert result["p80_abs_error_pct"] / 100 == pytest.approx(MODEL_ERROR)
    assert (result["within_15pct"], result["of"]) == (27, 28)  # the bar: 26 of 28
    assert result["median_abs_error_pct"] <= 3


def test_a_savings_band_adds_every_noise_in_quadrature():
    from deba_pipeline.prediction.forecast import saving_summary

    def found(saving):
        return {
            "saving_pct": saving,
            "batches": [64, 96],
            "progress_vs_fixed": 1.0,
            "stalls": False,
        }

    # two profile runs at 10 and 20; each moves ±2 when its noise scale moves by its error
    out = saving_summary(
        [[found(10), found(12), found(8)], [found(20), found(22), found(18)]],
        runs=3,
        table_error=0.01,
    )
    z = 1.2815515655446004  # the normal's 0.90 quantile: an 80% band
    parts = {
        "profile_runs": 3.0776835371752536 * math.sqrt(50) * math.sqrt(1 / 2 + 1 / 3),
        "noise_scale": z * 2,
        "step_time_table": z * math.sqrt(2) * 0.01 * 85,
        "model": 0.064 * 85,
    }
    assert out["band_parts"] == pytest.approx(parts)
    half = math.sqrt(sum(v * v for v in parts.values()))
    assert out["band"] == pytest.approx([15 - half, 15 + half])
    fixed = {"saving_pct": 0.0, "batches": [64, 64], "progress_vs_fixed": 1.0, "stalls": False}
    assert saving_summary([[fixed] * 3, [fixed] * 3], runs=3, table_error=0.01)["band"] is None
