"""REPORT.md: the tables with their captions, the prediction check with its reasons, the figures,
the paper beside us, and a glossary, written to be read cold."""

from __future__ import annotations

from pathlib import Path

from deba_pipeline.report.answer import sentence
from deba_pipeline.report.comparison import MIN_SEEDS
from deba_pipeline.report.curves import method_label
from deba_pipeline.report.held import CLEAR_SPEEDUP
from deba_pipeline.report.intervals import LEVEL
from deba_pipeline.report.tables import to_markdown

CAPTIONS = {
    "table1": "Table 1. Thresholds calibrated from our profile runs (75th percentile of Δ‖∇‖, "
    "median of c_t), beside the paper's Table 1.",
    "table2": "Table 2. Stability taxonomy from fixed-batch profiling, each class's prediction, "
    "and what DEBA then did in our runs. ΔAcc and speedups with their {level} "
    "intervals over seeds, in brackets.",
    "table3": "Table 3. Ablations: ΔAcc and speedups of each DEBA variant against the fixed "
    "batch, on the ablation dataset, with their {level} intervals over seeds.",
    "table4": "Table 4. Fixed batch against DEBA: accuracy and times as mean ± std over seeds; "
    "ΔAcc and speedups (paired by seed) with their {level} intervals; throughput and "
    "samples per second.",
    "table5": "Table 5. What each scheduler did: its decisions over all seeds and the batch "
    "sizes it used.",
    "prediction": "Before you spend: predicted beside observed. Per strategy, the saving in time "
    "to accuracy the predict stage gave from the profile runs before any strategy "
    "trained (per trajectory it considered, with its 80% band: docs/method.md, "
    "prediction), the modelled speedup to accuracy predicted again from the runs' "
    "own batch trajectories and rates, the one the runs had (time to accuracy, "
    "below), and the band a right prediction leaves the observed mean in (its "
    "spread over profile runs and the observed spread over seeds); where it "
    "missed, the assumption the miss points at; the ΔAcc predicted (the profile's "
    "accuracy where the runs' progress ends, against where the fixed batch's "
    "does) beside the observed; and the gns rule's final batch simulated before "
    "training beside each run's.",
    "time_to_accuracy": "Time to accuracy. How long each strategy trains until its test "
    "accuracy first reaches the fixed run's final accuracy minus "
    "`report.accuracy_tolerance` (per seed), modelled and measured, and the "
    "speedup that gives against the fixed run's own time to it (paired by "
    "seed, {level} interval). Accuracy is read at epoch ends, so the time "
    "is interpolated within the epoch that crosses the target (linearly from "
    "the previous epoch's accuracy; from chance at time 0 for the first). "
    "A seed that never gets there is censored: named, with the time it "
    "trained without reaching it, and left out of the mean.",
    "strategies": "Strategies side by side. Each batch strategy of study.methods "
    "against the same fixed runs, paired by seed: ΔAcc and both speedups with "
    "their {level} intervals, the outcome, modelled throughput, its decisions over "
    "all seeds and its mean final batch size.",
}

GLOSSARY = """\
- **S** (stability score of one profile run): 1 / (1 + CV(σ²) + mean Var(‖∇L‖) + mean Var(L)),
  where σ² is the gradient variance of each epoch, CV its coefficient of variation over the
  epochs, Var(‖∇L‖) and Var(L) the variance over one epoch's steps of the gradient norm and of
  the loss. Higher is steadier.
- **μ_S**, **σ_S**: mean and sample standard deviation of S over the profile seeds.
- **Convergence stability**: standard deviation of the per-epoch training loss over a run.
- **Class**: σ_S > {dynamic_sigma} → dynamically stable; else μ_S < {unstable_mu} → naturally
  unstable; μ_S > {overly_mu} → overly stable; {moderate_low} ≤ μ_S ≤ {overly_mu} → moderately
  stable; otherwise intermediate.
- **c_t** (confidence score): σ²_t divided by the median σ² of the last `window` epochs.
- **θ_conf**, **θ_stab**: DEBA grows the batch when c_t ≤ θ_conf and both the gradient-norm
  variation Δ‖∇‖ and the loss variation ΔL are below θ_stab; it rolls back when c_t > θ_conf or
  Δ‖∇‖ > 3·θ_stab.
- **Aggressiveness**: (increases − rollbacks) / max(1, increases + rollbacks) of a DEBA run.
- **ΔAcc**: mean final test accuracy of the method minus that of the fixed batch, in points.
- **Measured time**: the wall clock of a run's training epochs. **Clock noise**: the larger of
  the spread of a fixed run's epoch times after the first (same work every epoch) and the
  spread of the fixed runs' times across seeds, as a coefficient of variation.
- **Modelled time**: the sum over epochs of steps × the time of one step at that epoch's batch
  size, from a step-time table measured once per study with every size interleaved (each
  size's time is read relative to the fixed batch size timed in the same round); a step there
  is timed as the loop runs it (taking the batch, forward, backward, update). Its shape (the
  ratios between sizes, all a modelled speedup reads) does not depend on what else the machine
  was doing while the runs trained. Its level is the runs' own: every fixed run times its
  batch size's step the table's way right after its epochs, and the table is scaled by the
  median of those steps over its own. **Modelled/measured**: each fixed run's modelled time,
  at the step timed beside it, over its measured time (from the second epoch, past the warm-up,
  as the clock noise; averaged over seeds), within noise when
  it differs from 1 by at most the clock noise. **Table noise**: the {level} half-width of a
  modelled speedup from the table's own noise (each size's standard error over its rounds):
  what measuring the table again can move it by.
- **Speedup**: 100 · (1 − T_method / T_fixed), per seed, then mean ± std. Measured and modelled
  *disagree* when they differ by more than √2 × the clock noise (both times carry it).
- **Throughput**: mean T_fixed / mean T_method. **Samples/s**: samples trained per second of
  measured training time (the last partial batch of an epoch is not trained).
- **Interval** `[low, high]`: the {level} Student t interval of the mean of the per-seed values
  (ΔAcc and speedups are paired by seed); `[n/a]` with one seed, whose spread cannot be read. A
  ΔAcc interval takes the larger of its seeds' spread and the spread pooled over every cell of
  the study (a few seeds that happen to agree say little about the spread), and adds in
  quadrature the test set's own term: the seeds share one test set, and from which samples each
  run got right (kept in its record) the standard error that sampling the test set puts on the
  mean ΔAcc is exact (McNemar's discordant pairs, for one seed). A speedup's is computed on
  ln(T_method / T_fixed) and mapped back, so it never reaches 100% (a method that takes no
  time). A modelled speedup's interval also carries the table noise, added in quadrature, so a
  cell whose seeds took one schedule is still as wide as the table's own noise.
- **Outcome**, a non-inferiority verdict with margin δ = {margin:g} point(s)
  (`report.non_inferiority`): degraded when ΔAcc < −δ; benefit when ΔAcc ≥ −δ and the
  modelled speedup is positive; marginal when ΔAcc ≥ −δ and it is not. Each is stated only where
  the intervals lie on one side of every boundary it depends on; otherwise the cell is
  *inconclusive*, with the seeds that would give a verdict at 80% power if the true mean and
  spread were the observed ones (≈N seeds), and the range over the true spreads the observed one
  allows (its 80% chi-square interval: a few seeds tell a spread only roughly); none shown
  where one seed cannot tell. Below {min_seeds} seeds no outcome is stated (*too few
  seeds*), whatever the intervals say: two seeds that tie give an interval of zero width.
- **Prediction held**: *benefit* holds on a benefit outcome; *marginal* holds when ΔAcc ≥ −1
  and there is no clear benefit (ΔAcc ≥ 0 with a speedup ≥ {clear:g}%); *unreliable,
  seed-dependent* holds when the per-seed ΔAcc spread is above a line, the larger of
  {seed_spread:g} point(s) and the spread the test set alone would give two runs that differ at
  random on the samples they disagree on: yes where the spread's {level} lower bound
  (chi-square) is above the line, no where its upper bound is below it; *benefit through
  rollbacks, seed-sensitive* needs a benefit, rollbacks and that spread. Yes or no only where
the intervals decide it, else inconclusive; below {min_seeds} seeds, n/a."""


def _slow_tables(step_tables) -> str:
    """A note on step-time tables measured while the machine was slow from start to end."""
    slow = sorted(
        f"{arch}/{dataset}"
        for arch, per in step_tables.items()
        for dataset, table in per.items()
        if table.get("slow_throughout")
    )
    if not slow:
        return ""
    return (
        f" The step-time tables of {', '.join(slow)} were measured while this machine ran "
        f"slow throughout (the typical step at the fixed batch size over 1.25x the runs' "
        f"own), so their modelled times may be off: measure them again on a quieter "
        f"machine (`rm -r .deba/steptime && dvc repro --force steptime`: a kept table is "
        f"otherwise reused)."
    )


def at_chance(records) -> list:
    """["arch/dataset/method seed S (38.9%, chance 33.3%)", ...]: runs whose final accuracy got
    less than a tenth of the way from chance (100 / classes) to 100%."""
    out = []
    for r in records:
        classes, accuracy = r.get("num_classes"), r.get("final_test_accuracy")
        if not classes or accuracy is None:
            continue
        chance = 100.0 / classes
        if accuracy < chance + 0.1 * (100.0 - chance):
            out.append(
                f"{r['arch']}/{r['dataset']}/{method_label(r)} seed {r['seed']} "
                f"({accuracy:.1f}%, chance {chance:.1f}%)"
            )
    return out


def _flagged(title: str, items: list, counted: str, advice: str) -> str:
    """A bold note listing `items`, or nothing when there are none."""
    if not items:
        return ""
    return f" **{title}** ({len(items)} {counted}): {'; '.join(items)}. {advice}"


def _chance(records) -> str:
    return _flagged(
        "At chance",
        at_chance(records),
        "runs ended less than a tenth of the way from chance to 100% accuracy",
        "A comparison with such a run says nothing "
        "about the methods: train longer, or check the learning rate and the data.",
    )


def _packed(records) -> str:
    """A note on measured times taken while runs shared a machine (Ray packs them)."""
    packed = [r for r in records if (r.get("execution") or {}).get("shared_machine")]
    if not packed:
        return ""
    return (
        f" The measured times of {len(packed)} of {len(records)} runs come from runs that "
        f"shared a machine with others (several runs side by side on one machine or "
        f"device); the modelled times do not depend on it."
    )


def report(
    records,
    built,
    checked,
    images,
    paper,
    out: Path,
    step_tables,
    cfg,
    answers=None,
    headroom=(),
    *,
    cells: dict,
) -> str:
    """REPORT.md's text; `cells`, {(arch, dataset): DEBA against the fixed batch}, tell where
    measured and modelled times disagree."""
    lines = ["# DEBA study report", ""]
    if answers:
        lines += (
            ["## The answer", ""]
            + [sentence(key, a) for key, a in answers.items()]
            + ["", "## This study", ""]
        )
    lines += _study(records, step_tables)
    for name, rows in built.items():
        caption = CAPTIONS[name].format(level=f"{LEVEL:.0%}")
        lines += [f"## {caption.split('.')[0]}", "", caption, "", to_markdown(rows)]
        if name == "prediction" and headroom:
            lines += ["Headroom on this hardware, from the profile alone:", "", *headroom, ""]
    lines += _predicted(checked) + _timing_doubts(sorted(cells.items()))
    lines += ["", "## Figures", ""]
    lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in images]
    if paper is not None:
        lines += _paper(paper)
    glossary = GLOSSARY.format(
        clear=CLEAR_SPEEDUP,
        level=f"{LEVEL:.0%}",
        min_seeds=MIN_SEEDS,
        margin=cfg.report.non_inferiority,
        **dict(cfg.taxonomy),
    )
    lines += ["", "## Glossary", "", glossary, ""]
    lines += [
        "## Runs",
        "",
        "<details><summary>Every run record used</summary>",
        "",
        to_markdown(
            [
                {
                    "arch": r["arch"],
                    "dataset": r["dataset"],
                    "method": r["method"],
                    "variant": r["variant"],
                    "seed": r["seed"],
                    "accuracy": f"{r['final_test_accuracy']:.2f}",
                    "train time (s)": f"{r['train_time_s']:.2f}",
                    "epochs": len(r["epochs"]),
                }
                for r in sorted(
                    records,
                    key=lambda r: (r["variant"], r["arch"], r["dataset"], r["method"], r["seed"]),
                )
            ]
        ),
        "</details>",
        "",
    ]
    return "\n".join(lines)


def _study(records, step_tables) -> list:
    """What the report was computed from: the records, the baselines, the timing."""
    archs = sorted({r["arch"] for r in records})
    datasets = sorted({r["dataset"] for r in records})
    seeds = sorted({r["seed"] for r in records})
    reused = sum(1 for r in records if r.get("reused_from") == "profile")
    devices = sorted({t["device"] for per in step_tables.values() for t in per.values()})
    return [
        f"Computed by `deba aggregate` from {len(records)} run records (architectures: "
        f"{', '.join(archs)}; datasets: {', '.join(datasets)}; seeds: "
        f"{', '.join(map(str, seeds))}). Every number below is computed from those records "
        f"and the step-time tables; the list of runs is at the end.",
        "",
        "Fixed baselines: "
        + (
            f"{reused} taken from the profile runs of their seed "
            f"(`study.reuse_profile_runs: true`)."
            if reused
            else "trained apart from the profile runs."
        ),
        "Timing: verdicts use modelled speedups (docs/method.md, Timing), "
        + (
            f"from step-time tables measured on {', '.join(devices)}."
            if devices
            else "but this study has no step-time tables, so they fall back to measured ones."
        )
        + _packed(records)
        + _slow_tables(step_tables)
        + _chance(records),
        "",
    ]


def _predicted(checked) -> list:
    """Whether the profile's prediction held, cell by cell."""
    verdicts = [row["held"] for row in checked if row["held"] in ("yes", "no")]
    undecided = sum(row["held"] == "inconclusive" for row in checked)
    lines = [
        "## Did the profile predict the outcome?",
        "",
        (
            f"The profile's prediction held in **{verdicts.count('yes')} of {len(verdicts)}** "
            "cells whose intervals decide it"
            if verdicts
            else "No cell's intervals decide whether the profile's prediction held"
        )
        + (f"; {undecided} more are inconclusive with these seeds" if undecided else "")
        + " (criteria in the glossary).",
        "",
    ]
    for row in checked:
        lines.append(
            f"- **{row['arch']}** on {row['dataset']}: {row['profile']['class']} → "
            f"predicted *{row['profile']['prediction']}*. Held: **{row['held']}** "
            f"({row['why']})."
        )
    return lines


def _timing_doubts(cells) -> list:
    """Where measured and modelled times disagree, read off the cells' own fields."""
    lines = []
    disagree = [key for key, c in cells if c.disagree]
    if disagree:
        lines += [
            "",
            "Measured and modelled speedups disagree beyond the clock noise for: "
            + ", ".join(f"{arch}/{dataset}" for arch, dataset in disagree)
            + ". The measured times of those runs were disturbed (or the step-time table "
            "is); the verdicts above use the modelled ones.",
        ]
    outside = [
        (key, c)
        for key, c in cells
        if c.model_ratio_fixed is not None and c.model_ratio_within_noise is False
    ]
    if outside:
        lines += [
            "",
            "The fixed runs' modelled time lies outside the clock noise of their "
            "measured time for: "
            + ", ".join(
                f"{arch}/{dataset} ({c.model_ratio_fixed:.3f})" for (arch, dataset), c in outside
            )
            + ". The table's way of timing a step misses part of what those runs' steps "
            "did (a data path, a resize), or the runs were disturbed between their epochs "
            "and the steps timed beside them: read their modelled times with care.",
        ]
    return lines


def _paper(paper) -> list:
    bad = [c for c in paper["self"] if not c["agrees"]]
    lines = ["", "## Against the paper's printed values", ""]
    if paper["beside"]:
        lines += [
            "Our runs beside the paper's, for the cells both have:",
            "",
            to_markdown(paper["beside"]),
            "",
        ]
    lines += [
        f"{len(paper['self']) - len(bad)} of {len(paper['self'])} printed values agree "
        f"with what the paper's own inputs give, within the rounding of the printed value "
        f"and of the inputs it derives from (a value Table 3 repeats from Table 4 is "
        f"checked once)."
    ]
    if bad:
        lines += [
            "",
            "Where the paper disagrees with itself:",
            "",
            to_markdown([{k: c[k] for k in ("where", "what", "printed", "computed")} for c in bad]),
        ]
    return lines
