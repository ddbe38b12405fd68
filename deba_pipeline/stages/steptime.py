"""Step-time stage (SPEC §8): per architecture and dataset, the time of one training step at
every batch size the study can reach (the ladder from train.batch_size) or did reach (every size
in the run records), measured once, interleaved, on this machine's device. The aggregate stage
models each run's time from it. `deba steptime --arch resnet18`"""
from __future__ import annotations

from collections import defaultdict

from ..engine.files import write_json
from ..engine.loop import Trainer
from ..engine.steptime import device_name, ladder, measure
from .runs import read_records, run_spec


def reached_sizes(records, arch) -> dict:
    """{dataset: every batch size an epoch of `arch` ran at, in any of `records`}."""
    sizes = defaultdict(set)
    for record in records:
        if record["arch"] == arch:
            sizes[record["dataset"]].update(e["batch_size"] for e in record["epochs"])
    return sizes


def calm_step(records, arch, dataset, size) -> float | None:
    """The fastest step the fixed runs of `arch` took at `size`: what an undisturbed machine
    does, to tell a step-time measurement made while it was slow throughout."""
    steps = [e["epoch_time_s"] / e["steps"] for r in records
             if r["arch"] == arch and r["dataset"] == dataset and r["method"] == "fixed"
             for e in r["epochs"] if e["batch_size"] == size and e.get("steps")]
    return min(steps) if steps else None


def run(cfg, arch: str, runs: str = "runs", out: str | None = None) -> dict:
    records, d, t = read_records(runs), cfg.deba, cfg.timing
    reached = reached_sizes(records, arch)
    table = {}
    for dataset in cfg.study.datasets:
        spec = run_spec(cfg, arch, dataset, cfg.study.seeds[0], "fixed", "steptime")
        trainer = Trainer(spec, cfg.tracking.dir)
        high = min(d.max_batch, trainer.data.train_size)
        sizes = set(ladder(cfg.train.batch_size, d.growth, d.rollback, d.min_batch, high))
        sizes |= reached.get(dataset, set())
        table[dataset] = {"device": device_name(trainer.device),
                          "repeats": t.repeats, "steps": t.steps,
                          **measure(trainer, sorted(sizes), cfg.train.batch_size, t.repeats,
                                    t.steps, t.warmup, t.estimate,
                                    calm_step(records, arch, dataset, cfg.train.batch_size))}
        print(f"{arch}/{dataset}: step times at {len(table[dataset]['step_s'])} batch sizes "
              f"on {table[dataset]['device']}", flush=True)
    write_json(out or f"results/steptime/{arch}.json", table)
    return table
