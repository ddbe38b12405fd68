"""A batch trajectory replayed through the progress model (docs/method.md "prediction"): how far
each epoch gets, how long it takes on a step-time table, and when it reaches the progress at
which the profile's fixed run reached its target accuracy. Pure functions over records and
tables."""

from __future__ import annotations

import math
from dataclasses import dataclass

from deba_pipeline.prediction.model import NoiseCurve, progress_after


def profile_curve(record: dict) -> NoiseCurve | None:
    """The noise scale over a profile run's epochs (progress in its own steps), from each epoch's
    `gradient` parts; None where a record has none (a record from before they were kept)."""
    ends, noise, done = [], [], 0.0
    for e in record["epochs"]:
        parts = e.get("gradient")
        if not parts:
            return None
        done += e["steps"]
        ends.append(done)
        noise.append(parts["trace"] / parts["sqr"] if parts["sqr"] > 0 else math.inf)
    return NoiseCurve(record["config"]["train"]["batch_size"], tuple(ends), tuple(noise))


def noise_error(record: dict) -> float | None:
    """The typical relative error of an epoch's noise scale: the median over epochs of half the
    relative difference of its two halves' estimates (None where a half is undefined)."""
    errors = []
    for e in record["epochs"]:
        halves = (e.get("gradient") or {}).get("halves") or []
        scales = [t / s for s, t in halves if s > 0]
        if len(scales) == 2 and sum(scales) > 0:
            errors.append(abs(scales[0] - scales[1]) / (scales[0] + scales[1]))
    return sorted(errors)[len(errors) // 2] if errors else None


def progress_at_accuracy(record: dict, target: float) -> float | None:
    """Base steps at which a fixed-batch run's test accuracy first reaches `target`,
    interpolated within the epoch that crosses it from the previous epoch's end (from chance at
    0 for the first), as time to accuracy is read; None where it never does."""
    classes = record.get("num_classes")
    before, done = (100.0 / classes if classes else None), 0.0
    for e in record["epochs"]:
        accuracy = e["test_accuracy"]
        if accuracy >= target:
            share = (
                1.0
                if before is None or accuracy <= before
                else min(1.0, max(0.0, (target - before) / (accuracy - before)))
            )
            return done + share * e["steps"]
        done += e["steps"]
        before = accuracy
    return None


@dataclass(frozen=True)
class Epoch:
    batch: int
    lr_factor: float | None  # η/η₀; None: AdaScale's rate, so the gain itself


def epoch_seconds(table: dict, batch: int, steps: int) -> float:
    """An epoch's seconds on `table`: steps × the step time at `batch` plus its epoch start; a
    size between two measured ones takes the straight line between them (a rollback after a
    growth lands off the ladder: 96 × 0.8 = 76)."""
    times = {int(s): v for s, v in table["step_s"].items()}
    starts = {int(s): v for s, v in (table.get("epoch_start_s") or {}).items()}
    if batch in times:
        return steps * times[batch] + starts.get(batch, 0.0)
    below = [s for s in times if s < batch]
    above = [s for s in times if s > batch]
    if not below or not above:
        raise KeyError(
            f"the step-time table has no batch size {batch} (it holds {min(times)}..{max(times)})"
        )
    low, high = max(below), min(above)
    share = (batch - low) / (high - low)
    step = times[low] + share * (times[high] - times[low])
    start = starts.get(low, 0.0) + share * (starts.get(high, 0.0) - starts.get(low, 0.0))
    return steps * step + start


def time_to_progress(
    curve: NoiseCurve, epochs: list, table: dict, train_size: int, target: float, transfer: float
) -> float:
    """Seconds on `table` until `epochs` (then their last batch, as if training went on) reach
    progress `target`, interpolated within the epoch that crosses it; inf where it stops
    progressing first."""
    done, seconds, last = 0.0, 0.0, None
    for index in range(10_000):  # far beyond any schedule: the last batch goes on
        last = epochs[index] if index < len(epochs) else last
        steps = train_size // last.batch
        after = progress_after(curve, last.batch, done, steps, last.lr_factor, transfer)
        took = epoch_seconds(table, last.batch, steps)
        if after >= target:
            return seconds + took * (target - done) / (after - done)
        if after <= done:
            return math.inf
        done, seconds = after, seconds + took
    return math.inf


def speedup(curve, epochs, table, train_size, target, transfer) -> float:
    """Percent of the fixed batch's time to `target` progress that `epochs` save."""
    fixed = [Epoch(curve.base, 1.0)]
    base = time_to_progress(curve, fixed, table, train_size, target, transfer)
    mine = time_to_progress(curve, epochs, table, train_size, target, transfer)
    return 100 * (1 - mine / base) if math.isfinite(mine) else -math.inf


def progress_at_end(curve: NoiseCurve, epochs: list, train_size: int, transfer: float) -> float:
    """Base steps `epochs` cover by their end."""
    done = 0.0
    for e in epochs:
        done = progress_after(curve, e.batch, done, train_size // e.batch, e.lr_factor, transfer)
    return done


def accuracy_at(record: dict, progress: float) -> float:
    """A fixed-batch run's test accuracy at `progress` base steps, read off its epoch ends
    (linearly between them, from chance at 0; its last epoch's beyond its end)."""
    classes = record.get("num_classes")
    before, done = (100.0 / classes if classes else 0.0), 0.0
    for e in record["epochs"]:
        if progress <= done + e["steps"]:
            share = (progress - done) / e["steps"]
            return before + share * (e["test_accuracy"] - before)
        done, before = done + e["steps"], e["test_accuracy"]
    return before


def trajectory(record: dict) -> list:
    """A run's own epochs: its batch sizes and the learning-rate factor it trained each at."""
    lr = record["config"]["train"]["lr"]
    return [Epoch(e["batch_size"], e["lr"] / lr if lr else 1.0) for e in record["epochs"]]
