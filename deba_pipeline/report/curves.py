"""Per-epoch curves for DVC's own plots: one CSV per quantity, architecture, dataset and method
(fixed, DEBA, each ablation), the mean over seeds at each epoch, so `dvc plots diff` sets
experiments side by side. dvc.yaml declares one plot per quantity folder."""

from __future__ import annotations

import shutil
import statistics
from collections import defaultdict
from pathlib import Path

from deba_pipeline.core.record import signal
from deba_pipeline.engine.files import write_text

QUANTITIES = ("batch_size", "train_loss", "test_accuracy", "grad_variance")


def method_label(record) -> str:
    """fixed, deba, or deba-<variant> for an ablation."""
    if record["variant"] in ("baseline", "profile"):
        return record["method"]
    return f"{record['method']}-{record['variant']}"


def value(entry, quantity):
    """An epoch field (batch_size, train_loss, ...) or a signal of one epoch entry."""
    return entry[quantity] if quantity in entry else signal(entry, quantity)


def write_all(records, out_dir) -> list:
    groups = defaultdict(list)
    for r in records:
        if r["variant"] != "profile":
            groups[(r["arch"], r["dataset"], method_label(r))].append(r)
    out = Path(out_dir)
    if out.is_dir():  # a method or architecture dropped from the study leaves no stale curve
        shutil.rmtree(out)
    written = []
    for quantity in QUANTITIES:
        for (arch, dataset, label), runs in sorted(groups.items()):
            per_epoch = defaultdict(list)
            for r in runs:
                for e in r["epochs"]:
                    if value(e, quantity) is not None:
                        per_epoch[e["epoch"]].append(value(e, quantity))
            lines = [f"epoch,{quantity}"] + [
                f"{t},{statistics.fmean(v):.6g}" for t, v in sorted(per_epoch.items())
            ]
            path = out / quantity / f"{arch}_{dataset}_{label}.csv"
            written.append(write_text(path, "\n".join(lines) + "\n"))
    return written
