"""What the paper computes from run records (SPEC §2, §4): stability, taxonomy, calibration,
and the fixed-versus-method comparisons. Pure functions over records; no I/O."""
from __future__ import annotations

import statistics
from collections import defaultdict

import numpy as np

from .errors import DebaError
from .record import signal
from .rules.deba import confidence_score


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _sample_std(values):
    return statistics.stdev(values) if len(values) > 1 else None


# -- SPEC §2: profiling ------------------------------------------------------------------------
def stability_score(record) -> float:
    """S = 1 / (1 + CV(σ²_g) + mean Var(‖∇L‖) + mean Var(L)), over the run's epochs."""
    variances = [signal(e, "grad_variance") for e in record["epochs"]]
    cv = statistics.pstdev(variances) / statistics.fmean(variances)
    return 1.0 / (1.0 + cv + statistics.fmean(e["grad_norm_var"] for e in record["epochs"])
                  + statistics.fmean(e["loss_var"] for e in record["epochs"]))


def convergence_stability(record) -> float:
    """Standard deviation (population) of the per-epoch training loss over the run."""
    return statistics.pstdev(e["train_loss"] for e in record["epochs"])


def aggressiveness(record) -> float:
    """(n_increase − n_rollback) / max(1, n_increase + n_rollback)."""
    decisions = [e["decision"] for e in record["epochs"]]
    up, down = decisions.count("increase"), decisions.count("rollback")
    return (up - down) / max(1, up + down)


def classify(mu, sigma, bounds) -> str:
    """SPEC §2 taxonomy, tested in this order."""
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
        mu, sigma = statistics.fmean(scores.values()), _sample_std(list(scores.values()))
        convergence = statistics.fmean(convergence_stability(r) for r in runs)
        cls = classify(mu, sigma, bounds)
        out[arch][dataset] = {"S": scores, "mu_S": mu, "sigma_S": sigma,
                              "convergence_stability": convergence, "class": cls,
                              "prediction": predict(cls, convergence, bounds)}
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
            raise DebaError(f"cannot calibrate {arch}/{dataset}: its profile runs have no epoch "
                            f"with a defined Δ‖∇‖ and c_t (they need at least 2 epochs): raise "
                            f"train.epochs and rerun the profile stage.")
        out[arch][dataset] = {"theta_stab": float(np.percentile(norm_variation, 75)),
                              "theta_conf": float(np.median(confidence)),
                              "epochs": len(confidence), "runs": len(runs)}
    return dict(out)


# -- SPEC §4: fixed against a method -----------------------------------------------------------
def compare(records, variant="baseline", baseline_variant="baseline") -> dict:
    """{(arch, dataset): comparison of `variant` DEBA runs against the fixed baseline runs}."""
    fixed, method = defaultdict(dict), defaultdict(dict)
    for r in records:
        key = (r["arch"], r["dataset"])
        if r["method"] == "fixed" and r["variant"] == baseline_variant:
            fixed[key][r["seed"]] = r
        elif r["method"] != "fixed" and r["variant"] == variant:
            method[key][r["seed"]] = r
    out = {}
    for key in sorted(set(fixed) & set(method)):
        seeds = sorted(set(fixed[key]) & set(method[key]))
        if not seeds:
            continue
        f = [fixed[key][s] for s in seeds]
        m = [method[key][s] for s in seeds]
        acc_f = [r["final_test_accuracy"] for r in f]
        acc_m = [r["final_test_accuracy"] for r in m]
        t_f = [r["train_time_s"] for r in f]
        t_m = [r["train_time_s"] for r in m]
        speedups = [100.0 * (a - b) / a for a, b in zip(t_f, t_m)]
        out[key] = {
            "seeds": seeds, "acc_fixed": acc_f, "acc_method": acc_m,
            "acc_fixed_mean": statistics.fmean(acc_f), "acc_fixed_std": _sample_std(acc_f),
            "acc_method_mean": statistics.fmean(acc_m), "acc_method_std": _sample_std(acc_m),
            "delta_acc": statistics.fmean(acc_m) - statistics.fmean(acc_f),
            "time_fixed_mean": statistics.fmean(t_f), "time_fixed_std": _sample_std(t_f),
            "time_method_mean": statistics.fmean(t_m), "time_method_std": _sample_std(t_m),
            "speedup_mean": statistics.fmean(speedups), "speedup_std": _sample_std(speedups),
            "throughput": statistics.fmean(t_f) / statistics.fmean(t_m),
            "aggressiveness": _mean(aggressiveness(r) for r in m),
            "rollbacks": sum(e["decision"] == "rollback" for r in m for e in r["epochs"]),
        }
    return out


def summary_rows(delta_accs) -> dict:
    """Table 3's summary: architectures degraded by more than 1 point, and mean |ΔAcc|."""
    values = list(delta_accs)
    return {"degraded": sum(d < -1 for d in values), "total": len(values),
            "mean_abs_delta_acc": statistics.fmean(abs(d) for d in values) if values else None}


def outcome(comparison) -> str:
    """What DEBA did, in the prediction's words: benefit, degraded or marginal."""
    if comparison["delta_acc"] < -1:
        return "degraded"
    if comparison["delta_acc"] >= 0 and comparison["speedup_mean"] > 0:
        return "benefit"
    return "marginal"


def prediction_held(prediction: str, comparison) -> str:
    result = outcome(comparison)
    spread = _sample_std([b - a for a, b in zip(comparison["acc_fixed"], comparison["acc_method"])])
    if prediction == "benefit":
        return "yes" if result == "benefit" else "no"
    if prediction == "marginal":
        return "yes" if result != "benefit" or comparison["speedup_mean"] < 10 else "no"
    if prediction.startswith("benefit through rollbacks"):
        return "yes" if result == "benefit" and comparison["rollbacks"] > 0 else "no"
    if prediction.startswith("unreliable"):
        seed_dependent = spread is not None and spread > 1
        return "yes" if seed_dependent or result != "benefit" else "no"
    return "n/a"
