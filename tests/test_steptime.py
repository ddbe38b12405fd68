"""docs/method.md's step-time table: the sizes it covers, its interleaved order, and the priority it is
measured at."""

import os
import statistics
import time

import pytest

from deba_pipeline.engine.loop import Trainer
from deba_pipeline.timing import estimates, priority, steptime

from helpers import tiny_spec, without_times


def test_ladder_is_spec_section_1s_growth_and_rollback_sizes():
    assert steptime.ladder(64, 1.5, 0.8, 16, 2048) == [
        16,
        20,
        25,
        32,
        40,
        51,
        64,
        96,
        144,
        216,
        324,
        486,
        729,
        1093,
        1639,
        2048,
    ]
    assert steptime.ladder(64, 1.5, 0.8, 48, 200) == [48, 51, 64, 96, 144, 200]  # clamped
    assert steptime.ladder(16, 1.5, 0.8, 16, 16) == [16]
    # three processes, down from 63: 50 → 48, 38 → 36, 28 → 27, 21, then 16 → 15 < 16 → 18
    assert steptime.ladder(63, 1.5, 0.8, 16, 2048, multiple=3)[:5] == [18, 21, 27, 36, 48]


def test_measure_interleaves_every_size_and_restores_the_state(tmp_path):
    trainer = Trainer(tiny_spec("fixed"), tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    generator = trainer.data.generator.get_state()
    table = steptime.measure(
        trainer, [96, 40, 5000], reference=64, repeats=3, steps=2, warmup=1, how="median"
    )
    assert list(table["step_s"]) == ["40", "64", "96"]
    assert table["beyond_data"] == [5000]  # more than the training set: noted, not timed
    assert table["order"] == [40, 64, 96] * 3  # round-robin, warm-up untimed
    # "median" (the reference method): the median over rounds of each round's median step
    assert table["step_s"] == {s: sorted(r["typical_s"])[1] for s, r in table["rounds"].items()}
    assert table["data_path"] == "device"
    assert set(table["epoch_start_s"]) == {"40", "64", "96"}
    for samples in table["rounds"].values():
        assert all(f <= t for f, t in zip(samples["fastest_s"], samples["typical_s"]))
        assert "beside_s" not in samples  # the median estimate times no reference beside
    assert all((v == before[k]).all() for k, v in trainer.model.state_dict().items())
    assert (trainer.data.generator.get_state() == generator).all()


def _rounds(fastest, typical=None, beside=None):
    samples = {
        "fastest_s": fastest,
        "typical_s": typical or fastest,
        "starts_s": [0.001] * len(fastest),
    }
    return {**samples, "beside_s": beside} if beside else samples


def test_paired_estimate_is_the_median_ratio_to_the_reference_beside_over_calm_rounds():
    rounds = {
        "64": _rounds([0.010, 0.010, 0.020], [0.012, 0.014, 0.030]),
        "32": _rounds([0.006, 0.005, 0.012], beside=[0.010, 0.010, 0.020]),
    }
    table = estimates.estimate(rounds, reference=64, how="paired")
    # the reference's rounds over its fastest: 1.0, 1.0, 2.0 (> 1.25: left out); the level is
    # the median of its typical steps in rounds 1 and 2, 0.013. Size 32's pairs, the larger of
    # each side over its fastest: 1.2, 1.0, 2.4 (out): ratios 0.6 and 0.5, median 0.55
    assert table["step_s"] == pytest.approx({"64": 0.013, "32": 0.013 * 0.55})
    assert table["rounds_used"] == {"64": 2, "32": 2}
    assert table["ratio_error"] == {"64": 0.0, "32": None}  # two ratios tell no spread
    assert table["epoch_start_s"] == {"64": 0.001, "32": 0.001}
    median = estimates.estimate(rounds, 64, "median")
    assert median["step_s"] == {"64": 0.014, "32": 0.006}
    assert median["rounds_used"] == {"64": 3, "32": 3}


def test_a_ratio_error_is_the_median_s_standard_error_from_the_rounds_spread():
    # median 1.0, absolute deviations 0, .1, .1, .2, .2: MAD 0.1, normal spread 1.4826022 * 0.1;
    # the median's error sqrt(pi/2) * spread / sqrt(5) = 1.2533141 * 0.14826022 / 2.2360680
    assert estimates.relative_error([1.0, 1.1, 0.9, 1.2, 0.8]) == pytest.approx(0.0830997, rel=1e-6)
    assert estimates.relative_error([2.0, 2.2, 1.8, 2.4, 1.6]) == pytest.approx(0.0830997, rel=1e-6)
    assert estimates.relative_error([1.0, 5.0]) is None  # two rounds say nothing of the spread
    rounds = {
        "64": _rounds([0.010] * 5),
        "32": _rounds([0.005, 0.0055, 0.0045, 0.006, 0.004], beside=[0.010] * 5),
    }
    table = estimates.estimate(rounds, 64, "paired")
    assert table["rounds_used"] == {"64": 5, "32": 3}  # 0.0055 and 0.006 run over 1.25 x 0.004
    # ratios 0.5, 0.45, 0.4: MAD 0.05 -> 1.2533141 * 1.4826022 * 0.05 / sqrt(3) / 0.45
    assert table["ratio_error"] == pytest.approx({"64": 0.0, "32": 0.1192014}, rel=1e-6)
    # "median": the size's own error and the reference's, in quadrature
    rounds["64"]["typical_s"] = [0.010, 0.011, 0.009, 0.012, 0.008]
    rounds["32"]["typical_s"] = [0.005] * 5
    assert estimates.estimate(rounds, 64, "median")["ratio_error"] == pytest.approx(
        {"64": 0.0, "32": 0.0830997}, rel=1e-6
    )


def test_a_machine_busy_all_through_keeps_the_calmest_half_of_the_rounds():
    assert estimates.calm_rounds([1.0, 1.5, 1.35, 1.3, 1.45, 1.4]) == [0, 2, 3]
    assert estimates.calm_rounds([1.0, 1.2, 1.5, 1.1]) == [0, 1, 3]  # enough calm ones: those
    # the reference 10 ms throughout; the other size's fastest round 5 ms, the rest 8-10 ms:
    # every round but the first runs over DISTURBED, and one round would state no noise at all
    rounds = {
        "64": _rounds([0.010] * 6),
        "32": _rounds([0.005, 0.010, 0.0085, 0.008, 0.0095, 0.009], beside=[0.010] * 6),
    }
    table = estimates.estimate(rounds, 64, "paired")
    # slowness 1.0, 2.0, 1.7, 1.6, 1.9, 1.8: rounds 0, 3, 2 kept, ratios 0.5, 0.8, 0.85 -> 0.8;
    # deviations 0.3, 0, 0.05 -> MAD 0.05
    assert table["rounds_used"]["32"] == 3
    assert table["step_s"] == pytest.approx({"64": 0.010, "32": 0.008})
    assert table["ratio_error"]["32"] == pytest.approx(0.0670508, rel=1e-6)


def test_a_table_takes_new_sizes_without_moving_the_ones_it_has():
    from helpers import stand_in_table

    kept = stand_in_table([32], seconds=0.010)
    added = stand_in_table([96], seconds=0.020)  # another moment: every step twice as long
    table = estimates.joined(kept, added)
    assert table["step_s"] == pytest.approx({"32": 0.005, "64": 0.010, "96": 0.015})
    assert table["rounds"]["64"] == kept["rounds"]["64"]  # the kept reference sets the level
    assert table["order"] == kept["order"] + [96] * 3  # the rounds it holds: not added's 64
    assert estimates.joined(table, sizes={96})["step_s"] == pytest.approx(
        {"64": 0.010, "96": 0.015}
    )  # restricted to the sizes asked, with the reference


def test_real_time_scheduling_while_measuring_then_restored():
    before = os.sched_getscheduler(0)
    try:
        with priority.device_to_ourselves() as how:
            inside = os.sched_getscheduler(0)
    except PermissionError:
        pytest.skip("the tests may not change scheduling here")
    assert (how == "real-time scheduling") == (inside == os.SCHED_FIFO)  # it says what it did
    assert os.sched_getscheduler(0) == before  # the fallbacks: the next test


def test_priority_is_raised_while_measuring_and_restored(monkeypatch):
    monkeypatch.delattr(priority.os, "sched_setscheduler")  # the fallback when real time is refused
    me = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, me - 1)
        os.setpriority(os.PRIO_PROCESS, 0, me)
    except PermissionError:
        pytest.skip("this machine does not let the tests raise a priority")
    with priority.device_to_ourselves(step=5) as how:
        assert os.getpriority(os.PRIO_PROCESS, 0) == me - 5
    assert how == "priority raised by 5"
    assert os.getpriority(os.PRIO_PROCESS, 0) == me

    def refused(*args):
        raise PermissionError("not permitted")

    monkeypatch.setattr(priority.os, "setpriority", refused)
    with priority.device_to_ourselves() as how:
        pass
    assert how.startswith("normal priority (PermissionError: raising it needs root")


def _timed_epochs(monkeypatch, slow_calls):
    """Stand-in for the timed epochs: every step takes size/64 x 10 ms (11 ms typical), twice
    that for the first `slow_calls` calls (a machine slow throughout)."""
    calls = []

    def time_epoch(trainer, saved, size, steps):
        factor = 2.0 if len(calls) < slow_calls else 1.0
        calls.append(size)
        return factor * size / 64 * 0.010, factor * size / 64 * 0.011, 0.0

    monkeypatch.setattr(steptime, "time_epoch", time_epoch)
    return calls


def test_a_measurement_slow_throughout_measures_more_and_keeps_the_calm_rounds(
    tmp_path, monkeypatch
):
    trainer = Trainer(tiny_spec("fixed"), tmp_path)
    calls = _timed_epochs(monkeypatch, slow_calls=9)  # a set of rounds: 3 x (32, 64 beside, 64)
    table = steptime.measure(
        trainer, [32], reference=64, repeats=3, steps=1, warmup=0, runs_step_s=0.010
    )
    assert len(calls) == 18
    assert table["extra_rounds"] == 3
    assert not table["slow_throughout"]
    assert table["rounds_used"] == {"32": 3, "64": 3}  # the three slow rounds are left out
    # the level: the calm rounds' typical reference step (11 ms), the ratio from the fastest
    assert table["step_s"] == pytest.approx({"32": 0.0055, "64": 0.011})


@pytest.mark.parametrize(
    ("runs_step_s", "sets", "slow"), [(0.010, 1 + steptime.EXTRA, True), (None, 1, False)]
)
def test_a_machine_slow_to_the_end_is_said_so_and_nothing_is_added_without_a_reference(
    tmp_path, monkeypatch, runs_step_s, sets, slow
):
    trainer = Trainer(tiny_spec("fixed"), tmp_path)
    calls = _timed_epochs(monkeypatch, slow_calls=10**6)
    table = steptime.measure(
        trainer, [32], reference=64, repeats=3, steps=1, warmup=0, runs_step_s=runs_step_s
    )
    assert len(calls) == 9 * sets
    assert table["slow_throughout"] is slow
    assert table["extra_rounds"] == 3 * (sets - 1)


def test_the_report_names_a_table_measured_slow_throughout():
    from deba_pipeline.report.text import slow_tables_note

    tables = {
        "test_vit": {"digits": {"slow_throughout": True}},
        "test_resnet": {"digits": {"slow_throughout": False}},
    }
    assert slow_tables_note(tables).startswith(
        " The step-time tables of test_vit/digits were "
        "measured while this machine ran slow throughout"
    )
    assert slow_tables_note({"test_resnet": tables["test_resnet"]}) == ""


def test_paired_measure_times_every_size_with_the_reference_beside_it(tmp_path):
    trainer = Trainer(tiny_spec("fixed"), tmp_path)
    table = steptime.measure(trainer, [40], reference=64, repeats=2, steps=1, warmup=0)
    assert table["estimate"] == "paired"
    assert table["order"] == [40, 64] * 2
    assert [len(table["rounds"]["40"][part]) for part in ("fastest_s", "beside_s")] == [2, 2]
    assert "beside_s" not in table["rounds"]["64"]
    assert estimates.estimate(table["rounds"], 64, "paired")["step_s"] == table["step_s"]


def _counting_tables(monkeypatch, reached=()):
    """The step-time stage with a stand-in for the measurement itself (the real one is tested
    above and in the pipeline test), over runs that reached `reached`: which (arch, dataset)
    tables it measures, and at which sizes."""
    from deba_pipeline.stages import steptime as stage

    from helpers import stand_in_table

    measured, sizes_timed = [], []

    def fake_table(cfg, arch, dataset, sizes, calm):
        measured.append(arch)
        sizes_timed.append(sorted(sizes))
        return stand_in_table(sizes, seconds=0.01 * len(measured))

    monkeypatch.setattr(stage, "table", fake_table)
    monkeypatch.setattr(
        stage,
        "read_records",
        lambda runs: [
            {
                "arch": arch,
                "dataset": "digits",
                "method": "deba",
                "epochs": [{"batch_size": size, "epoch_time_s": 1.0} for size in reached],
            }
            for arch in ("test_resnet", "test_vit")
        ],
    )
    return stage, measured, sizes_timed


def test_a_study_that_reaches_new_sizes_times_only_those(tmp_path, monkeypatch):
    """Adding a strategy that reaches 96 times 96 (beside the reference) and nothing else, and
    leaves every size already kept as it was."""
    from helpers import tiny_cfg

    cfg = tiny_cfg(
        study={"archs": ["test_resnet"], "datasets": ["digits"]}, timing={"sizes": "reached"}
    )
    cfg.tracking.dir = str(tmp_path / "state")
    stage, measured, sizes_timed = _counting_tables(monkeypatch, reached=(64, 51))
    first = stage.run(cfg, ["test_resnet"], runs=str(tmp_path), out=str(tmp_path / "out"))
    stage, measured, sizes_timed = _counting_tables(monkeypatch, reached=(64, 51, 96))
    again = stage.run(cfg, ["test_resnet"], runs=str(tmp_path), out=str(tmp_path / "out"))
    assert sizes_timed == [[96]]
    before, after = first["test_resnet"]["digits"], again["test_resnet"]["digits"]
    assert set(after["step_s"]) == {"51", "64", "96"}
    assert {s: after["step_s"][s] for s in before["step_s"]} == before["step_s"]
    stage, measured, sizes_timed = _counting_tables(monkeypatch, reached=(64, 96))
    fewer = stage.run(cfg, ["test_resnet"], runs=str(tmp_path), out=str(tmp_path / "out"))
    assert measured == []  # a strategy removed: nothing to time, its size left out of the table
    assert fewer["test_resnet"]["digits"]["step_s"] == {s: after["step_s"][s] for s in ("64", "96")}


def test_a_slow_machine_is_told_from_one_process_runs_only():
    """The table times one process; a W-process run's step (B/W samples a rank, plus the
    all-reduce) is no reference for it."""
    from deba_pipeline.execution.steptime import runs_step

    def fixed(world, *seconds):
        return {
            "arch": "a",
            "dataset": "d",
            "method": "fixed",
            "world_size": world,
            "epochs": [{"batch_size": 64, "steps": 10, "epoch_time_s": s} for s in seconds],
        }

    # the median over the one-process runs' epochs: 0.1, 0.2 and 0.3 s a step
    assert runs_step([fixed(2, 0.5), fixed(1, 1.0, 2.0, 3.0)], "a", "d", 64) == 0.2
    assert runs_step([fixed(2, 0.5)], "a", "d", 64) is None


def _slow(seconds, function):
    """`function`, taking at least `seconds` longer (a sleep: a lower bound, never an upper)."""

    def slowed(*args, **kwargs):
        time.sleep(seconds)
        return function(*args, **kwargs)

    return slowed


@pytest.mark.parametrize("placement", ["device", "stream"])
def test_a_step_is_timed_as_the_loop_runs_it_with_its_batch_and_the_epoch_start(
    tmp_path, monkeypatch, placement
):
    """docs/method.md: the gather (or the loader), augmentation and resize are in a step's time, and an
    epoch's own start (its permutation) in the epoch's. Before, the table timed batches sliced
    beforehand: a 40 ms gather left every step at a few ms."""
    trainer = Trainer(tiny_spec("fixed", data={"placement": placement, "workers": 0}), tmp_path)
    data = trainer.data
    assert data.path == placement
    monkeypatch.setattr(data, "_resize", _slow(0.040, data._resize))  # every batch, both paths
    monkeypatch.setattr(data, "_epoch_order", _slow(0.100, data._epoch_order))  # every epoch
    table = steptime.measure(trainer, [64], reference=64, repeats=2, steps=2, warmup=0)
    assert min(table["rounds"]["64"]["fastest_s"]) >= 0.040
    assert table["step_s"]["64"] >= 0.040
    assert table["epoch_start_s"]["64"] >= 0.060
    assert table["data_path"] == placement


def test_a_fixed_run_times_its_step_beside_every_epoch_and_a_deba_run_does_not(
    tmp_path, monkeypatch
):
    from deba_pipeline.execution.one_run import train

    def alone():
        raise AssertionError("the probe takes its steps as the run did, at the run's priority")

    spec = tiny_spec("fixed")
    unprobed = Trainer(spec, tmp_path / "plain").run(progress=False)  # a library caller's loop
    assert "step_probe" not in unprobed
    monkeypatch.setattr(steptime, "device_to_ourselves", alone)
    record = train(spec, state_dir=tmp_path / "probed", progress=False)
    probe = record["step_probe"]
    assert probe["batch_size"] == spec.train.batch_size
    assert len(probe["rounds_s"]) == len(probe["starts_s"]) == spec.train.epochs
    assert probe["step_s"] == statistics.median(probe["rounds_s"]) > 0
    # the rounds restore the model, optimizer, data order and random draws: the same run
    assert without_times(record) == without_times(unprobed)
    for method, variant in (("deba", "baseline"), ("fixed", "profile")):  # not baselines
        assert "step_probe" not in train(
            tiny_spec(method, variant), state_dir=tmp_path, progress=False
        )


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ("ladder", [16, 20, 25, 32, 40, 51, 64, 96, 144, 216, 324, 486, 729, 1093, 1639, 2048]),
        ("reached", [51, 64, 76]),
    ],
)  # 76: reached off the ladder (a DDP fit or a plugin's policy)
def test_a_table_covers_the_ladder_or_only_the_sizes_the_runs_reached(sizes, expected):
    from deba_pipeline.execution.steptime import wanted

    from helpers import tiny_cfg

    cfg = tiny_cfg(timing={"sizes": sizes}, deba={"max_batch": 2048})
    assert sorted(wanted(cfg, {51, 76})) == sorted(set(expected) | {76})


def test_a_table_size_option_outside_its_choices_is_refused_with_them():
    from omegaconf import OmegaConf

    from deba_pipeline.config import merge
    from deba_pipeline.core.errors import DebaError

    with pytest.raises(DebaError, match="ladder.*reached|reached.*ladder"):
        merge(OmegaConf.create({"timing": {"sizes": "all"}}))
