"""Figures 1-3 and the batch-size and signal trajectories, as PNG files, from run records."""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..record import signal  # noqa: E402

SIGNALS = ("grad_variance", "grad_norm_variation", "loss_variation")


def _by_batch(records, field, dataset=None):
    """{arch: {batch size: mean of `field` (an epoch field or a signal) over every epoch run at
    that size}}."""
    values = defaultdict(lambda: defaultdict(list))
    for r in records:
        if dataset is not None and r["dataset"] != dataset:
            continue
        for e in r["epochs"]:
            value = e[field] if field in e else signal(e, field)
            if value is not None and e.get("batch_size"):
                values[r["arch"]][e["batch_size"]].append(value)
    return {arch: {b: statistics.fmean(v) for b, v in sorted(sizes.items())}
            for arch, sizes in sorted(values.items())}


def _legend(ax):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def _versus_batch(data, ylabel, title, path, logy=False):
    fig, ax = plt.subplots(figsize=(6, 4))
    for arch, points in data.items():
        ax.plot(list(points), list(points.values()), marker="o", label=arch)
    ax.set_xscale("log", base=2)
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


def _deba_runs(records):
    runs = defaultdict(list)
    for r in records:
        if r["method"] != "fixed" and r["variant"] == "baseline":
            runs[(r["arch"], r["dataset"])].append(r)
    return dict(sorted(runs.items()))


def batch_trajectories(records, path):
    """One panel per architecture and dataset, one step line per seed."""
    runs = _deba_runs(records)
    fig, axes = plt.subplots(max(1, len(runs)), 1, figsize=(7, 1.8 + 1.6 * len(runs)),
                             sharex=True, squeeze=False)
    for ax, ((arch, dataset), group) in zip(axes[:, 0], runs.items()):
        for r in sorted(group, key=lambda r: r["seed"]):
            ax.step([e["epoch"] for e in r["epochs"]], [e["batch_size"] for e in r["epochs"]],
                    where="post", label=f"seed {r['seed']}")
        ax.set_yscale("log", base=2)
        ax.set_ylabel("batch size")
        ax.set_title(f"{arch} / {dataset}", fontsize=9)
        _legend(ax)
    axes[0, 0].figure.suptitle("DEBA batch size over epochs")
    axes[-1, 0].set_xlabel("epoch")
    return _save(fig, path)


def signal_trajectories(records, path):
    runs = _deba_runs(records)
    fig, axes = plt.subplots(len(SIGNALS), 1, figsize=(7, 8), sharex=True)
    for name, ax in zip(SIGNALS, axes):
        for (arch, dataset), group in runs.items():
            per_epoch = defaultdict(list)
            for r in group:
                for e in r["epochs"]:
                    if signal(e, name) is not None:
                        per_epoch[e["epoch"]].append(signal(e, name))
            if per_epoch:
                epochs = sorted(per_epoch)
                ax.plot(epochs, [statistics.fmean(per_epoch[t]) for t in epochs],
                        label=f"{arch}/{dataset}")
        ax.set_yscale("log")
        ax.set_ylabel(name)
    axes[0].set_title("DEBA signals over epochs (mean over seeds)")
    axes[-1].set_xlabel("epoch")
    _legend(axes[0])
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
    return written
