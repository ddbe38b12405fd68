"""Each method's look and the figures' shared parts (panels, the batch-size axis, groups of
runs, an atomic save), the same in every figure."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt

from deba_pipeline.report.curves import method_label

plt.switch_backend("Agg")  # files, never a window

PALETTE = [
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#8C564B",
    "#999999",
]  # Okabe-Ito (readable by the colour-blind; its yellow left out), brown, grey
DASHES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def style(label: str, labels: list) -> dict:
    """One method's colour, line style and marker, the same in every figure: fixed is black and
    solid; the strategies compared, then the ablations (their labels hold a '-'), take the next
    colour, dash and marker in sorted order, so two never share all three and a line drawn over
    another still shows its marker."""
    if label == "fixed":
        return {"color": "black", "linestyle": "-", "marker": "."}
    others = sorted((x for x in set(labels) if x != "fixed"), key=lambda x: ("-" in x, x))
    i = others.index(label) if label in others else len(others)
    return {
        "color": PALETTE[i % len(PALETTE)],
        "linestyle": DASHES[i % len(DASHES)],
        "marker": MARKERS[(i // len(DASHES) + i) % len(MARKERS)],
    }


def method_labels(records) -> list:
    return sorted({method_label(r) for r in records if r["variant"] != "profile"})


def legend(ax):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)


def size_axis(set_scale, set_ticks, sizes, spacing: float = 0.12):
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


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def panels(count, columns=3, width=4.2, height=3.2):
    """A grid of `count` panels (the spare ones hidden)."""
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    fig, axes = plt.subplots(
        rows, columns, figsize=(width * columns, 0.8 + height * rows), squeeze=False
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[: max(count, 1)])


def runs_by_method(records, methods_only=False):
    """{(arch, dataset): {method label: [runs]}} of the comparison and ablation runs."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["variant"] != "profile" and not (methods_only and r["method"] == "fixed"):
            groups[(r["arch"], r["dataset"])][method_label(r)].append(r)
    return dict(sorted(groups.items()))
