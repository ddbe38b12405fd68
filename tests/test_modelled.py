"""Modelled times at the runs' own level, and how far a table's own noise moves a speedup
(docs/method.md), by hand."""

from __future__ import annotations

import pytest

from deba_pipeline.report.comparison import compare
from deba_pipeline.report.modelled import at_runs_level, own_level, table_noise

from helpers import record_of


def run(method, seed, sizes, steps, seconds, probe=None):
    record = record_of(
        method,
        seed,
        [
            {
                "epoch": i + 1,
                "batch_size": b,
                "steps": n,
                "epoch_time_s": t,
                "test_accuracy": 90.0,
                "decision": "hold",
                "samples": 64 * n,
            }
            for i, (b, n, t) in enumerate(zip(sizes, steps, seconds))
        ],
    )
    if probe is not None:
        record["step_probe"] = {"batch_size": 64, "step_s": probe}
    return record


TABLE = {
    "a": {
        "d": {
            "step_s": {"64": 0.010, "96": 0.012},
            "epoch_start_s": {"64": 0.002},
            "ratio_error": {"64": 0.0, "96": 0.05},
        }
    }
}
FIXED = run("fixed", 2, [64, 64], [10, 10], [0.2, 0.2], probe=0.020)
DEBA = run("deba", 2, [64, 96], [10, 7], [0.2, 0.2])


def test_table_noise_is_each_size_s_error_times_how_far_the_speedup_moves_with_it():
    # T_f = 2 * (10 * 0.010 + 0.002) = 0.204, T_m = 0.102 + 7 * 0.012 = 0.186; 96 only in DEBA:
    # d speedup / d ln(step_96) = -100 * 7 * 0.012 / 0.204, and 64's error is 0 (the reference)
    # half-width at 90%: 1.6448536 * 100 * 0.084 / 0.204 * 0.05 = 3.3864633
    assert table_noise([FIXED], [DEBA], TABLE) == pytest.approx(3.3864633, rel=1e-6)
    assert table_noise([FIXED], [FIXED], TABLE) == 0.0  # the same sizes: nothing to move
    assert (
        table_noise([FIXED], [DEBA], {"a": {"d": {"step_s": TABLE["a"]["d"]["step_s"]}}}) is None
    )  # a table without errors (measured before they were kept) says nothing
    unknown = {"a": {"d": {**TABLE["a"]["d"], "ratio_error": {"64": 0.0, "96": None}}}}
    assert table_noise([FIXED], [DEBA], unknown) is None  # too few rounds to tell: not known


def test_a_size_s_error_is_floored_by_the_median_of_its_table_s_errors():
    # 96's own 1% is below the median of the table's nonzero errors (1% and 5%): 3%; so the
    # half-width is 1.6448536 * 100 * 0.084 / 0.204 * 0.03 = 2.0318780
    cell = {
        **TABLE["a"]["d"],
        "step_s": {"64": 0.010, "96": 0.012, "128": 0.014},
        "ratio_error": {"64": 0.0, "96": 0.01, "128": 0.05},
    }
    assert table_noise([FIXED], [DEBA], {"a": {"d": cell}}) == pytest.approx(2.0318780, rel=1e-6)
    assert table_noise([FIXED], [FIXED], {"a": {"d": cell}}) == 0.0  # the reference stays exact


def test_the_level_is_the_median_of_the_fixed_runs_steps_timed_beside_them():
    second = run("fixed", 42, [64, 64], [10, 10], [0.2, 0.2], probe=0.030)
    third = run("fixed", 7, [64, 64], [10, 10], [0.2, 0.2], probe=0.040)
    levelled = at_runs_level(TABLE, [FIXED, second, third, DEBA])["a"]["d"]
    assert levelled["level_factor"] == pytest.approx(3.0)  # median(2, 3, 4) over 0.010
    assert levelled["step_s"] == pytest.approx({"64": 0.030, "96": 0.036})
    assert levelled["epoch_start_s"] == pytest.approx({"64": 0.006})
    assert TABLE["a"]["d"]["step_s"]["64"] == 0.010  # the table read is left as it was
    assert at_runs_level(TABLE, [DEBA]) == TABLE  # no probed fixed run: the table's own level


def test_a_fixed_run_is_modelled_at_the_step_timed_beside_it():
    # 20 steps at the 0.020 s probe, the starts scaled alike: 2 * 0.002 * 2 = 0.008
    assert own_level(FIXED, TABLE) == pytest.approx(20 * 0.020 + 0.008)
    assert own_level(DEBA, TABLE) is None  # no probe
    # a probe that kept its rounds' epoch starts: its own start, not the table's
    started = {**FIXED, "step_probe": {**FIXED["step_probe"], "starts_s": [0.05, 0.01, 0.03]}}
    assert own_level(started, TABLE) == pytest.approx(20 * 0.020 + 2 * 0.03)


def test_the_report_s_ratio_reads_each_fixed_run_against_its_own_probe():
    slow = run("fixed", 42, [64, 64], [10, 10], [0.3, 0.3], probe=0.030)  # a slower minute
    deba_42 = run("deba", 42, [64, 96], [10, 7], [0.5, 0.5])
    tables = at_runs_level(TABLE, [FIXED, slow])
    cell = compare([FIXED, slow, DEBA, deba_42], steptime=tables)[("a", "d")]
    # 20 steps at its own probe plus the starts (0.004 at the table's level, times the probe
    # over 0.010): (0.408 / 0.4 + 0.612 / 0.6) / 2 = 1.02; at the median level (0.025) for
    # both it would read (0.51 / 0.4 + 0.51 / 0.6) / 2 = 1.0625
    assert cell.model_ratio_fixed == pytest.approx(1.02)
    assert cell.model_ratio_beside is True
    assert cell.model_ratio_within_noise is not None
    assert cell.model_speedup_table_noise == pytest.approx(3.3864633, rel=1e-6)


def test_the_check_reads_epochs_after_the_first_as_the_clock_noise_does():
    warm = run("fixed", 2, [64, 64], [10, 10], [0.4, 0.2], probe=0.020)  # a slow first epoch
    cell = compare([warm, DEBA], steptime=at_runs_level(TABLE, [warm]))[("a", "d")]
    # epoch 2 alone: (10 * 0.020 + 0.002 * 2) / 0.2 = 1.02; with the first, 0.408 / 0.6 = 0.68
    assert cell.model_ratio_fixed == pytest.approx(1.02)
