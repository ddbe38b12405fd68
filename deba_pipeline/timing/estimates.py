"""What a step-time table's rounds say (docs/method.md).

A table keeps each size's rounds on their own (`rounds`: size -> its samples), and every number
it states is computed from one size's rounds and the reference's (`estimate`), so a table can
take more sizes later without timing again the ones it has (`joined`). Two estimates:
- "median" (the reference method): the median over rounds of each round's median step.
- "paired" (the default, an option: docs/method.md): each round of a size is timed with the
  reference size (the fixed batch every speedup is taken against) right beside it; the size's
  step is the median of its fastest step over the reference's beside it, times the reference's
  median step. A process beside ours only ever adds time to a step, so a round's fastest step is
  its least disturbed one (on 2 cores beside a CPU burner the mean of a round's steps moved the
  ratios by up to 5×, the fastest by a few percent), and a modelled speedup only reads ratios.
  Rounds that ran slow (over DISTURBED times the size's fastest) are left out, never more than
  half of them (`calm_rounds`).
"""

from __future__ import annotations

import math
import statistics

from scipy.stats import median_abs_deviation

DISTURBED = 1.25  # a round this much over the size's fastest round is left out
KEPT_AT_LEAST = 0.5  # of the rounds, the calmest: a few rounds' spread says little of the noise
ESTIMATES = ("paired", "median")


def calm_rounds(slowness) -> list:
    """The indices of the rounds to keep: those not over DISTURBED, or, where fewer than
    KEPT_AT_LEAST of them are, that many of the calmest. A machine that drifts or stays busy
    leaves few rounds under the line (a 2-core VM here: 7 of 15 calm, 4 of 15 beside a CPU
    burner, 2 in one CI run), and a median and spread of two rounds are no estimate."""
    count = len(slowness)
    calm = [i for i in range(count) if slowness[i] <= DISTURBED]
    least = math.ceil(KEPT_AT_LEAST * count)
    if len(calm) >= least:
        return calm
    return sorted(sorted(range(count), key=lambda i: slowness[i])[:least])


def relative_error(values) -> float | None:
    """The standard error of the median of `values` over the median, from their median absolute
    deviation scaled to a normal spread (so one wild round does not set it; the median's error
    is sqrt(pi/2) times the mean's); None (not known) below three values, whose spread says
    nothing."""
    if len(values) < 3:
        return None
    spread = median_abs_deviation(values, scale="normal")
    return math.sqrt(math.pi / 2) * spread / math.sqrt(len(values)) / statistics.median(values)


def _kept(times) -> list:
    fastest = min(times)
    return calm_rounds([t / fastest for t in times])


def estimate(rounds: dict, reference: int, how: str = "paired") -> dict:
    """From `rounds` ({size: {"fastest_s", "typical_s", "starts_s", and with "paired" the
    reference's fastest step timed right beside each round, "beside_s"}}, sizes as strings):
    {"step_s", "epoch_start_s", "ratio_error", "rounds_used"}, each {size: value}. The error is
    the relative standard error of a size's step over the reference's, the table's own noise
    (docs/method.md): what a modelled speedup can move by when the table is measured again (None
    where too few rounds tell it; the reference's is 0, as a speedup reads only ratios to it)."""
    ref = rounds.get(str(reference))
    paired = how == "paired" and ref is not None
    if paired:
        level_rounds = _kept(ref["fastest_s"])
        level = statistics.median(ref["typical_s"][i] for i in level_rounds)
    ref_error = relative_error(ref["typical_s"]) if ref is not None and not paired else 0.0
    out: dict = {"step_s": {}, "epoch_start_s": {}, "ratio_error": {}, "rounds_used": {}}
    for size, samples in rounds.items():
        typical = samples["typical_s"]
        if size == str(reference):
            step, used = (
                (level, len(level_rounds)) if paired else (statistics.median(typical), len(typical))
            )
            error: float | None = 0.0
        elif paired:
            pairs = list(zip(samples["fastest_s"], samples["beside_s"]))
            fastest = min(samples["fastest_s"]), min(samples["beside_s"])
            slowness = [max(a / fastest[0], b / fastest[1]) for a, b in pairs]
            ratios = [pairs[i][0] / pairs[i][1] for i in calm_rounds(slowness)]
            step, used, error = (
                level * statistics.median(ratios),
                len(ratios),
                relative_error(ratios),
            )
        else:
            own = relative_error(typical)
            step, used = statistics.median(typical), len(typical)
            error = None if own is None or ref_error is None else math.hypot(own, ref_error)
        out["step_s"][size], out["ratio_error"][size], out["rounds_used"][size] = step, error, used
        out["epoch_start_s"][size] = statistics.median(samples["starts_s"])
    return out


NOTHING_ADDED = {
    "rounds": {},
    "out_of_memory": [],
    "beyond_data": [],
    "order": [],
    "slow_throughout": False,
}


def joined(kept: dict, added: dict = NOTHING_ADDED, sizes=None) -> dict:
    """`kept` with the sizes `added` timed that it lacks (its own rounds are never replaced, so a
    size's step, and every speedup that reads it, stays what it was), restricted to `sizes`
    where given (with the reference): every stated number computed again from the rounds."""
    rounds = {**added["rounds"], **kept["rounds"]}
    if sizes is not None:
        wanted = {str(s) for s in sizes} | {str(kept["reference"])}
        rounds = {s: r for s, r in rounds.items() if s in wanted}
    new = set(added["rounds"]) - set(kept["rounds"])  # the order of the rounds the table holds
    order = [s for s in kept["order"] if str(s) in rounds] + [
        s for s in added["order"] if str(s) in new and str(s) in rounds
    ]
    out = {
        **added,
        **kept,
        "rounds": dict(sorted(rounds.items(), key=lambda kv: int(kv[0]))),
        "out_of_memory": sorted(set(kept["out_of_memory"]) | set(added["out_of_memory"])),
        "beyond_data": sorted(set(kept["beyond_data"]) | set(added["beyond_data"])),
        "order": order,
        "extra_rounds": kept["extra_rounds"] + added.get("extra_rounds", 0),
        "slow_throughout": kept["slow_throughout"] or added["slow_throughout"],
    }
    return {**out, **estimate(out["rounds"], out["reference"], out["estimate"])}
