"""Each method's look, the same in every figure."""

from __future__ import annotations

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
