"""Aggregate stage: every run record under --runs becomes Tables 1-4 (CSV, Markdown), the
figures (PNG), REPORT.md and metrics.json. `deba aggregate --runs runs --out reports`"""
from __future__ import annotations

import statistics
from pathlib import Path

from omegaconf import OmegaConf

from ..analysis import calibrate, compare, summary_rows
from ..engine.files import write_json, write_text
from ..errors import DebaError
from ..report import figures, paper_check, tables
from .runs import read_records

CAPTIONS = {
    "table1": "Table 1. Thresholds calibrated from our profile runs (75th percentile of Δ‖∇‖, "
              "median of c_t), beside the paper's Table 1.",
    "table2": "Table 2. Stability taxonomy from fixed-batch profiling, each class's prediction, "
              "and what DEBA then did in our runs.",
    "table3": "Table 3. Ablations: ΔAcc and speedup of each DEBA variant against the fixed batch.",
    "table4": "Table 4. Fixed batch against DEBA: accuracy, ΔAcc, training time, speedup "
              "(paired by seed), throughput.",
}


def run(cfg, runs: str = "runs", out: str = "reports", compare_file: str | None = None) -> dict:
    records = read_records(runs)
    if not records:
        raise DebaError(f"no run records under {runs}: run the pipeline first (`dvc repro`), or "
                        f"point --runs at a folder of records.")
    out = Path(out)
    profiles = [r for r in records if r["variant"] == "profile"]
    built = {"table1": tables.table1(calibrate(profiles, cfg.deba.window)) if profiles else [],
             "table2": tables.table2(records, OmegaConf.to_container(cfg.taxonomy)),
             "table3": tables.table3(records), "table4": tables.table4(records)}
    for name, rows in built.items():
        write_text(out / "tables" / f"{name}.csv", tables.to_csv(rows))
        write_text(out / "tables" / f"{name}.md", tables.to_markdown(rows))
    images = figures.write_all(records, out / "figures")
    checked = paper_check.check(OmegaConf.to_container(OmegaConf.load(compare_file)),
                                records) if compare_file else None
    metrics = _rounded(build_metrics(records))
    write_json(out / "metrics.json", metrics)
    write_text(out / "REPORT.md", report(records, built, images, checked, out, runs))
    return metrics


def _rounded(value, digits=4):
    """Metrics to 4 decimals: `dvc exp show` should not print 1.4e-14 for a zero."""
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return round(value, digits) if isinstance(value, float) else value


def build_metrics(records) -> dict:
    main = compare(records)
    per = {f"{arch}/{ds}": {"delta_acc": c["delta_acc"], "speedup_pct": c["speedup_mean"],
                            "throughput": c["throughput"]} for (arch, ds), c in main.items()}
    metrics = {"runs": len(records), "per_arch": per}
    if main:
        metrics["deba"] = {
            "mean_delta_acc": statistics.fmean(c["delta_acc"] for c in main.values()),
            "mean_speedup_pct": statistics.fmean(c["speedup_mean"] for c in main.values()),
            "mean_throughput": statistics.fmean(c["throughput"] for c in main.values()),
            "degraded": summary_rows(c["delta_acc"] for c in main.values())["degraded"]}
    dataset, variants, found = tables.ablation_comparisons(records)
    if dataset is not None:
        metrics["ablations"] = {}
        for v in variants:
            s = summary_rows(c["delta_acc"] for (a, ds), c in found[v].items() if ds == dataset)
            metrics["ablations"][v] = {"mean_abs_delta_acc": s["mean_abs_delta_acc"],
                                       "degraded": s["degraded"]}
    return metrics


def report(records, built, images, checked, out: Path, runs) -> str:
    archs = sorted({r["arch"] for r in records})
    datasets = sorted({r["dataset"] for r in records})
    seeds = sorted({r["seed"] for r in records})
    lines = ["# DEBA study report", "",
             f"Computed by `deba aggregate` from {len(records)} run records under `{runs}/` "
             f"(architectures: {', '.join(archs)}; datasets: {', '.join(datasets)}; seeds: "
             f"{', '.join(map(str, seeds))}). Every number below is computed from those records; "
             "the list of runs is at the end.", ""]
    for name, rows in built.items():
        lines += [f"## {CAPTIONS[name].split('.')[0]}", "", CAPTIONS[name], "",
                  tables.to_markdown(rows)]
    lines += ["## Did the profile predict the outcome?", "",
              "Outcome: *benefit* when ΔAcc ≥ 0 with a positive speedup, *degraded* when "
              "ΔAcc < −1, else *marginal*. A prediction holds when the outcome is what the "
              "class says (SPEC §2; 'seed-dependent' holds when per-seed ΔAcc varies by more "
              "than 1 point or DEBA did not benefit).", ""]
    for row in built["table2"]:
        lines.append(f"- **{row['Architecture']}** on {row['Dataset']}: {row['Class']} "
                     f"(μ_S {row['μ_S']}, σ_S {row['σ_S']}) → predicted *{row['Prediction']}*; "
                     f"measured ΔAcc {row['ΔAcc']}, speedup {row['Speedup (%)']}% → "
                     f"*{row['Outcome']}*. Held: **{row['Predicted?']}**.")
    lines += ["", "## Figures", ""]
    lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in images]
    if checked is not None:
        bad = [c for c in checked if not c["agrees"]]
        lines += ["", "## Against the paper's printed values", "",
                  f"{len(checked) - len(bad)} of {len(checked)} printed values agree with what we "
                  f"compute from the paper's own inputs, to the printed precision."]
        if bad:
            lines += ["", "Where the paper disagrees with its own inputs (we report ours):", "",
                      tables.to_markdown([{k: c[k] for k in ("where", "what", "printed",
                                                             "computed")} for c in bad])]
    lines += ["", "## Runs", "", "<details><summary>Every run record used</summary>", "",
              tables.to_markdown([{"arch": r["arch"], "dataset": r["dataset"],
                                   "method": r["method"], "variant": r["variant"],
                                   "seed": r["seed"], "accuracy": f"{r['final_test_accuracy']:.2f}",
                                   "train time (s)": f"{r['train_time_s']:.2f}",
                                   "epochs": len(r["epochs"])} for r in sorted(
                  records, key=lambda r: (r["variant"], r["arch"], r["dataset"], r["method"],
                                          r["seed"]))]), "</details>", ""]
    return "\n".join(lines)
