"""Figures 1-3 and the batch-size and signal trajectories, as PNG files, from run records. Every
line is one method (fixed, DEBA, each ablation) of one architecture: methods are never pooled."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from pathlib import Path

from matplotlib.ticker import NullLocator

from deba_pipeline.report.curves import method_label, value
from deba_pipeline.report.modelled import epoch_times
from deba_pipeline.report.style import (
    legend,
    method_labels,
    panels,
    runs_by_method,
    save,
    size_axis,
    style,
)
from deba_pipeline.report.trajectories import (
    batch_trajectories,
    signal_trajectories,
    strategy_trajectories,
)


def _by_batch(records, field, dataset=None):
    """{arch: {method: {batch size: mean of `field` over every epoch run at that size}}}."""
    values = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in records:
        if r["variant"] == "profile" or (dataset is not None and r["dataset"] != dataset):
            continue
        for e in r["epochs"]:
            if value(e, field) is not None and e.get("batch_size"):
                values[r["arch"]][method_label(r)][e["batch_size"]].append(value(e, field))
    return {
        arch: {
            line: {b: statistics.fmean(v) for b, v in sorted(sizes.items())}
            for line, sizes in sorted(lines.items())
        }
        for arch, lines in sorted(values.items())
    }


def _versus_batch(data, ylabel, title, path, logy=False):
    """One panel per architecture, one line per method (its own style in every panel)."""
    labels = sorted({line for lines in data.values() for line in lines})
    fig, axes = panels(len(data))
    for ax, (arch, lines) in zip(axes, data.items()):
        for order, (line, points) in enumerate(lines.items()):
            ax.plot(
                list(points),
                list(points.values()),
                label=line,
                markersize=4,
                linewidth=2.2 - 0.15 * order,
                alpha=0.9,
                **style(line, labels),
            )
        sizes = {b for points in lines.values() for b in points}
        if sizes:
            size_axis(ax.set_xscale, ax.set_xticks, sizes)
            ax.xaxis.set_minor_locator(NullLocator())
            ax.tick_params(axis="x", labelsize=7)
        if logy:
            ax.set_yscale("log")
        ax.set(xlabel="batch size", ylabel=ylabel)
        ax.set_title(arch, fontsize=9)
    legend(axes[0])
    fig.suptitle(title)
    return save(fig, path)


def figure1(records, path):
    return _versus_batch(
        _by_batch(records, "epoch_time_s"),
        "training time per epoch, measured (s, wall clock)",
        "Figure 1: measured time per epoch against batch size (wall clock, "
        "with what else the machine ran)",
        path,
    )


def figure_variance(records, dataset, number, path):
    return _versus_batch(
        _by_batch(records, "grad_variance", dataset),
        "gradient variance σ²",
        f"Figure {number}: gradient variance against batch size ({dataset})",
        path,
        logy=True,
    )


def accuracy_against_time(records, steptime, path):
    """Test accuracy against training time, per architecture and dataset, one line per method
    (the main comparison: mean over seeds of both, epoch by epoch): time to accuracy at a
    glance. Modelled time where the step-time tables cover the run, else measured."""
    groups = {
        key: {label: runs for label, runs in methods.items() if "-" not in label}
        for key, methods in runs_by_method(records).items()
    }
    labels = method_labels(records)
    fig, axes = panels(len(groups))
    kinds = set()
    for ax, ((arch, dataset), methods) in zip(axes, groups.items()):
        for order, (label, runs) in enumerate(sorted(methods.items())):
            curves = []
            for r in runs:
                if any(e.get("test_accuracy") is None for e in r["epochs"]):
                    continue  # a record without per-epoch accuracy (e.g. the paper's, rebuilt)
                times = epoch_times(r, steptime)
                kinds.add("modelled" if times else "measured")
                times = times or [e["epoch_time_s"] for e in r["epochs"]]
                curves.append(
                    (
                        list(itertools.accumulate(times)),
                        [e.get("test_accuracy") for e in r["epochs"]],
                    )
                )
            if not curves:
                continue
            length = min(len(t) for t, _ in curves)
            ax.plot(
                [statistics.fmean(t[i] for t, _ in curves) for i in range(length)],
                [statistics.fmean(a[i] for _, a in curves) for i in range(length)],
                label=label,
                markersize=4,
                linewidth=2.2 - 0.15 * order,
                alpha=0.9,
                **style(label, labels),
            )
        ax.set_title(f"{arch} / {dataset}", fontsize=9)
        ax.set(xlabel="training time (s)", ylabel="test accuracy (%)")
    legend(axes[0])
    fig.suptitle(
        f"Test accuracy against {' or '.join(sorted(kinds)) or 'modelled'} training "
        f"time (mean over seeds)"
    )
    return save(fig, path)


def write_all(records, out_dir, steptime=None) -> list:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [figure1(records, out / "figure1_time_per_epoch.png")]
    datasets = sorted({r["dataset"] for r in records}, key=lambda d: (d != "cifar10", d))
    for number, dataset in enumerate(datasets[:2], start=2):
        written.append(
            figure_variance(
                records, dataset, number, out / f"figure{number}_grad_variance_{dataset}.png"
            )
        )
    written.append(batch_trajectories(records, out / "batch_size_trajectories.png"))
    written.append(signal_trajectories(records, out / "signal_trajectories.png"))
    if len({r["method"] for r in records if r["variant"] == "baseline"} - {"fixed"}) > 1:
        written.append(strategy_trajectories(records, out / "strategy_trajectories.png"))
    if any(r["variant"] == "baseline" for r in records):
        written.append(accuracy_against_time(records, steptime, out / "accuracy_against_time.png"))
    return written
