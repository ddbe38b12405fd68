"""Intervals over seeds and what they allow one to say (docs/method.md, "Reading the numbers"):
Student t intervals of a mean, speedups on the log of their time ratio, the test set's own
term of a paired ΔAcc, bounds on a spread, and the seeds a verdict would need. Pure functions.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

LEVEL = 0.90  # two-sided confidence level of every interval over seeds
POWER = 0.80  # the chance a suggested number of seeds gives a verdict, if the spread holds


def t_interval(values, level: float = LEVEL):
    """(low, high): the Student t interval of the mean of per-seed values (paired by seed);
    None with fewer than two seeds, whose spread cannot be read."""
    values = list(values)
    if len(values) < 2 or any(v is None for v in values):
        return None
    mean = statistics.fmean(values)
    half = _t(level, len(values)) * statistics.stdev(values) / math.sqrt(len(values))
    return (mean - half, mean + half)


def speedup_interval(speedups, level: float = LEVEL):
    """(low, high) of a mean speedup (percent, 100·(1 − T_method/T_fixed) per seed), computed
    on the log of the time ratio and mapped back, so it never reaches 100% (a method taking no
    time) however spread the seeds are: the Student t interval of ln(T_method/T_fixed). None
    with fewer than two seeds, or a seed whose ratio is not positive."""
    speedups = list(speedups)
    if any(v is None or v >= 100 for v in speedups):
        return None
    logs = t_interval([math.log(1 - v / 100) for v in speedups], level)
    return None if logs is None else (100 * (1 - math.exp(logs[1])), 100 * (1 - math.exp(logs[0])))


def _t(level, n):
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, n - 1))


def seeds_needed(
    values,
    boundary: float,
    level: float = LEVEL,
    most: int = 1000,
    power: float = POWER,
    spread: float | None = None,
):
    """The seeds whose interval would lie on one side of `boundary` with probability `power`
    if the true mean and spread were the observed ones (`spread` in place of the observed):
    the least n with (t_level + t_power) · σ/√n ≤ |mean − boundary|, Student's t with n − 1
    degrees of freedom. None where that cannot be read (one seed) or no number up to `most`
    would do."""
    values = list(values)
    if len(values) < 2:
        return None
    gap = abs(statistics.fmean(values) - boundary)
    spread = statistics.stdev(values) if spread is None else spread
    if gap == 0:
        return None
    if spread == 0:
        return len(values)
    return next(
        (
            n
            for n in range(2, most + 1)
            if (_t(level, n) + _t_one(power, n)) * spread / math.sqrt(n) <= gap
        ),
        None,
    )


def seeds_needed_range(
    values, boundary: float, level: float = LEVEL, floor: float | None = None
) -> tuple | None:
    """(fewest, most) seeds `seeds_needed` asks for across the 80% interval of the true spread
    that the observed one allows (chi-square with k − 1 degrees of freedom: with two seeds the
    spread is known only within a factor of about 0.6-5), neither below `floor`; the most None
    where it passes 1000."""
    bounds = spread_bounds(values, 0.9)
    if bounds is None or statistics.stdev(values) == 0:
        return None
    low, high = (max(b, floor or 0.0) for b in bounds)
    return (
        seeds_needed(values, boundary, level, spread=low),
        seeds_needed(values, boundary, level, spread=high),
    )


def _t_one(power, n):
    from scipy.stats import t

    return float(t.ppf(power, n - 1))


def above(ci, x) -> bool:
    return ci is not None and ci[0] > x


def at_least(ci, x) -> bool:
    return ci is not None and ci[0] >= x


def below(ci, x) -> bool:
    return ci is not None and ci[1] < x


def at_most(ci, x) -> bool:
    return ci is not None and ci[1] <= x


def straddles(ci, x) -> bool:
    return ci is None or ci[0] < x < ci[1]


def widened(ci, mean, half: float | None):
    """`ci` with `half` (another noise's half-width at the same level, independent of the seeds'
    spread) added in quadrature; `ci` as it is where `half` is not known."""
    if ci is None or half is None:
        return ci
    own = (ci[1] - ci[0]) / 2
    total = math.hypot(own, half)
    return (mean - total, mean + total)


def span(ci, digits: int = 1, sign: bool = False) -> str:
    """`[low, high]` of an interval, or `[n/a]` with one seed."""
    if ci is None:
        return "[n/a]"
    form = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"[{form.format(ci[0])}, {form.format(ci[1])}]"


def delta_interval(
    deltas, floor: float | None = None, test_se: float | None = None, level: float = LEVEL
):
    """(low, high) of a mean ΔAcc (points) over seeds: the Student t interval with the seeds'
    spread floored by `floor` (the spread pooled over the study's cells, so that two or three
    seeds that happen to agree do not make a narrow interval), widened in quadrature by the test
    set's own term (`test_se`, a standard error read as normal): the seeds share one test set,
    whose sampling no spread over seeds can show. None with fewer than two seeds."""
    deltas = list(deltas)
    if len(deltas) < 2 or any(d is None for d in deltas):
        return None
    k, mean = len(deltas), statistics.fmean(deltas)
    spread = max(statistics.stdev(deltas), floor or 0.0)
    seeds_half = _t(level, k) * spread / math.sqrt(k)
    test_half = 0.0 if test_se is None else _z(level) * test_se
    half = math.hypot(seeds_half, test_half)
    return (mean - half, mean + half)


def test_set_terms(fixed_hits, method_hits) -> tuple | None:
    """(se, spread) in points from each seed's per-sample results on the test set (bool arrays,
    paired by seed): `se`, the standard error that sampling the test set puts on the mean ΔAcc
    (the spread over samples of the seeds' mean right-minus-wrong, over √n: McNemar's
    discordant pairs for one seed); `spread`, the per-seed ΔAcc spread that sampling alone would
    give two models differing at random on their discordant samples. None where a run lacks its
    per-sample results or the pair saw test sets of different sizes."""
    pairs = list(zip(fixed_hits, method_hits))
    if not pairs or any(a is None or b is None for a, b in pairs):
        return None
    n = pairs[0][0].size
    if n < 2 or any(a.size != n or b.size != n for a, b in pairs):
        return None
    per_seed = [b.astype(np.int8) - a.astype(np.int8) for a, b in pairs]
    se = 100.0 * float(np.std(np.mean(per_seed, axis=0), ddof=1)) / math.sqrt(n)
    spread = 100.0 * math.sqrt(statistics.fmean(float(np.var(d, ddof=1)) for d in per_seed) / n)
    return se, spread


def pooled_spread(groups) -> float | None:
    """The spread pooled over groups of per-seed values (each group one cell): √(Σ(kᵢ−1)sᵢ² /
    Σ(kᵢ−1)); None where no group has two values."""
    groups = [list(g) for g in groups if len(g) >= 2]
    dof = sum(len(g) - 1 for g in groups)
    if not dof:
        return None
    return math.sqrt(sum((len(g) - 1) * statistics.variance(g) for g in groups) / dof)


def spread_bounds(values, level: float = LEVEL) -> tuple | None:
    """(low, high): one-sided `level` bounds on the true spread of `values` (chi-square with
    k − 1 degrees of freedom); None with fewer than two values."""
    from scipy.stats import chi2

    values = list(values)
    if len(values) < 2:
        return None
    s, dof = statistics.stdev(values), len(values) - 1
    return (
        s * math.sqrt(dof / chi2.ppf(level, dof)),
        s * math.sqrt(dof / chi2.ppf(1 - level, dof)),
    )


def excess_spread(values, line: float, level: float = LEVEL) -> str:
    """ "yes" where the true spread of `values` is above `line` (its lower bound is), "no" where
    it is below (its upper bound is), "inconclusive" otherwise or with one value."""
    bounds = spread_bounds(values, level)
    if bounds is None:
        return "inconclusive"
    return "yes" if bounds[0] > line else "no" if bounds[1] < line else "inconclusive"


def _z(level):
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))
