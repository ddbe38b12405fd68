"""Aggregate stage: every run record under --runs and the step-time tables become Tables 1-5
(CSV, Markdown), the figures (PNG), per-epoch curves for `dvc plots`, REPORT.md and a few
headline numbers in metrics.json. `deba aggregate --runs runs --out reports`"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from deba_pipeline.core.errors import DebaError
from deba_pipeline.engine.files import make_folder, read_json, write_json, write_text
from deba_pipeline.execution.study import read_records
from deba_pipeline.report import (
    answer,
    curves,
    figures,
    forecast,
    paper_check,
    table_formats,
    tables,
    time_to_accuracy,
)
from deba_pipeline.report.analysis import calibrate
from deba_pipeline.report.comparison import compare, pooled_delta_spread
from deba_pipeline.report.metrics import build_metrics, by_strategy, headline, rounded
from deba_pipeline.report.modelled import at_runs_level, table_problem
from deba_pipeline.report.text import report

ABLATION_ORDER = ("universal", "cooldown2", "cooldown5", "full_history")


def read_steptime(folder) -> dict:
    """{arch: {dataset: table}} from the steptime stage's files (none named: no modelled times);
    a table with a time that is not a positive finite number is refused, naming it. A folder
    named on the command line must exist."""
    if not folder:
        return {}
    folder = Path(folder)
    if not folder.is_dir():
        raise DebaError(
            f"the step-time folder {folder} does not exist: run the steptime stage "
            f"first (`dvc repro steptime`), or pass --steptime '' to report measured "
            f"times only."
        )
    tables = {path.stem: read_json(path) for path in sorted(folder.glob("*.json"))}
    for arch, per_dataset in tables.items():
        for dataset, table in per_dataset.items() if isinstance(per_dataset, dict) else ():
            problem = table_problem(table)
            if problem:
                raise DebaError(
                    f"{folder / arch}.json ({dataset}): {problem}: measure it again "
                    f"with `dvc repro --force steptime`."
                )
    return tables


def run(
    cfg,
    runs: str,
    out: str,
    compare_file: str | None,
    steptime: str | None,
    prediction: str | None = None,
) -> dict:
    """Compute every comparison from the records and tables, then write the outputs aside and
    swap them in; returns metrics.json's content."""
    study = _compute(
        cfg,
        runs,
        read_steptime(steptime),
        paper_check.load(compare_file),
        read_json(prediction, "run the predict stage again (`dvc repro predict`)")
        if prediction
        else None,
        compare_file,
    )
    final, staging = Path(out), _staging(Path(out))  # made aside, then all replace the old
    try:
        metrics = _write(cfg, study, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish(staging, final)
    return metrics


def _compute(cfg, runs, step_tables, printed, predicted, compare_file) -> dict:
    """What the outputs render: each variant's and strategy's cells, the predictions checked,
    the tables' rows, the answers and the paper check."""
    records = read_records(runs)
    if not records:
        raise DebaError(
            f"no run records under {runs}: run the pipeline first (`dvc repro`), or "
            f"point --runs at a folder of records."
        )
    step_tables = at_runs_level(step_tables, records)  # the level of the runs' own moment
    ablated = [r for r in records if r["variant"] not in ("profile", "baseline")]
    ablation_dataset = ablated[0]["dataset"] if ablated else None
    present = {r["variant"] for r in ablated}
    variants = (
        ["baseline"]
        + [v for v in ABLATION_ORDER if v in present]
        + sorted(present - set(ABLATION_ORDER))
    )
    margin, floor = cfg.report.non_inferiority, pooled_delta_spread(records)
    found = {v: compare(records, v, step_tables, margin=margin, floor=floor) for v in variants}
    methods = sorted({r["method"] for r in records if r["variant"] == "baseline"} - {"fixed"})
    by_method = {
        m: compare(records, "baseline", step_tables, method=m, margin=margin, floor=floor)
        for m in methods
    }
    checked = tables.predictions(records, found, OmegaConf.to_container(cfg.taxonomy))
    profiles = [r for r in records if r["variant"] == "profile"]
    built = {
        "table1": tables.table1(calibrate(profiles, cfg.deba.window)) if profiles else [],
        "table2": tables.table2(checked),
        "table3": tables.table3(found, ablation_dataset),
        "table4": tables.table4(found),
        "table5": tables.table5(found),
    }
    if len(methods) > 1:
        built["strategies"] = tables.strategies(by_method)
    built["time_to_accuracy"] = time_to_accuracy.rows(
        records, step_tables, cfg.report.accuracy_tolerance
    )
    beside = forecast.rows(records, step_tables, cfg.report.accuracy_tolerance, predicted)
    if beside:
        built["prediction"] = beside
    paper = None
    if compare_file or paper_check.cells(printed) & set(found["baseline"]):
        paper = {
            "self": paper_check.check(printed, paper_check.paper_records(printed)),
            "beside": paper_check.beside(printed, found["baseline"]),
        }
    return {
        "records": records,
        "step_tables": step_tables,
        "found": found,
        "by_method": by_method,
        "checked": checked,
        "built": built,
        "paper": paper,
        "ablation_dataset": ablation_dataset,
        "predicted": predicted,
        "answers": answer.answers(by_method, checked),
    }


def _write(cfg, study: dict, out: Path) -> dict:
    """Every output of `study` under `out`: the tables, figures, curves, metrics and report."""
    records, step_tables, found = study["records"], study["step_tables"], study["found"]
    for name, rows in study["built"].items():
        write_text(out / "tables" / f"{name}.csv", table_formats.to_csv(rows))
        write_text(out / "tables" / f"{name}.md", table_formats.to_markdown(rows))
    images = figures.write_all(records, out / "figures", step_tables)
    curves.write_all(records, out / "plots")
    metrics = rounded(
        {
            "answer": answer.metrics(study["answers"]),
            **build_metrics(
                records, found, study["checked"], study["ablation_dataset"], study["by_method"]
            ),
        }
    )
    write_json(out / "metrics.json", metrics)
    write_json(out / "answer.json", headline(metrics["answer"]))
    write_json(out / "strategies.json", by_strategy(study["by_method"]))
    write_text(
        out / "REPORT.md",
        report(
            records,
            study["built"],
            study["checked"],
            images,
            study["paper"],
            out,
            step_tables,
            cfg,
            study["answers"],
            forecast.headroom_lines(study["predicted"]),
            cells=found["baseline"],
        ),
    )
    return metrics


def _staging(out: Path) -> Path:
    """A fresh folder beside `out` for this aggregate's outputs: a failure part-way leaves the
    old report, metrics and curves as they were, consistent with each other."""
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    return make_folder(staging)


def _publish(staging: Path, out: Path) -> None:
    """Each output made in `staging` replaces its namesake in `out` (a rename each); what else
    `out` holds stays."""
    make_folder(out)
    try:
        for made in sorted(staging.iterdir()):
            target, old = out / made.name, out / f".{made.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            if target.is_dir():
                os.replace(target, old)
            os.replace(made, target)
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise DebaError(
            f"cannot write {out}: {exc.strerror or exc}. The new outputs are in "
            f"{staging}; make {out} writable and rerun."
        ) from None
    shutil.rmtree(staging, ignore_errors=True)
