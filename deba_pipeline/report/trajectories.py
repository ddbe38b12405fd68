"""Figures over epochs: each run's batch size, the learning rate its optimiser used, and the
DEBA signals against their thresholds."""

from __future__ import annotations

import statistics
from collections import defaultdict

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator, NullLocator

from deba_pipeline.core.record import signal
from deba_pipeline.core.rules.deba import confidence_score
from deba_pipeline.report.style import legend, method_labels, runs_by_method, save, size_axis, style

OFFSET = 0.025  # each method's step line is drawn this much higher than the previous one


def batch_trajectories(records, path):
    """Per architecture and dataset, the strategies compared (with the fixed batch) in one
    panel and DEBA's ablations (with DEBA) in another, one line per seed; each method's line
    sits a little above the previous one, so identical schedules stay visible."""
    groups = runs_by_method(records)
    sides = [("strategies", lambda label: "-" not in label)]
    if any("-" in label for methods in groups.values() for label in methods):
        sides.append(("ablations", lambda label: "-" in label or label == "deba"))
    fig, axes = plt.subplots(
        max(1, len(groups)),
        len(sides),
        squeeze=False,
        sharex=True,
        figsize=(5.5 * len(sides), 1.8 + 2.2 * len(groups)),
    )
    labels = method_labels(records)
    for row, ((arch, dataset), methods) in zip(axes, groups.items()):
        for ax, (side, wanted) in zip(row, sides):
            sizes = set()
            chosen = sorted((label, runs) for label, runs in methods.items() if wanted(label))
            for order, (label, runs) in enumerate(chosen):
                for i, r in enumerate(sorted(runs, key=lambda r: r["seed"])):
                    trajectory = [e["batch_size"] for e in r["epochs"]]
                    sizes.update(trajectory)
                    ax.step(
                        [e["epoch"] for e in r["epochs"]],
                        [b * (1 + OFFSET) ** order for b in trajectory],
                        where="post",
                        alpha=0.85,
                        linewidth=1.6,
                        markersize=3,
                        label=label if i == 0 else None,
                        **style(label, labels),
                    )
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
            size_axis(ax.set_yscale, ax.set_yticks, sizes)
            ax.yaxis.set_minor_locator(NullLocator())
            ax.tick_params(axis="y", labelsize=7)
            ax.set_ylabel("batch size")
            ax.set_title(f"{arch} / {dataset}: {side}", fontsize=9)
            legend(ax)
    fig.suptitle(
        "Batch size over epochs (one line per seed; lines offset slightly to show overlaps)"
    )
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    return save(fig, path)


def _confidence(record) -> list:
    """c_t of each epoch, from the run's σ² history and window (None where σ² is undefined)."""
    window = (record.get("config", {}).get("deba") or {}).get("window", 15)
    history, out = [], []
    for e in record["epochs"]:
        variance = signal(e, "grad_variance")
        if variance is None:
            out.append(None)
            continue
        history.append(variance)
        out.append(confidence_score(variance, history if window == "full" else history[-window:]))
    return out


def signal_trajectories(records, path):
    """c_t, Δ‖∇‖ and ΔL of the DEBA runs (mean over seeds) with the thresholds they met."""
    panels = (
        ("c_t", "θ_conf", (1,)),
        ("grad_norm_variation", "θ_stab, 3·θ_stab", (1, 3)),
        ("loss_variation", "θ_stab", (1,)),
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 8), sharex=True)
    for colour, ((arch, dataset), methods) in enumerate(runs_by_method(records, True).items()):
        runs = methods.get("deba", [])
        if not runs:
            continue
        deba = runs[0].get("config", {}).get("deba") or {}
        for (name, threshold_label, multiples), ax in zip(panels, axes):
            per_epoch = defaultdict(list)
            for r in runs:
                values = _confidence(r) if name == "c_t" else [signal(e, name) for e in r["epochs"]]
                for e, v in zip(r["epochs"], values):
                    if v is not None:
                        per_epoch[e["epoch"]].append(v)
            epochs = sorted(per_epoch)
            if not epochs:
                continue
            ax.plot(
                epochs,
                [statistics.fmean(per_epoch[t]) for t in epochs],
                color=f"C{colour}",
                label=f"{arch}/{dataset}",
            )
            ax.set_yscale("log")
            theta = deba.get("theta_conf" if name == "c_t" else "theta_stab")
            for k in multiples if theta is not None else ():
                ax.axhline(
                    k * theta, color=f"C{colour}", linestyle="--" if k == 1 else ":", linewidth=0.9
                )
            ax.set_ylabel(f"{name}\n(dashed: {threshold_label})", fontsize=8)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    axes[0].set_title("DEBA signals over epochs (mean over seeds) and their thresholds")
    axes[-1].set_xlabel("epoch")
    legend(axes[0])
    return save(fig, path)


def strategy_trajectories(records, path):
    """Per architecture and dataset, each strategy's batch size and the learning rate its
    optimiser used, epoch by epoch (one line per seed, each method's a little above the last)."""
    groups = {
        key: {label: runs for label, runs in methods.items() if "-" not in label}
        for key, methods in runs_by_method(records).items()
    }  # the main comparison only
    fig, axes = plt.subplots(
        max(1, len(groups)), 2, figsize=(10, 1.8 + 1.9 * len(groups)), sharex=True, squeeze=False
    )
    labels = method_labels(records)
    for row, ((arch, dataset), methods) in zip(axes, groups.items()):
        for order, (label, runs) in enumerate(sorted(methods.items())):
            for i, r in enumerate(sorted(runs, key=lambda r: r["seed"])):
                epochs = [e["epoch"] for e in r["epochs"]]
                for ax, field, lift in zip(row, ("batch_size", "lr"), (OFFSET, 0.0)):
                    ax.step(
                        epochs,
                        [e[field] * (1 + lift) ** order for e in r["epochs"]],
                        where="post",
                        alpha=0.85,
                        linewidth=2.6 - 0.5 * order * (not lift),
                        markersize=3,
                        label=label if i == 0 else None,
                        **style(label, labels),
                    )
        sizes = {e["batch_size"] for runs in methods.values() for r in runs for e in r["epochs"]}
        size_axis(row[0].set_yscale, row[0].set_yticks, sizes)
        row[0].yaxis.set_minor_locator(NullLocator())
        row[1].set_yscale("log")
        for ax, what in zip(row, ("batch size", "learning rate")):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
            ax.set_ylabel(what)
            ax.set_title(f"{arch} / {dataset}: {what}", fontsize=9)
        legend(row[0])
    fig.suptitle(
        "Strategies side by side: batch size (lines offset slightly to show overlaps) "
        "and learning rate over epochs"
    )
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    return save(fig, path)
