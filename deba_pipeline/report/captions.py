"""The words REPORT.md prints around its numbers: each table's caption and the glossary, with
placeholders for the settings they quote."""

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
