"""Figures 1-3 and the batch-size and signal trajectories, as PNG files, from run records. Every
line is one method (fixed, DEBA, each ablation) of one architecture: methods are never pooled."""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from ..record import signal  # noqa: E402
from ..rules.deba import confidence_score  # noqa: E402
from .curves import method_label, value  # noqa: E402


def _by_batch(records, field, dataset=None):
    """{"arch · method": {batch size: mean of `field` over every epoch run at that size}}."""
    values = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["variant"] == "profile" or (dataset is not None and r["dataset"] != dataset):
            continue
        for e in r["epochs"]:
            if value(e, field) is not None and e.get("batch_size"):
                values[f"{r['arch']} · {method_label(r)}"][e["batch_size"]].append(value(e, field))
    return {line: {b: statistics.fmean(v) for b, v in sorted(sizes.items())}
            for line, sizes in sorted(values.items())}


def _legend(ax):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, ncol=2)


def _size_axis(set_scale, set_ticks, sizes):
    """A log-2 batch-size axis labelled with exactly the sizes that occur."""
    set_scale("log", base=2)
    set_ticks(sorted(sizes), [str(s) for s in sorted(sizes)])


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def _versus_batch(data, ylabel, title, path, logy=False):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for line, points in data.items():
        ax.plot(list(points), list(points.values()), marker="o", label=line)
    sizes = {b for points in data.values() for b in points}
    if sizes:
        _size_axis(ax.set_xscale, ax.set_xticks, sizes)
        ax.xaxis.set_minor_locator(NullLocator())
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel="batch size", ylabel=ylabel, title=title)
    _legend(ax)
    return _save(fig, path)


def figure1(records, path):
    return _versus_batch(_by_batch(records, "epoch_time_s"), "training time per epoch (s)",
                         "Figure 1: time per epoch against batch size", path)


def figure_variance(records, dataset, number, path):
    return _versus_batch(_by_batch(records, "grad_variance", dataset), "gradient variance σ²",
                         f"Figure {number}: gradient variance against batch size ({dataset})",
                         path, logy=True)


def _groups(records, methods_only=False):
    """{(arch, dataset): {method label: [runs]}} of the comparison and ablation runs."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["variant"] != "profile" and not (methods_only and r["method"] == "fixed"):
            groups[(r["arch"], r["dataset"])][method_label(r)].append(r)
    return dict(sorted(groups.items()))


def batch_trajectories(records, path):
    """One panel per architecture and dataset, one colour per method, one line per seed."""
    groups = _groups(records)
    fig, axes = plt.subplots(max(1, len(groups)), 1, figsize=(7, 1.8 + 1.9 * len(groups)),
                             sharex=True, squeeze=False)
    for ax, ((arch, dataset), methods) in zip(axes[:, 0], groups.items()):
        sizes = set()
        for colour, (label, runs) in enumerate(sorted(methods.items())):
            for i, r in enumerate(sorted(runs, key=lambda r: r["seed"])):
                trajectory = [e["batch_size"] for e in r["epochs"]]
                sizes.update(trajectory)
                ax.step([e["epoch"] for e in r["epochs"]], trajectory, where="post",
                        color=f"C{colour}", alpha=0.8, linewidth=1.2,
                        label=label if i == 0 else None)
        _size_axis(ax.set_yscale, ax.set_yticks, sizes)
        ax.yaxis.set_minor_locator(NullLocator())
        ax.tick_params(axis="y", labelsize=6)
        ax.set_ylabel("batch size")
        ax.set_title(f"{arch} / {dataset} (one line per seed)", fontsize=9)
        _legend(ax)
    axes[0, 0].figure.suptitle("Batch size over epochs, per method")
    axes[-1, 0].set_xlabel("epoch")
    return _save(fig, path)


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
    panels = (("c_t", "θ_conf", (1,)), ("grad_norm_variation", "θ_stab, 3·θ_stab", (1, 3)),
              ("loss_variation", "θ_stab", (1,)))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 8), sharex=True)
    for colour, ((arch, dataset), methods) in enumerate(_groups(records, True).items()):
        runs = methods.get("deba", [])
        if not runs:
            continue
        deba = runs[0].get("config", {}).get("deba") or {}
        for (name, threshold_label, multiples), ax in zip(panels, axes):
            per_epoch = defaultdict(list)
            for r in runs:
                values = _confidence(r) if name == "c_t" else \
                    [signal(e, name) for e in r["epochs"]]
                for e, v in zip(r["epochs"], values):
                    if v is not None:
                        per_epoch[e["epoch"]].append(v)
            epochs = sorted(per_epoch)
            if not epochs:
                continue
            ax.plot(epochs, [statistics.fmean(per_epoch[t]) for t in epochs], color=f"C{colour}",
                    label=f"{arch}/{dataset}")
            ax.set_yscale("log")
            theta = deba.get("theta_conf" if name == "c_t" else "theta_stab")
            for k in multiples if theta is not None else ():
                ax.axhline(k * theta, color=f"C{colour}", linestyle="--" if k == 1 else ":",
                           linewidth=0.9)
            ax.set_ylabel(f"{name}\n(dashed: {threshold_label})", fontsize=8)
    axes[0].set_title("DEBA signals over epochs (mean over seeds) and their thresholds")
    axes[-1].set_xlabel("epoch")
    _legend(axes[0])
    return _save(fig, path)


def strategy_trajectories(records, path):
    """SPEC §6 side by side: per architecture and dataset, each strategy's batch size and the
    learning rate its optimiser used, epoch by epoch (one line per seed)."""
    groups = {key: {label: runs for label, runs in methods.items() if "-" not in label}
              for key, methods in _groups(records).items()}  # the main comparison only
    fig, axes = plt.subplots(max(1, len(groups)), 2, figsize=(10, 1.8 + 1.9 * len(groups)),
                             sharex=True, squeeze=False)
    for row, ((arch, dataset), methods) in zip(axes, groups.items()):
        for colour, (label, runs) in enumerate(sorted(methods.items())):
            for i, r in enumerate(sorted(runs, key=lambda r: r["seed"])):
                epochs = [e["epoch"] for e in r["epochs"]]
                for ax, field in zip(row, ("batch_size", "lr")):
                    ax.step(epochs, [e[field] for e in r["epochs"]], where="post",
                            color=f"C{colour}", alpha=0.8, linewidth=1.2,
                            label=label if i == 0 else None)
        for ax, what in zip(row, ("batch size", "learning rate")):
            ax.set_yscale("log")
            ax.set_ylabel(what)
            ax.set_title(f"{arch} / {dataset}: {what}", fontsize=9)
        _legend(row[0])
    fig.suptitle("Strategies side by side: batch size and learning rate over epochs")
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    return _save(fig, path)


def write_all(records, out_dir) -> list:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [figure1(records, out / "figure1_time_per_epoch.png")]
    datasets = sorted({r["dataset"] for r in records}, key=lambda d: (d != "cifar10", d))
    for number, dataset in enumerate(datasets[:2], start=2):
        written.append(figure_variance(records, dataset, number,
                                       out / f"figure{number}_grad_variance_{dataset}.png"))
    written.append(batch_trajectories(records, out / "batch_size_trajectories.png"))
    written.append(signal_trajectories(records, out / "signal_trajectories.png"))
    if len({r["method"] for r in records if r["variant"] == "baseline"} - {"fixed"}) > 1:
        written.append(strategy_trajectories(records, out / "strategy_trajectories.png"))
    return written
