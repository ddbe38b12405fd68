"""The verdict a cell's intervals allow (docs/method.md "Verdicts"): a non-inferiority outcome
stated only where every interval it depends on lies on one side of its boundary, and, where none
can be stated yet, the seeds that would settle it."""

from __future__ import annotations

import statistics

from deba_pipeline.report.cell import Cell
from deba_pipeline.report.intervals import (
    above,
    at_least,
    at_most,
    below,
    seeds_needed,
    seeds_needed_range,
    straddles,
)

# An outcome, or whether a prediction held, needs this many seeds: two seeds that tie give an
# interval of zero width, and a spread read from one degree of freedom is known only within a
# factor of 0.5-16, so two seeds decide nothing however their interval falls.
MIN_SEEDS = 3
OPEN = ("inconclusive", "too few seeds")  # outcomes that more seeds may still settle


def outcome(c: Cell) -> str:
    """What the method did, as a non-inferiority verdict with margin δ (`report.non_inferiority`,
    points), stated only where the intervals over seeds lie on one side of each boundary:
    degraded (ΔAcc below −δ), benefit (ΔAcc no worse than −δ, and faster), marginal (no worse
    than −δ, and not faster); else inconclusive. A method of truly equal accuracy can then be a
    benefit; with "ΔAcc ≥ 0" it never could, and the seeds it needed grew without bound. Below
    MIN_SEEDS seeds: "too few seeds", whatever the intervals say."""
    if c.no_comparison:
        return "no comparison"
    if len(c.seeds) < MIN_SEEDS:
        return "too few seeds"
    acc, speed, margin = c.delta_acc_ci, c.verdict_speedup_ci, c.margin
    if below(acc, -margin):
        return "degraded"
    if at_least(acc, -margin) and above(speed, 0):
        return "benefit"
    if at_least(acc, -margin) and at_most(speed, 0):
        return "marginal"
    return "inconclusive"


def seeds_to_settle(c: Cell):
    """(seeds, (fewest, most)): the seeds the observed spread would need for a conclusive outcome
    at POWER, the most that any boundary its intervals straddle asks for (ΔAcc at −margin, the
    speedup at 0), never fewer than MIN_SEEDS, and the range the spread's own uncertainty
    gives; (None, None) where it cannot be read."""
    margin = c.margin
    floor = c.spread_floor
    straddled = [
        (values, x, low)
        for values, ci, x, low in (
            (c.delta_accs, c.delta_acc_ci, -margin, floor),
            (c.verdict_speedups, c.verdict_speedup_ci, 0.0, None),
        )
        if straddles(ci, x)
    ]
    if not straddled:  # decided already, by fewer seeds than an outcome needs
        return MIN_SEEDS, (MIN_SEEDS, MIN_SEEDS)
    asks = [seeds_needed(values, x, spread=_floored(values, low)) for values, x, low in straddled]
    if None in asks:
        return None, None
    ranges = [seeds_needed_range(values, x, floor=low) for values, x, low in straddled]
    fewest = max([MIN_SEEDS] + [r[0] or MIN_SEEDS for r in ranges if r])
    most = (
        None
        if any(r is None or r[1] is None for r in ranges)
        else max([MIN_SEEDS] + [r[1] for r in ranges])
    )
    return max([MIN_SEEDS, *asks]), (fewest, most)


def _floored(values, floor):
    return max(statistics.stdev(values), floor or 0.0) if len(values) > 1 else None
