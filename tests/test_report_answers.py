"""The report's time to accuracy and its plain answer, against hand-computed values."""

from dataclasses import replace

import pytest

from deba_pipeline.report import answer, time_to_accuracy
from deba_pipeline.report.cell import Cell

from helpers import record_of

TABLE = {"a": {"d": {"step_s": {"64": 0.01, "96": 0.015}}}}


def record(method, seed, accuracies, sizes=(64, 64, 96), final=None):
    epochs = [
        {
            "epoch": i + 1,
            "batch_size": b,
            "steps": 10 if b == 64 else 5,
            "epoch_time_s": 1.0 + 0.1 * i,
            "test_accuracy": acc,
        }
        for i, (acc, b) in enumerate(zip(accuracies, sizes))
    ]
    return record_of(method, seed, epochs, final if final is not None else accuracies[-1])


def test_time_to_accuracy_is_interpolated_in_the_first_epoch_that_reaches_the_target():
    run = record("deba", 2, [90.0, 95.0, 97.0])
    # epoch 2 (90 → 95) reaches 94.5 nine tenths of the way through: modelled 10·0.01 + 0.9 ×
    # 10·0.01 = 0.19 s, measured 1.0 + 0.9 × 1.1 = 1.99 s
    assert time_to_accuracy.time_to(run, 94.5, TABLE) == (pytest.approx(0.19), pytest.approx(1.99))
    assert time_to_accuracy.time_to(run, 99.0, TABLE) == (None, None)
    # a size the table lacks: no modelled time, the measured one still (91 → 97 crosses 96 at
    # five sixths of epoch 3: 1.0 + 1.1 + 5/6 × 1.2)
    assert time_to_accuracy.time_to(
        record("deba", 2, [90.0, 91.0, 97.0], (64, 128, 96)), 96.0, TABLE
    ) == (None, pytest.approx(3.1))


def test_time_to_accuracy_rows_pair_each_seed_with_its_fixed_run():
    records = [
        record("fixed", 2, [90.0, 96.0, 97.0], (64, 64, 64)),
        record("deba", 2, [95.0, 96.0, 97.0]),
        record("gns", 2, [80.0, 85.0, 90.0]),
    ]
    rows = time_to_accuracy.rows(records, TABLE, tolerance=0.5)
    # target 97.0 − 0.5 = 96.5, half way through epoch 3 for both: the fixed run at 0.2 + 0.5 ×
    # 0.1 = 0.25 s modelled, deba at 0.2 + 0.5 × 5·0.015 = 0.2375 s; gns never
    assert [(r["Strategy"], r["Reached"], r["Time to accuracy, modelled (s)"]) for r in rows] == [
        ("fixed", "1 of 1 seeds", "0.2"),
        ("deba", "1 of 1 seeds", "0.2"),
        ("gns", "0 of 1 seeds", "not reached"),
    ]
    assert rows[1]["Speedup to accuracy, modelled (%)"] == "5.0 [n/a]"  # 100·(1 − 0.2375/0.25)
    assert rows[2]["Censored"] == "seed 2 (not reached in 3.3 s)"


def cell(outcome, speedup, delta, seeds=(2, 42), needed=None, ci=(1.0, 2.0), **more):
    return Cell(
        outcome=outcome,
        verdict_speedup=speedup,
        verdict_speedup_ci=ci,
        speedup_basis="modelled",
        delta_acc=delta,
        delta_acc_ci=ci,
        seeds=list(seeds),
        seeds_needed=needed,
        **more,
    )


def test_the_answer_recommends_only_a_conclusive_benefit():
    checked = [{"arch": "a", "dataset": "d", "held": "yes", "profile": {"prediction": "benefit"}}]
    found = answer.answers(
        {
            "deba": {("a", "d"): cell("benefit", 12.0, 0.5)},
            "gns": {("a", "d"): cell("inconclusive", 30.0, 0.1, needed=9)},
        },
        checked,
    )
    assert found[("a", "d")]["use"] == "deba"
    assert answer.sentence(("a", "d"), found[("a", "d")]) == (
        "- **a on d**: use **deba**: it trains in 12.0% less time than the fixed batch "
        "(modelled speedup; 90% interval +1.0 to +2.0) at +0.50 points of accuracy (90% "
        "interval +1.00 to +2.00), over 2 seeds; a conclusive benefit. The profile alone "
        "predicted *benefit* for DEBA: held."
    )
    assert answer.metrics(found) == {
        "a/d": {
            "use": "deba",
            "strategy": "deba",
            "speedup_pct": 12.0,
            "speedup_ci": (1.0, 2.0),
            "delta_acc": 0.5,
            "delta_acc_ci": (1.0, 2.0),
            "tied": [],
            "took": None,
            "seeds_needed": None,
            "prediction_held": "yes",
        }
    }


def test_benefits_rank_by_what_their_intervals_guarantee_and_overlapping_ones_are_named():
    found = answer.answers(
        {
            "deba": {("a", "d"): cell("benefit", 20.0, 0.0, ci=(1.0, 39.0))},
            "gns": {("a", "d"): cell("benefit", 12.0, 0.0, ci=(8.0, 16.0))},
            "step": {("a", "d"): cell("benefit", 30.0, 0.0, ci=(17.0, 43.0))},
        },
        [],
    )[("a", "d")]
    # the largest mean (step, 30) guarantees 17: it leads; deba's [1, 39] overlaps it, gns's
    # [8, 16] does not
    assert (found["use"], found["tied"]) == ("step", ["deba"])
    assert (
        "(**deba**, also a benefit, cannot be told apart from it by the intervals)."
        in answer.sentence(("a", "d"), found)
    )


def test_a_rule_that_grew_at_every_chance_is_named_a_fixed_schedule():
    from deba_pipeline.report.comparison import took

    def run(decisions):
        return {
            "config": {"deba": {"cooldown": 3}},
            "epochs": [{"epoch": i + 1, "decision": d} for i, d in enumerate(decisions)],
        }

    # cooldown 3: consulted at epochs 2, 3, 4 until a change, then 4 epochs later; the last
    # epoch's decision changes nothing and is left out
    grew = run(
        ["hold", "increase", "hold", "hold", "hold", "increase", "hold", "hold", "hold", "rollback"]
    )
    assert took([grew, grew]) == "grew at every chance"
    held_once = run(["hold", "hold", "increase"] + ["hold"] * 7)
    assert took([grew, held_once]) is None
    assert took([run(["hold"] * 6)]) == "never adapted"
    assert took([{"epochs": []}]) is None  # a fixed run: no cooldown
    c = cell("inconclusive", 5.0, 0.1, needed=9, took="grew at every chance")
    found = answer.answers({"gns": {("a", "d"): c}}, [])[("a", "d")]
    assert (
        "Its rule grew at every chance in every seed: what was tested is a fixed "
        "schedule, not a rule that chooses." in answer.sentence(("a", "d"), found)
    )


def test_without_a_conclusive_benefit_the_answer_says_so_and_what_would_settle_it():
    open_ = answer.answers(
        {
            "deba": {("a", "d"): cell("marginal", 20.0, -0.5)},
            "gns": {("a", "d"): cell("inconclusive", 5.0, 0.1, needed=9)},
        },
        [],
    )
    assert open_[("a", "d")]["use"] is None
    assert open_[("a", "d")]["strategy"] == "gns"
    assert "about 9 seeds would settle it at 80% power (deba: marginal)" in answer.sentence(
        ("a", "d"), open_[("a", "d")]
    )
    settled = answer.answers({"deba": {("a", "d"): cell("degraded", 20.0, -2.0)}}, [])
    assert answer.sentence(("a", "d"), settled[("a", "d")]).startswith(
        "- **a on d**: keep the fixed batch: no strategy was faster without costing accuracy "
        "(deba degraded)."
    )


def test_the_headline_is_one_short_line_per_cell():
    from deba_pipeline.report.metrics import headline

    answers = {
        "a/d": {"use": "gns", "strategy": "gns", "speedup_pct": 25.9, "delta_acc": -0.28},
        "b/d": {"use": "inconclusive", "strategy": "deba", "speedup_pct": -4.2, "delta_acc": 1.04},
        "c/d": {"use": "fixed", "strategy": None, "speedup_pct": None, "delta_acc": None},
    }
    assert headline(answers) == {
        "a on d": "use gns: -26% time -0.3pt",
        "b on d": "deba? +4% time +1.0pt",
        "c on d": "keep the fixed batch",
    }


def test_the_seeds_an_answer_asks_for_come_with_the_range_the_spread_allows():
    c = cell("inconclusive", 5.0, 0.1, seeds=(2, 42, 7), needed=9, seeds_needed_range=(4, None))
    found = answer.answers({"gns": {("a", "d"): c}}, [])[("a", "d")]
    assert (
        "about 9 seeds (4 to over 1000: 3 seeds tell the spread only roughly) would settle "
        "it at 80% power." in answer.sentence(("a", "d"), found)
    )
    from deba_pipeline.report.tables import outcome_text

    assert outcome_text(replace(c, seeds_needed_range=(4, 120))) == "inconclusive (≈9 seeds, 4–120)"


def test_strategies_json_sets_every_strategy_beside_the_others_per_cell():
    from deba_pipeline.report.metrics import by_strategy

    cell = Cell(outcome="inconclusive", verdict_speedup=20.7, delta_acc=-0.29)
    found = by_strategy(
        {
            "gns": {("test_resnet", "digits"): cell},
            "deba": {
                ("test_resnet", "digits"): replace(cell, outcome="benefit", verdict_speedup=-3.2)
            },
        }
    )
    # flattened by DVC to columns `gns.test_resnet/digits` and `deba.test_resnet/digits`
    assert found == {
        "deba": {"test_resnet/digits": "benefit: +3% time -0.3pt"},
        "gns": {"test_resnet/digits": "inconclusive: -21% time -0.3pt"},
    }
