"""What the paper computes from profile runs (docs/method.md): stability, taxonomy and calibration,
and a run's decision aggressiveness. Pure functions over records; no I/O. The fixed-versus-method
comparisons are in comparison.py."""

from __future__ import annotations

import statistics
from collections import defaultdict

import numpy as np

from deba_pipeline.core.errors import DebaError
from deba_pipeline.core.record import signal
from deba_pipeline.core.rules.deba import confidence_score


def sample_std(values):
    return statistics.stdev(values) if len(values) > 1 else None


# -- docs/method.md: profiling
# ------------------------------------------------------------------------
def stability_score(record) -> float:
    """S = 1 / (1 + CV(σ²_g) + mean Var(‖∇L‖) + mean Var(L)), over the run's epochs."""
    variances = [signal(e, "grad_variance") for e in record["epochs"]]
    cv = statistics.pstdev(variances) / statistics.fmean(variances)
    return 1.0 / (
        1.0
        + cv
        + statistics.fmean(e["grad_norm_var"] for e in record["epochs"])
        + statistics.fmean(e["loss_var"] for e in record["epochs"])
    )


def convergence_stability(record) -> float:
    """Standard deviation (population) of the per-epoch training loss over the run."""
    return statistics.pstdev(e["train_loss"] for e in record["epochs"])


def aggressiveness(record) -> float:
    """(n_increase − n_rollback) / max(1, n_increase + n_rollback), over the decisions that took
    effect: the last epoch's changes nothing, no epoch following it."""
    decisions = [e["decision"] for e in record["epochs"][:-1]]
    up, down = decisions.count("increase"), decisions.count("rollback")
    return (up - down) / max(1, up + down)


def classify(mu, sigma, bounds) -> str:
    """docs/method.md taxonomy, tested in this order."""
    if sigma is not None and sigma > bounds["dynamic_sigma"]:
        return "dynamically stable"
    if mu < bounds["unstable_mu"]:
        return "naturally unstable"
    if mu > bounds["overly_mu"]:
        return "overly stable"
    if bounds["moderate_low"] <= mu <= bounds["overly_mu"]:
        return "moderately stable"
    return "intermediate"


def predict(cls: str, convergence, bounds) -> str:
    """Paper §5.3.1: what the class says DEBA will do."""
    if cls == "moderately stable":
        return "benefit"
    if cls == "overly stable":
        return "benefit" if convergence < bounds["stagnation"] else "marginal"
    if cls == "dynamically stable":
        return "benefit through rollbacks, seed-sensitive"
    if cls == "naturally unstable":
        return "unreliable, seed-dependent"
    return "no prediction (intermediate)"


def _profiles(records):
    """Profile runs grouped by (arch, dataset), sorted, each group ordered by seed."""
    groups = defaultdict(list)
    for r in records:
        if r["variant"] == "profile":
            groups[(r["arch"], r["dataset"])].append(r)
    return [(key, sorted(runs, key=lambda r: r["seed"])) for key, runs in sorted(groups.items())]


def profile_summary(records, bounds) -> dict:
    """{arch: {dataset: {S per seed, μ_S, σ_S, convergence stability, class, prediction}}}."""
    out: dict = defaultdict(dict)
    for (arch, dataset), runs in _profiles(records):
        scores = {r["seed"]: stability_score(r) for r in runs}
        mu, sigma = statistics.fmean(scores.values()), sample_std(list(scores.values()))
        convergence = statistics.fmean(convergence_stability(r) for r in runs)
        cls = classify(mu, sigma, bounds)
        out[arch][dataset] = {
            "S": scores,
            "mu_S": mu,
            "sigma_S": sigma,
            "convergence_stability": convergence,
            "class": cls,
            "prediction": predict(cls, convergence, bounds),
        }
    return dict(out)


def calibrate(records, window) -> dict:
    """θ_stab = 75th percentile of Δ‖∇‖_t; θ_conf = median of c_t; profile seeds pooled.
    Epochs where a signal is undefined are skipped."""
    out: dict = defaultdict(dict)
    for (arch, dataset), runs in _profiles(records):
        norm_variation, confidence = [], []
        for r in runs:
            history = []
            for e in r["epochs"]:
                variance = signal(e, "grad_variance")
                if variance is not None:
                    history.append(variance)
                    recent = history if window == "full" else history[-window:]
                    confidence.append(confidence_score(variance, recent))
                if signal(e, "grad_norm_variation") is not None:
                    norm_variation.append(signal(e, "grad_norm_variation"))
        if not norm_variation or not confidence:
            raise DebaError(
                f"cannot calibrate {arch}/{dataset}: its profile runs have no epoch "
                f"with a defined Δ‖∇‖ and c_t (they need at least 2 epochs): raise "
                f"train.epochs and rerun the profile stage."
            )
        out[arch][dataset] = {
            "theta_stab": float(np.percentile(norm_variation, 75)),
            "theta_conf": float(np.median(confidence)),
            "epochs": len(confidence),
            "runs": len(runs),
        }
    return dict(out)
