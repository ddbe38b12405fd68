"""REPORT.md: the tables with their captions, the prediction check with its reasons, the figures,
the paper beside us, and a glossary, written to be read cold."""

from __future__ import annotations

from pathlib import Path

from deba_pipeline.report.answer import sentence
from deba_pipeline.report.captions import CAPTIONS, GLOSSARY
from deba_pipeline.report.curves import method_label
from deba_pipeline.report.held import CLEAR_SPEEDUP
from deba_pipeline.report.intervals import LEVEL
from deba_pipeline.report.outcome import MIN_SEEDS
from deba_pipeline.report.table_formats import to_markdown


def slow_tables_note(step_tables) -> str:
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


def chance_note(records) -> str:
    return _flagged(
        "At chance",
        at_chance(records),
        "runs ended less than a tenth of the way from chance to 100% accuracy",
        "A comparison with such a run says nothing "
        "about the methods: train longer, or check the learning rate and the data.",
    )


def packed_note(records) -> str:
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
    return "\n".join([*lines, *_runs(records)])


def _runs(records) -> list:
    """Every run record used, folded away at the end."""
    rows = [
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
            records, key=lambda r: (r["variant"], r["arch"], r["dataset"], r["method"], r["seed"])
        )
    ]
    summary = "<details><summary>Every run record used</summary>"
    return ["## Runs", "", summary, "", to_markdown(rows), "</details>", ""]


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
        + packed_note(records)
        + slow_tables_note(step_tables)
        + chance_note(records),
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
