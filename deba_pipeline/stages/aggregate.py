"""Aggregate stage: every run record under --runs and the step-time tables become Tables 1-5
(CSV, Markdown), the figures (PNG), per-epoch curves for `dvc plots`, REPORT.md and a few
headline numbers in metrics.json. `deba aggregate --runs runs --out reports`"""
from __future__ import annotations

import statistics
from pathlib import Path

from omegaconf import OmegaConf

from ..analysis import calibrate
from ..comparison import compare, summary_rows, table_problem
from ..engine.files import read_json, write_json, write_text
from ..errors import DebaError
from ..report import answer, curves, figures, paper_check, tables, time_to_accuracy
from ..report.text import report
from .runs import read_records

ABLATION_ORDER = ("universal", "cooldown2", "cooldown5", "full_history")


STEPTIME = "results/steptime"  # the steptime stage's output, as dvc.yaml names it


def read_steptime(folder) -> dict:
    """{arch: {dataset: table}} from the steptime stage's files (`--steptime ''`, or the default
    folder absent: no modelled times); a table with a time that is not a positive finite number
    is refused, naming it. A folder named on the command line must exist."""
    if not folder or (folder == STEPTIME and not Path(folder).exists()):
        return {}
    folder = Path(folder)
    if not folder.is_dir():
        raise DebaError(f"the step-time folder {folder} does not exist: run the steptime stage "
                        f"first (`dvc repro steptime`), or pass --steptime '' to report measured "
                        f"times only.")
    tables = {path.stem: read_json(path) for path in sorted(folder.glob("*.json"))}
    for arch, per_dataset in tables.items():
        for dataset, table in (per_dataset.items() if isinstance(per_dataset, dict) else ()):
            problem = table_problem(table)
            if problem:
                raise DebaError(f"{folder / arch}.json ({dataset}): {problem}: measure it again "
                                f"with `dvc repro --force steptime`.")
    return tables


def headline(answers: dict) -> dict:
    """{"arch on dataset": "gns? -26% time -0.3pt"}: the answer in one short string per cell for
    `dvc metrics show` and `dvc exp show` ("use gns: ..." where the intervals decide it, "gns?"
    where they do not, "keep the fixed batch"); metrics.json holds every number."""
    out = {}
    for cell, a in answers.items():
        cell = cell.replace("/", " on ", 1)  # `dvc exp show --keep '.* on .*'` finds these
        if a["use"] == "fixed" or a["speedup_pct"] is None:
            out[cell] = "keep the fixed batch" if a["use"] == "fixed" else "no strategy yet"
            continue
        name = f"use {a['strategy']}:" if a["use"] == a["strategy"] else f"{a['strategy']}?"
        out[cell] = f"{name} {-a['speedup_pct']:+.0f}% time {a['delta_acc']:+.1f}pt"
    return out


def run(cfg, runs: str = "runs", out: str = "reports", compare_file: str | None = None,
        steptime: str | None = STEPTIME) -> dict:
    step_tables = read_steptime(steptime)
    printed = paper_check.load(compare_file)
    records = read_records(runs)
    if not records:
        raise DebaError(f"no run records under {runs}: run the pipeline first (`dvc repro`), or "
                        f"point --runs at a folder of records.")
    out = Path(out)
    ablated = [r for r in records if r["variant"] not in ("profile", "baseline")]
    ablation_dataset = ablated[0]["dataset"] if ablated else None
    present = {r["variant"] for r in ablated}
    variants = ["baseline"] + [v for v in ABLATION_ORDER if v in present] + \
        sorted(present - set(ABLATION_ORDER))
    found = {v: compare(records, v, step_tables) for v in variants}
    methods = sorted({r["method"] for r in records if r["variant"] == "baseline"} - {"fixed"})
    by_method = {m: compare(records, "baseline", step_tables, method=m) for m in methods}
    bounds = OmegaConf.to_container(cfg.taxonomy)
    checked = tables.predictions(records, found, bounds)
    profiles = [r for r in records if r["variant"] == "profile"]
    built = {"table1": tables.table1(calibrate(profiles, cfg.deba.window)) if profiles else [],
             "table2": tables.table2(checked), "table3": tables.table3(found, ablation_dataset),
             "table4": tables.table4(found), "table5": tables.table5(found)}
    if len(methods) > 1:
        built["strategies"] = tables.strategies(by_method)
    built["time_to_accuracy"] = time_to_accuracy.rows(records, step_tables,
                                                      cfg.report.accuracy_tolerance)
    answers = answer.answers(by_method, checked)
    for name, rows in built.items():
        write_text(out / "tables" / f"{name}.csv", tables.to_csv(rows))
        write_text(out / "tables" / f"{name}.md", tables.to_markdown(rows))
    images = figures.write_all(records, out / "figures", step_tables)
    curves.write_all(records, out / "plots")
    paper = None
    if compare_file or paper_check.cells(printed) & set(found["baseline"]):
        paper = {"self": paper_check.check(printed, paper_check.paper_records(printed)),
                 "beside": paper_check.beside(printed, found["baseline"])}
    metrics = _rounded({"answer": answer.metrics(answers),
                        **build_metrics(records, found, checked, ablation_dataset, by_method)})
    write_json(out / "metrics.json", metrics)
    write_json(out / "answer.json", headline(metrics["answer"]))
    write_text(out / "REPORT.md", report(records, built, checked, images, paper, out,
                                         step_tables, cfg, answers))
    return metrics


def _rounded(value, digits=4):
    """Metrics to 4 decimals: `dvc exp show` should not print 1.4e-14 for a zero."""
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return round(value, digits) if isinstance(value, float) else value


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def build_metrics(records, found, checked, ablation_dataset, by_method=None) -> dict:
    """A few headline numbers per architecture, so `dvc metrics show` and `dvc exp show` stay
    readable; everything else is in the tables."""
    main = found["baseline"]
    per = {f"{arch}/{ds}": {"delta_acc": c["delta_acc"],
                            "speedup_modelled_pct": c["model_speedup_mean"],
                            "speedup_measured_pct": c["speedup_mean"],
                            "increases": c["increase"], "rollbacks": c["rollback"],
                            "holds": c["hold"], "batch_min": c["batch_min"],
                            "batch_max": c["batch_max"]}
           for (arch, ds), c in main.items()}
    verdicts = [row["held"] for row in checked if row["held"] in ("yes", "no")]
    metrics = {"runs": len(records), "per_arch": per,
               "predictions": {"held": verdicts.count("yes"), "checked": len(verdicts)}}
    if main:
        metrics["deba"] = {
            "mean_delta_acc": statistics.fmean(c["delta_acc"] for c in main.values()),
            "mean_speedup_modelled_pct": _mean(c["model_speedup_mean"] for c in main.values()),
            "mean_speedup_measured_pct": statistics.fmean(c["speedup_mean"]
                                                          for c in main.values()),
            "degraded": summary_rows(c["delta_acc"] for c in main.values())["degraded"]}
    if by_method and len(by_method) > 1:  # SPEC §6: each strategy against the same fixed runs
        metrics["strategies"] = {
            f"{arch}/{ds}": {m: {"delta_acc": c["delta_acc"],
                                 "speedup_modelled_pct": c["model_speedup_mean"],
                                 "speedup_measured_pct": c["speedup_mean"],
                                 "throughput_modelled": c["model_throughput"],
                                 "increases": c["increase"], "rollbacks": c["rollback"],
                                 "holds": c["hold"], "final_batch": c["final_batch"]}
                             for m, found_m in by_method.items()
                             for key, c in found_m.items() if key == (arch, ds)}
            for (arch, ds) in sorted({k for f in by_method.values() for k in f})}
    if ablation_dataset is not None:
        metrics["ablations"] = {}
        for v, cells in found.items():
            on = [c for (a, ds), c in cells.items() if ds == ablation_dataset]
            s = summary_rows(c["delta_acc"] for c in on)
            metrics["ablations"][v] = {
                "mean_abs_delta_acc": s["mean_abs_delta_acc"], "degraded": s["degraded"],
                "mean_speedup_modelled_pct": _mean(c["model_speedup_mean"] for c in on),
                "increases": sum(c["increase"] for c in on),
                "rollbacks": sum(c["rollback"] for c in on),
                "holds": sum(c["hold"] for c in on),
                "batch_min": min((c["batch_min"] for c in on), default=None),
                "batch_max": max((c["batch_max"] for c in on), default=None)}
    return metrics
