"""What a step-time table (docs/method.md) is measured for: the batch sizes a study needs, the
runs' own typical step and thread count, where a table of those inputs is kept, and where it is
measured (`measure_apart`: the device to itself)."""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import defaultdict
from pathlib import Path

from deba_pipeline.engine.loop import Trainer
from deba_pipeline.engine.spec import code_digest
from deba_pipeline.execution.process import prepare, threads_per_run
from deba_pipeline.execution.study import run_spec
from deba_pipeline.timing.steptime import device_name, ladder, measure


def reached_sizes(records, arch) -> dict:
    """{dataset: every batch size an epoch of `arch` ran at, in any of `records`}."""
    sizes = defaultdict(set)
    for record in records:
        if record["arch"] == arch:
            sizes[record["dataset"]].update(e["batch_size"] for e in record["epochs"])
    return sizes


def runs_step(records, arch, dataset, size) -> float | None:
    """The typical step the fixed runs of `arch` took at `size` (the median over their epochs
    of each epoch's time per step), to tell a step-time measurement made while the machine ran
    slower than it did for the runs. (Their fastest epoch was too strict a reference: on this
    2-core VM it set off more rounds for two of three tables that the runs' own median step
    would not have.)"""
    steps = [
        e["epoch_time_s"] / e["steps"]
        for r in records
        if r["arch"] == arch
        and r["dataset"] == dataset
        and r["method"] == "fixed"
        and r.get("world_size", 1) == 1  # the table times one process: like with like
        for e in r["epochs"]
        if e["batch_size"] == size and e.get("steps")
    ]
    return statistics.median(steps) if steps else None


def wanted(cfg, reached) -> set:
    """The sizes a table of this study must hold: those the runs `reached` and the fixed batch,
    and with timing.sizes "ladder" every size the multiplicative policy reaches from it
    (docs/method.md); sizes beyond the training set are noted by the table, not timed."""
    d, t = cfg.deba, cfg.train
    sizes = set(reached) | {t.batch_size}
    if cfg.timing.sizes == "ladder":  # "reached" leaves out sizes no modelled time reads
        sizes |= set(
            ladder(t.batch_size, d.growth, d.rollback, d.min_batch, d.max_batch, t.processes)
        )
    return sizes


def covered(table) -> set:
    """The sizes a table answers for: timed, out of memory, or beyond the training set."""
    return (
        {int(s) for s in table["rounds"]} | set(table["out_of_memory"]) | set(table["beyond_data"])
    )


def table(cfg, arch, dataset, sizes, runs_step_s) -> dict:
    """One architecture's table of `sizes` on one dataset, measured where this is called, in a
    process set up with the runs' threads (`execution.cpus_per_run`)."""
    t = cfg.timing
    trainer = Trainer(
        run_spec(cfg, arch, dataset, cfg.study.seeds[0], "fixed", "steptime"), cfg.tracking.dir
    )
    return {
        "device": device_name(trainer.device),
        "repeats": t.repeats,
        "steps": t.steps,
        **measure(
            trainer,
            sorted(sizes),
            cfg.train.batch_size,
            t.repeats,
            t.steps,
            t.warmup,
            t.estimate,
            runs_step_s,
        ),
    }


def measuring_code() -> str:
    """The code that measures a table beyond the engine's, whose hash its key holds (the timing
    itself, the stage's threads and oneDNN settings, Ray's task): a change measures again."""
    here = Path(__file__).parent
    timing = sorted((here.parent / "timing").glob("*.py"))
    return code_digest(
        [*(here / name for name in ("process.py", "steptime.py", "ray_tasks.py")), *timing]
    )


def kept_path(cfg, arch, dataset) -> Path:
    """Where the table of these inputs is kept: the run key of the fixed baseline (model, data,
    training config, training code) with the timing params and the measuring code, but not its
    sizes: a study that reaches a new size adds it to the kept table (`timing.estimates.joined`)
    and times no size again."""
    spec = run_spec(cfg, arch, dataset, cfg.study.seeds[0], "fixed", "steptime")
    timing = {k: v for k, v in cfg.timing.items() if k != "sizes"}
    inputs = [spec.key(), timing, measuring_code()]  # the key holds the runs' threads
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cfg.tracking.dir) / "steptime" / f"{digest}.json"


def identity(arch, dataset, path) -> dict:
    """What a kept table must have been measured for: the digest of its inputs is its name."""
    return {"arch": arch, "dataset": dataset, "inputs": path.stem}


def measure_apart(cfg, measure, arg_lists, expected_s=None) -> list:
    """`measure(*args)` for each of `arg_lists`, each with the device to itself (the step-time
    tables of docs/method.md): here, one after another, with nothing beside them; on Ray, each a
    task that holds a whole GPU, or a whole node where the cluster has no GPU. Results in order."""
    if not arg_lists:
        return []
    if cfg.execution.backend == "ray":
        from deba_pipeline.execution.ray_tasks import measure_on_ray

        return measure_on_ray(cfg, measure, arg_lists, expected_s)
    prepare(threads_per_run(cfg.execution.cpus_per_run))
    return [measure(*args) for args in arg_lists]
