"""The comparison of a method against the fixed batch on one architecture and dataset, as one
frozen, typed value (`comparison.compare` computes it): the tables, metrics, answer, figures and
report read its fields and compute nothing of their own."""

from __future__ import annotations

from dataclasses import dataclass, field

MARGIN = 1.0  # points: report.non_inferiority's default, the ΔAcc a benefit may lose at most
Interval = tuple  # (low, high) at intervals.LEVEL, or None where too few values tell one


@dataclass(frozen=True)
class Cell:
    """A method against the fixed batch on one architecture and dataset, paired by seed: every
    number the tables, metrics, answer, figures and report read, computed once (`compare`).
    Accuracies in percent, ΔAcc and margins in points, times in seconds, speedups in percent of
    the fixed runs' time; intervals at LEVEL over seeds."""

    seeds: list = field(default_factory=list)
    margin: float = MARGIN  # report.non_inferiority: the ΔAcc a benefit may lose at most
    acc_fixed: list = field(default_factory=list)  # final test accuracy, a seed each
    acc_method: list = field(default_factory=list)
    delta_accs: list = field(default_factory=list)  # method − fixed, a seed each
    spread_floor: float | None = None  # the study's pooled per-seed ΔAcc spread
    test_se: float | None = None  # the test set's own term in the ΔAcc interval
    test_spread: float | None = None  # the spread the test set alone explains
    delta_acc_ci: Interval | None = None
    speedups: list = field(default_factory=list)  # measured, a seed each
    speedup_ci: Interval | None = None
    acc_fixed_mean: float | None = None
    acc_fixed_std: float | None = None
    acc_method_mean: float | None = None
    acc_method_std: float | None = None
    delta_acc: float | None = None
    time_fixed_mean: float | None = None
    time_fixed_std: float | None = None
    time_method_mean: float | None = None
    time_method_std: float | None = None
    speedup_mean: float | None = None
    speedup_std: float | None = None
    throughput: float | None = None  # fixed time over method time
    samples_per_s_fixed: float | None = None
    samples_per_s_method: float | None = None
    aggressiveness: float | None = None
    final_batch: float | None = None  # the last epoch's batch, mean over seeds
    took: str | None = None  # "grew at every chance" | "never adapted" | None
    increase: int = 0  # decisions over the method's runs, the last epoch's left out
    rollback: int = 0
    hold: int = 0
    batch_min: int | None = None
    batch_max: int | None = None
    noise_pct: float | None = None  # the fixed runs' clock noise
    speedup_noise: float | None = None  # √2 × the clock noise: two noisy times
    model_speedup_mean: float | None = None  # from the step-time table (docs/method.md)
    model_speedup_std: float | None = None
    model_throughput: float | None = None
    model_time_fixed_mean: float | None = None
    model_time_method_mean: float | None = None
    disagree: bool | None = None  # measured and modelled apart by more than the noise
    model_speedups: list | None = None
    model_speedup_ci: Interval | None = None
    model_ratio_fixed: float | None = None  # the fixed runs' modelled over measured time
    model_ratio_within_noise: bool | None = None
    model_ratio_beside: bool | None = None  # at the step timed beside each run
    model_speedup_table_noise: float | None = None  # half-width from the table's own noise
    verdict_speedup: float | None = None  # modelled where the table has it, else measured
    verdict_speedup_ci: Interval | None = None
    verdict_speedups: list = field(default_factory=list)
    speedup_basis: str = "measured"  # "modelled" | "measured"
    no_comparison: str | None = None  # why the fixed runs cannot stand as a baseline
    outcome: str = "inconclusive"
    seeds_needed: int | None = None
    seeds_needed_range: tuple | None = None
