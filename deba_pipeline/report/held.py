"""Whether the profile's prediction held (docs/method.md "Verdicts"): the class the profile put an
architecture in, against what its comparison's intervals decide. Pure functions over cells."""

from __future__ import annotations

from deba_pipeline.report.analysis import sample_std as _std
from deba_pipeline.report.cell import Cell
from deba_pipeline.report.intervals import at_least, below, excess_spread, span
from deba_pipeline.report.outcome import MIN_SEEDS

CLEAR_SPEEDUP = 10.0  # percent: a speedup at least this large is a benefit, not marginal


def prediction_held(prediction: str, c: Cell, seed_spread: float = 1.0) -> tuple:
    """("yes" | "no" | "inconclusive" | "n/a", why) for the profile's prediction against the
    outcome, "yes" or "no" only where the intervals over seeds decide it; the criteria are
    stated in the report's glossary."""
    delta, speed = c.delta_acc_ci, c.verdict_speedup_ci
    per_seed = c.delta_accs
    spread = _std(per_seed)
    facts = (
        f"ΔAcc {c.delta_acc:+.2f} {span(delta, 2, sign=True)}, {c.speedup_basis} "
        f"speedup {c.verdict_speedup:.1f}% {span(speed)}"
    )
    if c.no_comparison:
        return "n/a", f"{facts}: no comparison, the fixed baseline did not learn"
    if len(c.seeds) < MIN_SEEDS:
        return "n/a", (
            f"{facts}: {len(c.seeds)} seed{'s' if len(c.seeds) != 1 else ''}: "
            f"an outcome needs at least {MIN_SEEDS}"
        )
    if prediction == "benefit":
        held = _held(c.outcome == "benefit", c.outcome in ("degraded", "marginal"))
        return held, (f"{facts}: benefit needs ΔAcc ≥ −{c.margin:g} and a speedup > 0")
    if prediction == "marginal":
        held = _held(
            at_least(delta, -1) and (below(delta, 0) or below(speed, CLEAR_SPEEDUP)),
            below(delta, -1) or (at_least(delta, 0) and at_least(speed, CLEAR_SPEEDUP)),
        )
        return held, (
            f"{facts}: marginal needs ΔAcc ≥ −1 and no clear benefit (ΔAcc ≥ 0 with "
            f"a speedup ≥ {CLEAR_SPEEDUP:g}%)"
        )
    if prediction.startswith(("benefit through rollbacks", "unreliable")):
        if spread is None:
            return "n/a", f"{facts}: one seed, so the seed spread cannot be checked"
        line = max(c.test_spread or 0.0, seed_spread)
        dependent = excess_spread(per_seed, line)
        facts += (
            f", per-seed ΔAcc std {spread:.2f} against {line:.2f} (the larger of "
            f"{seed_spread:g} and what the test set explains)"
        )
        if prediction.startswith("benefit through rollbacks"):
            held = _held(
                c.outcome == "benefit" and c.rollback > 0 and dependent == "yes",
                c.outcome in ("degraded", "marginal") or c.rollback == 0 or dependent == "no",
            )
            return held, (
                f"{facts}, {c.rollback} rollbacks: needs a benefit, rollbacks, "
                f"and a spread above the line"
            )
        return dependent, f"{facts}: seed-dependent needs a spread above the line"
    return "n/a", f"{facts}: the class makes no prediction"


def _held(yes: bool, no: bool) -> str:
    return "yes" if yes else "no" if no else "inconclusive"
