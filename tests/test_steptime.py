"""docs/method.md's step-time table: the sizes it covers, its interleaved order, and the priority it is
measured at."""
import os
import statistics
import time

import pytest

from deba_pipeline.engine.loop import Trainer
from deba_pipeline.timing import priority, steptime

from helpers import tiny_spec, without_times


def test_ladder_is_spec_section_1s_growth_and_rollback_sizes():
    assert steptime.ladder(64, 1.5, 0.8, 16, 2048) == [
        16, 20, 25, 32, 40, 51, 64, 96, 144, 216, 324, 486, 729, 1093, 1639, 2048]
    assert steptime.ladder(64, 1.5, 0.8, 48, 200) == [48, 51, 64, 96, 144, 200]  # clamped
    assert steptime.ladder(16, 1.5, 0.8, 16, 16) == [16]
    # three processes, down from 63: 50 → 48, 38 → 36, 28 → 27, 21, then 16 → 15 < 16 → 18
    assert steptime.ladder(63, 1.5, 0.8, 16, 2048, multiple=3)[:5] == [18, 21, 27, 36, 48]


def test_measure_interleaves_every_size_and_restores_the_state(tmp_path):
    trainer = Trainer(tiny_spec("fixed"), tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    generator = trainer.data.generator.get_state()
    table = steptime.measure(trainer, [96, 40, 5000], reference=64, repeats=3, steps=2,
                             warmup=1, how="median")
    assert list(table["step_s"]) == ["40", "64", "96"]  # 5000 > the training set: skipped
    assert table["order"] == [40, 64, 96] * 3            # round-robin, warm-up untimed
    # "median" (the reference method): the median over rounds of each round's median step
    assert table["step_s"] == {s: sorted(t)[1] for s, t in table["typical_s"].items()}
    assert table["data_path"] == "device"
    assert set(table["epoch_start_s"]) == {"40", "64", "96"}
    assert all(table["spread"][s] == [min(t), max(t)] and all(
        fastest <= typical for fastest, typical in zip(t, table["typical_s"][s]))
        for s, t in table["rounds_s"].items())
    assert all((v == before[k]).all() for k, v in trainer.model.state_dict().items())
    assert (trainer.data.generator.get_state() == generator).all()


def test_paired_estimate_is_the_median_ratio_to_the_reference_over_undisturbed_rounds():
    rounds = {64: [0.010, 0.010, 0.020], 32: [0.006, 0.005, 0.012]}
    # each round's median slowness over the sizes' fastest rounds: 1.1, 1.0, 2.2 (> 1.25: left out)
    step_s, used, _ = steptime.estimate(rounds, reference=64, how="paired")
    assert used == 2
    assert step_s == pytest.approx({64: 0.010, 32: 0.010 * (0.6 + 0.5) / 2})
    # the level from the typical (median) steps, the ratios from the fastest ones
    typical = {64: [0.012, 0.014, 0.030], 32: [0.007, 0.006, 0.020]}
    step_s, _, _ = steptime.estimate(rounds, 64, "paired", typical=typical)  # rounds 1 and 2
    assert step_s == pytest.approx({64: 0.013, 32: 0.013 * (0.6 + 0.5) / 2})
    assert steptime.estimate(rounds, 64, "median", typical=typical)[:2] == (
        {64: 0.014, 32: 0.007}, 3)
    assert steptime.estimate(rounds, 64, "median")[:2] == ({64: 0.010, 32: 0.006}, 3)
    # the reference timed right beside each size: its ratios, 0.6/1.2 and 0.5/1.0 -> 0.5
    beside = {64: [0.010, 0.010, 0.020], 32: [0.012, 0.010, 0.024]}
    assert steptime.estimate(rounds, 64, "paired", beside)[0] == pytest.approx(
        {64: 0.010, 32: 0.005})


def test_a_ratio_error_is_the_median_s_standard_error_from_the_rounds_spread():
    # median 1.0, absolute deviations 0, .1, .1, .2, .2: MAD 0.1, spread 1.4826 * 0.1;
    # the median's error sqrt(pi/2) * spread / sqrt(5) = 1.2533141 * 0.14826 / 2.2360680
    assert steptime.relative_error([1.0, 1.1, 0.9, 1.2, 0.8]) == pytest.approx(0.0830996, rel=1e-6)
    assert steptime.relative_error([2.0, 2.2, 1.8, 2.4, 1.6]) == pytest.approx(0.0830996, rel=1e-6)
    assert steptime.relative_error([1.0, 5.0]) is None  # two rounds say nothing of the spread
    rounds = {64: [0.010] * 5, 32: [0.005, 0.0055, 0.0045, 0.006, 0.004]}
    _, used, errors = steptime.estimate(rounds, 64, "paired")
    assert used == 5
    assert errors == pytest.approx({64: 0.0, 32: 0.0830996}, rel=1e-6)
    # "median": the size's own error and the reference's, in quadrature
    typical = {64: [0.010, 0.011, 0.009, 0.012, 0.008], 32: [0.005] * 5}
    assert steptime.estimate(rounds, 64, "median", typical=typical)[2] == pytest.approx(
        {64: 0.0, 32: 0.0830996}, rel=1e-6)
    two = {64: [0.010, 0.011], 32: [0.005, 0.006]}
    assert steptime.estimate(two, 64, "paired")[2] == {64: 0.0, 32: None}
    assert steptime.estimate(two, 64, "median")[2] == {64: 0.0, 32: None}


def test_a_machine_busy_all_through_keeps_the_calmest_half_of_the_rounds():
    # reference 10 ms throughout; the other size's fastest round 5 ms, the rest 8-10 ms: every
    # round but the first runs over DISTURBED, and two rounds would state no noise at all
    ref = [0.010] * 6
    other = [0.005, 0.010, 0.0085, 0.008, 0.0095, 0.009]
    # slowness per round, the median of (1.0, other/0.005): 1.0, 1.5, 1.35, 1.3, 1.45, 1.4
    assert steptime.calm_rounds([1.0, 1.5, 1.35, 1.3, 1.45, 1.4]) == [0, 2, 3]
    assert steptime.calm_rounds([1.0, 1.2, 1.5, 1.1]) == [0, 1, 3]  # enough calm ones: those
    step_s, used, errors = steptime.estimate({64: ref, 32: other}, 64, "paired")
    # rounds 0, 2, 3: ratios 0.5, 0.85, 0.8 -> median 0.8; deviations 0.3, 0.05, 0 -> MAD 0.05
    assert used == 3
    assert step_s == pytest.approx({64: 0.010, 32: 0.008})
    assert errors[32] == pytest.approx(1.2533141 * 1.4826 * 0.05 / 3 ** 0.5 / 0.8, rel=1e-6)


def test_real_time_scheduling_while_measuring_then_restored_or_a_fallback(monkeypatch):
    before = os.sched_getscheduler(0)
    try:
        with priority.device_to_ourselves() as how:
            inside = os.sched_getscheduler(0)
    except PermissionError:
        pytest.skip("the tests may not change scheduling here")
    assert (how == "real-time scheduling") == (inside == os.SCHED_FIFO)  # it says what it did
    assert os.sched_getscheduler(0) == before

    def refused(*args):
        raise PermissionError("not permitted")

    monkeypatch.setattr(priority.os, "sched_setscheduler", refused)
    with priority.device_to_ourselves(step=5) as how:
        pass
    assert how in ("priority raised by 5", ) or how.startswith("normal priority")


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


def _fake_rounds(factors):
    """Stand-in for the timed rounds: each call adds `repeats` rounds with every step taking
    size/64 × 10 ms × the next factor (2.0: a machine slow throughout)."""
    calls = []

    def rounds(timed, samples, order, too_big, warmup, repeats, optimizer, device,
               reference=None, beside=None):
        factor = factors[min(len(calls), len(factors) - 1)]
        calls.append(factor)
        for _ in range(repeats):
            for size in samples["fastest"]:
                samples["fastest"][size].append(factor * size / 64 * 0.010)
                samples["typical"][size].append(factor * size / 64 * 0.011)
                samples["start"][size].append(0.0)
                order.append(size)
                if beside is not None:
                    beside[size].append(factor * 0.010)
    return rounds, calls


def test_a_measurement_slow_throughout_measures_more_and_keeps_the_calm_rounds(tmp_path,
                                                                              monkeypatch):
    trainer = Trainer(tiny_spec("fixed"), tmp_path)
    rounds, calls = _fake_rounds([2.0, 1.0])
    monkeypatch.setattr(steptime, "_rounds", rounds)
    table = steptime.measure(trainer, [32], reference=64, repeats=3, steps=1, warmup=0,
                             runs_step_s=0.010)
    assert calls == [2.0, 1.0]
    assert table["extra_rounds"] == 3
    assert not table["slow_throughout"]
    assert table["rounds_used"] == 3  # the three slow rounds are left out
    # the level: the calm rounds' typical reference step (11 ms), the ratio from the fastest
    assert table["step_s"] == pytest.approx({"32": 0.0055, "64": 0.011})


def test_a_machine_slow_to_the_end_is_said_so_and_nothing_is_added_without_a_reference(
        tmp_path, monkeypatch):
    trainer = Trainer(tiny_spec("fixed"), tmp_path)
    rounds, calls = _fake_rounds([2.0])
    monkeypatch.setattr(steptime, "_rounds", rounds)
    table = steptime.measure(trainer, [32], reference=64, repeats=3, steps=1, warmup=0,
                             runs_step_s=0.010)
    assert len(calls) == 1 + steptime.EXTRA
    assert table["slow_throughout"]
    rounds, calls = _fake_rounds([2.0])
    monkeypatch.setattr(steptime, "_rounds", rounds)
    table = steptime.measure(trainer, [32], reference=64, repeats=3, steps=1, warmup=0)
    assert calls == [2.0]
    assert table["extra_rounds"] == 0
    assert not table["slow_throughout"]


def test_the_report_names_a_table_measured_slow_throughout():
    from deba_pipeline.report.text import _slow_tables
    tables = {"test_vit": {"digits": {"slow_throughout": True}},
              "test_resnet": {"digits": {"slow_throughout": False}}}
    assert _slow_tables(tables).startswith(" The step-time tables of test_vit/digits were "
                                           "measured while this machine ran slow throughout")
    assert _slow_tables({"test_resnet": tables["test_resnet"]}) == ""


def test_paired_measure_times_every_size_with_the_reference_beside_it(tmp_path):
    trainer = Trainer(tiny_spec("fixed"), tmp_path)
    table = steptime.measure(trainer, [40], reference=64, repeats=2, steps=1, warmup=0)
    assert table["estimate"] == "paired"
    assert table["order"] == [40, 64] * 2
    assert set(table["step_s"]) == {"40", "64"}
    rounds = {int(s): t for s, t in table["rounds_s"].items()}
    assert all(len(t) == 2 for t in rounds.values())  # one a repeat, each size
    beside = {int(s): t for s, t in table["beside_s"].items()}
    typical = {int(s): t for s, t in table["typical_s"].items()}
    assert table["rounds_used"] == steptime.estimate(rounds, 64, "paired", beside, typical)[1]


def _counting_tables(monkeypatch):
    """The step-time stage with a stand-in for the measurement itself (the real one is tested
    above and in the pipeline test): which (arch, dataset) tables it measures."""
    from deba_pipeline.stages import steptime as stage
    measured = []

    def fake_table(cfg, arch, dataset, reached, calm, threads=None):
        measured.append(arch)
        return {"device": "cpu", "step_s": {"64": 0.01 * len(measured)}}
    monkeypatch.setattr(stage, "table", fake_table)
    return stage, measured


def test_a_table_is_measured_once_for_its_inputs_and_again_when_they_change(tmp_path,
                                                                            monkeypatch):
    from helpers import tiny_cfg
    stage, measured = _counting_tables(monkeypatch)
    cfg = tiny_cfg(study={"archs": ["test_resnet", "test_vit"], "datasets": ["digits"]})
    cfg.tracking.dir = str(tmp_path / "state")
    out = tmp_path / "steptime"
    first = stage.run(cfg, ["test_resnet", "test_vit"], runs=str(tmp_path), out=str(out))
    assert measured == ["test_resnet", "test_vit"]
    again = stage.run(cfg, ["test_resnet", "test_vit"], runs=str(tmp_path), out=str(out))
    assert measured == ["test_resnet", "test_vit"]
    assert again == first
    cfg.train.model_kwargs = {"test_vit": {"patch_size": 2}}  # only test_vit's runs change
    stage.run(cfg, ["test_resnet", "test_vit"], runs=str(tmp_path), out=str(out))
    assert measured == ["test_resnet", "test_vit", "test_vit"]
    cfg.timing.repeats = 3  # a timing param changes every table
    stage.run(cfg, ["test_resnet", "test_vit"], runs=str(tmp_path), out=str(out))
    assert measured[3:] == ["test_resnet", "test_vit"]
    from deba_pipeline.execution import steptime as measuring
    monkeypatch.setattr(measuring, "measuring_code", lambda: "changed")  # so does its code
    stage.run(cfg, ["test_resnet", "test_vit"], runs=str(tmp_path), out=str(out))
    assert measured[5:] == ["test_resnet", "test_vit"]
    assert sorted(p.name for p in out.iterdir()) == ["test_resnet.json", "test_vit.json"]


def test_a_slow_machine_is_told_from_one_process_runs_only():
    """The table times one process; a W-process run's step (B/W samples a rank, plus the
    all-reduce) is no reference for it."""
    from deba_pipeline.execution.steptime import runs_step

    def fixed(world, *seconds):
        return {"arch": "a", "dataset": "d", "method": "fixed", "world_size": world,
                "epochs": [{"batch_size": 64, "steps": 10, "epoch_time_s": s} for s in seconds]}
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
        tmp_path, monkeypatch, placement):
    """docs/method.md: the gather (or the loader), augmentation and resize are in a step's time, and an
    epoch's own start (its permutation) in the epoch's. Before, the table timed batches sliced
    beforehand: a 40 ms gather left every step at a few ms."""
    trainer = Trainer(tiny_spec("fixed", data={"placement": placement, "workers": 0}), tmp_path)
    data = trainer.data
    assert data.path == placement
    monkeypatch.setattr(data, "_resize", _slow(0.040, data._resize))   # every batch, both paths
    monkeypatch.setattr(data, "_epoch_order", _slow(0.100, data._epoch_order))  # every epoch
    table = steptime.measure(trainer, [64], reference=64, repeats=2, steps=2, warmup=0)
    assert min(table["rounds_s"]["64"]) >= 0.040
    assert table["step_s"]["64"] >= 0.040
    assert table["epoch_start_s"]["64"] >= 0.060
    assert table["data_path"] == placement


def test_a_fixed_run_times_its_step_beside_every_epoch_and_a_deba_run_does_not(tmp_path,
                                                                               monkeypatch):
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
        assert "step_probe" not in train(tiny_spec(method, variant), state_dir=tmp_path,
                                         progress=False)


@pytest.mark.parametrize(("sizes", "expected"), [
    ("ladder", [16, 20, 25, 32, 40, 51, 64, 96, 144, 216, 324, 486, 729, 1093, 1438]),
    ("reached", [51, 64, 76])])  # 76: reached off the ladder (a DDP fit or a plugin's policy)
def test_a_table_covers_the_ladder_or_only_the_sizes_the_runs_reached(tmp_path, monkeypatch,
                                                                      sizes, expected):
    from deba_pipeline.execution import steptime as execution

    from helpers import tiny_cfg
    cfg = tiny_cfg(timing={"sizes": sizes})
    cfg.tracking.dir = str(tmp_path)
    asked = {}

    def measure(trainer, sizes, reference, *args):
        asked.update(sizes=sorted(set(sizes) | {reference}), reference=reference)
        return {"step_s": {}}
    monkeypatch.setattr(execution, "measure", measure)
    execution.table(cfg, "test_resnet", "digits", {51, 76}, None)
    assert asked == {"sizes": sorted(set(expected) | {76}), "reference": 64}


def test_a_table_size_option_outside_its_choices_is_refused_with_them():
    from omegaconf import OmegaConf

    from deba_pipeline.config import merge
    from deba_pipeline.core.errors import DebaError
    with pytest.raises(DebaError, match="ladder.*reached|reached.*ladder"):
        merge(OmegaConf.create({"timing": {"sizes": "all"}}))
