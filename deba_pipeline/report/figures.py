"""Figures 1-3 and the batch-size and signal trajectories, as PNG files, from run records. Every
line is one method (fixed, DEBA, each ablation) of one architecture: methods are never pooled."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator, NullLocator

from deba_pipeline.core.record import signal
from deba_pipeline.core.rules.deba import confidence_score
from deba_pipeline.report.curves import method_label, value
from deba_pipeline.report.modelled import epoch_times
from deba_pipeline.report.style import style

plt.switch_backend("Agg")  # files, never a window


def _labels(records) -> list:
    return sorted({method_label(r) for r in records if r["variant"] != "profile"})


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


def _legend(ax):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)


def _size_axis(set_scale, set_ticks, sizes, spacing: float = 0.12):
    """A log-2 batch-size axis with a tick at every size that occurs, labelled from the largest
    down where the label keeps `spacing` (in log2 units) from the last one: 60 and 64 would
    overprint, and 64 (where runs start) is kept."""
    set_scale("log", base=2)
    shown, last = set(), None
    for size in sorted(sizes, reverse=True):
        if last is None or math.log2(last) - math.log2(size) >= spacing:
            shown.add(size)
            last = size
    set_ticks(sorted(sizes), [str(s) if s in shown else "" for s in sorted(sizes)])


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def _panels(count, columns=3, width=4.2, height=3.2):
    """A grid of `count` panels (the spare ones hidden)."""
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    fig, axes = plt.subplots(
        rows, columns, figsize=(width * columns, 0.8 + height * rows), squeeze=False
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[: max(count, 1)])


def _versus_batch(data, ylabel, title, path, logy=False):
    """One panel per architecture, one line per method (its own style in every panel)."""
    labels = sorted({line for lines in data.values() for line in lines})
    fig, axes = _panels(len(data))
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
            _size_axis(ax.set_xscale, ax.set_xticks, sizes)
            ax.xaxis.set_minor_locator(NullLocator())
            ax.tick_params(axis="x", labelsize=7)
        if logy:
            ax.set_yscale("log")
        ax.set(xlabel="batch size", ylabel=ylabel)
        ax.set_title(arch, fontsize=9)
    _legend(axes[0])
    fig.suptitle(title)
    return _save(fig, path)


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


def _groups(records, methods_only=False):
    """{(arch, dataset): {method label: [runs]}} of the comparison and ablation runs."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["variant"] != "profile" and not (methods_only and r["method"] == "fixed"):
            groups[(r["arch"], r["dataset"])][method_label(r)].append(r)
    return dict(sorted(groups.items()))


OFFSET = 0.025  # each method's step line is drawn this much higher than the previous one


def batch_trajectories(records, path):
    """Per architecture and dataset, the strategies compared (with the fixed batch) in one
    panel and DEBA's ablations (with DEBA) in another, one line per seed; each method's line
    sits a little above the previous one, so identical schedules stay visible."""
    groups = _groups(records)
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
    labels = _labels(records)
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
            _size_axis(ax.set_yscale, ax.set_yticks, sizes)
            ax.yaxis.set_minor_locator(NullLocator())
            ax.tick_params(axis="y", labelsize=7)
            ax.set_ylabel("batch size")
            ax.set_title(f"{arch} / {dataset}: {side}", fontsize=9)
            _legend(ax)
    fig.suptitle(
        "Batch size over epochs (one line per seed; lines offset slightly to show overlaps)"
    )
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
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
    panels = (
        ("c_t", "θ_conf", (1,)),
        ("grad_norm_variation", "θ_stab, 3·θ_stab", (1, 3)),
        ("loss_variation", "θ_stab", (1,)),
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 8), sharex=True)
    for colour, ((arch, dataset), methods) in enumerate(_groups(records, True).items()):
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
    _legend(axes[0])
    return _save(fig, path)


def strategy_trajectories(records, path):
    """Per architecture and dataset, each strategy's batch size and the learning rate its
    optimiser used, epoch by epoch (one line per seed, each method's a little above the last)."""
    groups = {
        key: {label: runs for label, runs in methods.items() if "-" not in label}
        for key, methods in _groups(records).items()
    }  # the main comparison only
    fig, axes = plt.subplots(
        max(1, len(groups)), 2, figsize=(10, 1.8 + 1.9 * len(groups)), sharex=True, squeeze=False
    )
    labels = _labels(records)
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
        _size_axis(row[0].set_yscale, row[0].set_yticks, sizes)
        row[0].yaxis.set_minor_locator(NullLocator())
        row[1].set_yscale("log")
        for ax, what in zip(row, ("batch size", "learning rate")):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
            ax.set_ylabel(what)
            ax.set_title(f"{arch} / {dataset}: {what}", fontsize=9)
        _legend(row[0])
    fig.suptitle(
        "Strategies side by side: batch size (lines offset slightly to show overlaps) "
        "and learning rate over epochs"
    )
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    return _save(fig, path)


def accuracy_against_time(records, steptime, path):
    """Test accuracy against training time, per architecture and dataset, one line per method
    (the main comparison: mean over seeds of both, epoch by epoch): time to accuracy at a
    glance. Modelled time where the step-time tables cover the run, else measured."""
    groups = {
        key: {label: runs for label, runs in methods.items() if "-" not in label}
        for key, methods in _groups(records).items()
    }
    labels = _labels(records)
    fig, axes = _panels(len(groups))
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
    _legend(axes[0])
    fig.suptitle(
        f"Test accuracy against {' or '.join(sorted(kinds)) or 'modelled'} training "
        f"time (mean over seeds)"
    )
    return _save(fig, path)


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
