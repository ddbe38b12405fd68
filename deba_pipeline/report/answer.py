"""The short answer at the top of REPORT.md and in metrics.json, per architecture and dataset:
which strategy to use, what it saves, at what accuracy cost, how sure, and whether the profile
alone predicted it. A strategy is recommended only on a conclusive benefit (outcome.outcome)."""

from __future__ import annotations

from deba_pipeline.report.cell import Cell
from deba_pipeline.report.intervals import LEVEL, POWER
from deba_pipeline.report.outcome import MIN_SEEDS, OPEN


def answers(by_method: dict, checked: list) -> dict:
    """{(arch, dataset): answer} from each strategy's comparison and the prediction check."""
    held = {(row["arch"], row["dataset"]): row for row in checked}
    out = {}
    for key in sorted({k for cells in by_method.values() for k in cells}):
        cells = {name: cells[key] for name, cells in by_method.items() if key in cells}
        benefits = {n: c for n, c in cells.items() if c.outcome == "benefit"}
        settled = all(c.outcome in ("degraded", "marginal") for c in cells.values())
        tied = []
        if benefits:  # by what the interval guarantees: its lower bound
            use = max(benefits, key=lambda n: guaranteed(benefits[n]))
            tied = sorted(
                n
                for n in benefits
                if n != use
                and overlap(benefits[n].verdict_speedup_ci, benefits[use].verdict_speedup_ci)
            )
        elif settled:
            use = "fixed"
        else:
            use = None
        # shown: the recommendation; else the fastest that a verdict may still favour
        open_ = {n: c for n, c in cells.items() if c.outcome in OPEN}
        hopeful = open_ or {n: c for n, c in cells.items() if c.outcome != "degraded"} or cells
        shown = (
            use
            if use not in (None, "fixed")
            else max(hopeful, key=lambda n: hopeful[n].verdict_speedup)
        )
        c, row = cells[shown], held.get(key)
        out[key] = {
            "use": use,
            "strategy": shown,
            "outcome": c.outcome,
            "speedup_pct": c.verdict_speedup,
            "speedup_ci": c.verdict_speedup_ci,
            "speedup_basis": c.speedup_basis,
            "delta_acc": c.delta_acc,
            "delta_acc_ci": c.delta_acc_ci,
            "seeds": len(c.seeds),
            "seeds_needed": c.seeds_needed,
            "seeds_needed_range": c.seeds_needed_range,
            "others": {n: o.outcome for n, o in cells.items() if n != shown},
            "tied": tied,
            "took": c.took,
            "no_comparison": c.no_comparison,
            "prediction": row["profile"]["prediction"] if row else None,
            "prediction_held": row["held"] if row else None,
        }
    return out


def guaranteed(c: Cell) -> float:
    """The speedup a benefit's interval guarantees: its lower bound (the mean without one)."""
    ci = c.verdict_speedup_ci
    return ci[0] if ci else c.verdict_speedup


def overlap(a, b) -> bool:
    """Two intervals that share a point: the strategies cannot be told apart by them."""
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def _range(ci, digits, unit=""):
    if ci is None:
        return "no interval with one seed"
    return f"{LEVEL:.0%} interval {ci[0]:+.{digits}f} to {ci[1]:+.{digits}f}{unit}"


def _seeds_needed(a) -> str:
    """What would settle an inconclusive answer: the seeds at the stated power, with the range
    the observed spread allows."""
    span = a.get("seeds_needed_range")
    spread = (
        ""
        if not span or span[0] == span[1]
        else (
            f" ({span[0]} to {span[1] or 'over 1000'}: {a['seeds']} seeds tell the spread only "
            f"roughly)"
        )
    )
    need = (
        f"about {a['seeds_needed']} seeds{spread} would settle it at {POWER:.0%} power"
        if a["seeds_needed"]
        else "more seeds are needed to read the spread"
        if a["seeds"] < 2
        else "no number of seeds would settle it at this spread"
    )
    if a["seeds"] < MIN_SEEDS:
        need = f"an outcome needs at least {MIN_SEEDS} seeds; {need}"
    return need


def sentence(key, a) -> str:
    arch, dataset = key
    pct = a["speedup_pct"]
    pace = f"{pct:.1f}% less time than" if pct >= 0 else f"{-pct:.1f}% more time than"
    saves = (
        f"**{a['strategy']}**: it trains in {pace} the fixed batch ("
        f"{a['speedup_basis']} speedup; {_range(a['speedup_ci'], 1)}) at "
        f"{a['delta_acc']:+.2f} points of accuracy ({_range(a['delta_acc_ci'], 2)}), "
        f"over {a['seeds']} seed{'s' if a['seeds'] != 1 else ''}"
    )
    if a.get("no_comparison"):
        return (
            f"- **{arch} on {dataset}**: no comparison: the fixed baseline did not learn "
            f"({a['no_comparison']}), so no strategy can be judged against it. Raise "
            f"train.epochs or change train.lr, or check the data, then rerun."
        )
    if a["use"] == "fixed":
        others = ", ".join(
            f"{n} {o}" for n, o in sorted({a["strategy"]: a["outcome"], **a["others"]}.items())
        )
        text = f"keep the fixed batch: no strategy was faster without costing accuracy ({others})."
    elif a["use"] is not None:
        together = " and ".join(f"**{n}**" for n in a.get("tied") or ())
        text = f"use {saves}; a conclusive benefit" + (
            f" ({together}, also a benefit, cannot be told apart from it by the intervals)."
            if together
            else "."
        )
    else:
        others = "".join(f"; {n}: {o}" for n, o in sorted(a["others"].items()))
        text = (
            f"no conclusive answer yet. The most promising is {saves}; {_seeds_needed(a)}"
            f"{' (' + others[2:] + ')' if others else ''}."
        )
    if a.get("took"):
        text += (
            f" Its rule {a['took']} in every seed: what was tested is a fixed schedule, "
            f"not a rule that chooses."
        )
    if a["prediction"] is not None:
        held = {"yes": "held", "no": "did not hold"}.get(a["prediction_held"], a["prediction_held"])
        text += f" The profile alone predicted *{a['prediction']}* for DEBA: {held}."
    return f"- **{arch} on {dataset}**: {text}"


def metrics(found: dict) -> dict:
    """The same answer, flat enough for `dvc metrics show`."""
    return {
        f"{arch}/{ds}": {
            "use": "no comparison" if a.get("no_comparison") else a["use"] or "inconclusive",
            "strategy": a["strategy"],
            "speedup_pct": a["speedup_pct"],
            "speedup_ci": a["speedup_ci"],
            "delta_acc": a["delta_acc"],
            "delta_acc_ci": a["delta_acc_ci"],
            "tied": a["tied"],
            "took": a["took"],
            "seeds_needed": a["seeds_needed"],
            "prediction_held": a["prediction_held"],
        }
        for (arch, ds), a in found.items()
    }
