"""Step-time stage (docs/method.md): per architecture and dataset, the time of one training step
at every batch size the study can reach (the ladder from train.batch_size) or did reach (every size
in the run records), measured with the device to itself: in this process on the local backend,
on Ray as a task holding a whole GPU (on the CPU, a run's cores). A table is kept under
`tracking.dir`/steptime by what it measures (the fixed baseline's run key, the timing params and
the measuring code), with a checksum: a rerun for another architecture's runs measures only the
tables whose inputs changed, and a study that reaches new sizes (another strategy) times only
those, beside the reference, and adds them (delete that folder to measure every table again). A
kept table that was edited, is not the one asked for, or has a time that is not positive and
finite, is set aside and measured again. The aggregate stage models each run's time from it.
`deba steptime` (or `deba steptime --arch resnet18` for one)"""

from __future__ import annotations

import logging
from pathlib import Path

from deba_pipeline.core.errors import DebaError
from deba_pipeline.engine.cache import keep, kept
from deba_pipeline.engine.files import write_json
from deba_pipeline.execution.steptime import (
    covered,
    identity,
    kept_path,
    measure_apart,
    reached_sizes,
    runs_step,
    table,
    wanted,
)
from deba_pipeline.execution.study import epoch_seconds, read_records
from deba_pipeline.report.modelled import table_problem
from deba_pipeline.timing.estimates import joined

log = logging.getLogger(__name__)


def run(cfg, archs, runs: str, out: str) -> dict:
    records = read_records(runs)
    tables, kept_tables, jobs = {arch: {} for arch in archs}, {}, []
    for arch in archs:
        reached = reached_sizes(records, arch)
        for dataset in cfg.study.datasets:
            sizes = wanted(cfg, reached.get(dataset, set()))
            path = kept_path(cfg, arch, dataset)
            found = kept(path, identity(arch, dataset, path), table_problem)
            if found is not None and not sizes - covered(found):
                tables[arch][dataset] = joined(found, sizes=sizes)
                continue
            kept_tables[arch, dataset] = found
            missing = sizes - covered(found) if found is not None else sizes
            jobs.append(
                (
                    (arch, dataset, path, sizes),
                    (
                        cfg,
                        arch,
                        dataset,
                        missing,
                        runs_step(records, arch, dataset, cfg.train.batch_size),
                    ),
                )
            )
    per_epoch = epoch_seconds(records)  # the longest table first, so none trails alone
    measured_tables = measure_apart(
        cfg, table, [args for _, args in jobs], [per_epoch.get(job[:2], 0.0) for job, _ in jobs]
    )
    for ((arch, dataset, path, sizes), _), measured in zip(jobs, measured_tables):
        before = kept_tables[arch, dataset]
        whole = measured if before is None else joined(before, measured)
        try:  # a cache that cannot be written loses nothing: the table still goes to `out`
            keep(path, whole, identity(arch, dataset, path))
        except DebaError as exc:
            log.warning(
                "deba: %s/%s: step times measured; the table is in the stage's output, "
                "but not kept for reuse: %s",
                arch,
                dataset,
                exc,
            )
        tables[arch][dataset] = joined(whole, sizes=sizes)
        log.info(
            "%s/%s: step times at %d batch sizes on %s",
            arch,
            dataset,
            len(measured["step_s"]),
            measured["device"],
        )
    for arch in archs:
        write_json(Path(out) / f"{arch}.json", tables[arch])
    return tables
