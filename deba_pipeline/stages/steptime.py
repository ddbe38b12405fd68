"""Step-time stage (docs/method.md): per architecture and dataset, the time of one training step
at every batch size the study can reach (the ladder from train.batch_size) or did reach (every size
in the run records), measured once per study with the device to itself: in this process on the
local backend, on Ray as a task holding a whole GPU (on the CPU, a run's cores). A table
is kept under `tracking.dir`/steptime by what it measured, with a checksum, so a stage rerun for
another architecture's runs measures only the tables whose inputs changed (delete that folder to
measure every table again); a kept table that was edited, is not the one asked for, or has a time
that is not positive and finite or lacks a size the runs reached, is set aside and measured
again. The aggregate stage models each run's time from it.
`deba steptime` (or `deba steptime --arch resnet18` for one)"""
from __future__ import annotations

import logging
from pathlib import Path

from deba_pipeline.core.errors import DebaError
from deba_pipeline.engine.cache import keep, kept
from deba_pipeline.engine.files import write_json
from deba_pipeline.execution.steptime import (
    identity,
    kept_path,
    measure_apart,
    reached_sizes,
    runs_step,
    table,
)
from deba_pipeline.execution.study import epoch_seconds, read_records
from deba_pipeline.report.modelled import table_problem

log = logging.getLogger(__name__)


def run(cfg, archs, runs: str, out: str) -> dict:
    records = read_records(runs)
    tables, jobs = {arch: {} for arch in archs}, []
    for arch in archs:
        reached = reached_sizes(records, arch)
        for dataset in cfg.study.datasets:
            sizes = reached.get(dataset, set())
            path = kept_path(cfg, arch, dataset, sizes)
            needed = sizes | {cfg.train.batch_size}
            table_kept = kept(path, identity(arch, dataset, path),
                              lambda table, needed=needed: table_problem(table, needed))
            if table_kept is not None:
                tables[arch][dataset] = table_kept
                continue
            jobs.append(((arch, dataset, path), (cfg, arch, dataset, sizes,
                                                 runs_step(records, arch, dataset,
                                                           cfg.train.batch_size))))
    per_epoch = epoch_seconds(records)  # the longest table first, so none trails alone
    measured_tables = measure_apart(cfg, table, [args for _, args in jobs],
                                    [per_epoch.get(job[:2], 0.0) for job, _ in jobs])
    for ((arch, dataset, path), _), measured in zip(jobs, measured_tables):
        try:  # a cache that cannot be written loses nothing: the table still goes to `out`
            keep(path, measured, identity(arch, dataset, path))
        except DebaError as exc:
            log.warning("deba: %s/%s: step times measured; the table is in the stage's output, "
                        "but not kept for reuse: %s", arch, dataset, exc)
        tables[arch][dataset] = measured
        log.info("%s/%s: step times at %d batch sizes on %s", arch, dataset,
                 len(measured["step_s"]), measured["device"])
    for arch in archs:
        write_json(Path(out) / f"{arch}.json", tables[arch])
    return tables
