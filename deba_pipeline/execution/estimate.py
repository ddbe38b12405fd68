"""What a study costs before it runs: `deba validate paper --estimate`.

One short epoch per architecture and input shape (a warm-up step, then `STEPS` timed steps at
train.batch_size on synthetic data shaped like the dataset, on this machine's device) times the
steps the study trains gives device-hours; divided by the runs `execution` keeps in flight here,
the wall-clock. The steps are counted at the fixed batch size: DEBA's larger batches take fewer,
so the estimate leans high. Evaluation is not counted. On a CPU a step is timed at batches
PROBE_BATCH/2 and PROBE_BATCH and extended along the line through them to train.batch_size
(a step's fixed cost plus a cost per sample), so the paper's ViT-B/16 at 224 pixels takes
seconds, not minutes; each architecture's line is printed as it is timed.
"""
from __future__ import annotations

import os
import tempfile
import time
from itertools import islice

import torch
from omegaconf import OmegaConf

from deba_pipeline.engine.loop import Trainer, resolve_device
from deba_pipeline.execution.study import run_spec

STEPS = 2  # timed steps per architecture and shape, after one warm-up step
PROBE_BATCH = 16  # on a CPU, the batch a step is timed at (then scaled to train.batch_size)
SHAPES = {"cifar10": (50_000, 10, 32, 3), "cifar100": (50_000, 100, 32, 3),
          "digits": (1_437, 10, 8, 1)}  # training images, classes, side in pixels, channels


def _shape(cfg, dataset):
    """(training images, classes, side, channels): an image folder's own, counted on disk."""
    if dataset in cfg.data.folders:
        from deba_pipeline.engine.datasets.folders import describe
        return describe(cfg.data.folders[dataset])
    s = cfg.data.synthetic
    return SHAPES.get(dataset, (s.train_size, s.num_classes, s.image_size, s.channels))


def probe_batch(cfg) -> int:
    """The batch a step is timed at: train.batch_size, or PROBE_BATCH on a CPU."""
    if resolve_device(cfg.train.device).type == "cuda":
        return cfg.train.batch_size
    return min(cfg.train.batch_size, PROBE_BATCH)


def step_seconds(cfg, arch, dataset) -> float:
    """Seconds per training step of `arch` at train.batch_size on `dataset`-shaped inputs: timed
    there, or (on a CPU) at half the probe batch and at the probe batch and extended along the
    line through the two, so a step's fixed cost is not scaled with the batch."""
    size, target = probe_batch(cfg), cfg.train.batch_size
    if size == target:
        return _timed_step(cfg, arch, dataset, size)
    half = max(1, size // 2)
    small, large = _timed_step(cfg, arch, dataset, half), _timed_step(cfg, arch, dataset, size)
    per_sample = max(0.0, (large - small) / (size - half))
    return large + per_sample * (target - size)


def _timed_step(cfg, arch, dataset, size) -> float:
    _, classes, side, channels = _shape(cfg, dataset)
    probe = OmegaConf.merge(cfg, {"train": {"batch_size": size}, "data": {"synthetic": {
        "train_size": size * (STEPS + 1), "test_size": size, "num_classes": classes,
        "image_size": side, "channels": channels}}})
    spec = run_spec(probe, arch, "synthetic", cfg.study.seeds[0], "fixed", "estimate")
    with tempfile.TemporaryDirectory() as state:
        trainer = Trainer(spec, state)
        batches = list(islice(trainer.data.train_batches(size), STEPS + 1))
        trainer.train_epoch(size, batches[:1])
        began = time.perf_counter()
        trainer.train_epoch(size, batches[1:])  # ends with the epoch's one host sync
        return (time.perf_counter() - began) / STEPS


def runs_per_cell(cfg, dataset) -> int:
    s = cfg.study
    reused = len(set(s.seeds) & set(s.profile_seeds)) if s.reuse_profile_runs else 0
    ablations = len(cfg.ablate.variants) * len(s.seeds) if dataset == cfg.ablate.dataset else 0
    return len(s.profile_seeds) + (1 + len(s.methods)) * len(s.seeds) - reused + ablations


def in_flight(cfg) -> int:
    """Runs `execution` trains at once on this machine."""
    ex = cfg.execution
    if ex.backend == "local":  # the process pool: the usable cores (or GPUs) it fills
        from deba_pipeline.execution.pool import slots
        return slots(cfg, cfg.train.processes)[0]
    if resolve_device(cfg.train.device).type == "cuda":
        share = 1.0 if ex.gpus_per_run == "auto" else float(ex.gpus_per_run) or 1.0
        return max(1, int(torch.cuda.device_count() / share))
    return max(1, int((os.cpu_count() or 1) / (ex.cpus_per_run or 1)))


def estimate(cfg, progress=None) -> str:
    """The estimate's text; `progress(line)` hears each architecture as it is timed."""
    lines, total, measured = [], 0.0, {}
    cells = [(arch, dataset) for arch in cfg.study.archs for dataset in cfg.study.datasets]
    probe = probe_batch(cfg)
    for done, (arch, dataset) in enumerate(cells, start=1):
        train_size, _, side, channels = _shape(cfg, dataset)
        key = (arch, side, channels)
        if key not in measured:
            if progress:
                trained = cfg.train.image_size.get(arch, side)  # resized on the way in
                progress(f"timing {arch} on {trained}x{trained}x{channels} inputs at batch "
                         f"{probe} ({done} of {len(cells)})")
            measured[key] = step_seconds(cfg, arch, dataset)
        steps = runs_per_cell(cfg, dataset) * cfg.train.epochs * \
            (train_size // cfg.train.batch_size)
        seconds = steps * measured[key]
        total += seconds
        scaled = f" (from batches {probe // 2} and {probe})" if probe != cfg.train.batch_size \
            else ""
        lines.append(f"  {arch}/{dataset}: {measured[key] * 1000:.1f} ms a step at batch "
                     f"{cfg.train.batch_size}{scaled}, {runs_per_cell(cfg, dataset)} runs: "
                     f"{_hours(seconds)} device-hours")
    flight = in_flight(cfg)
    device = resolve_device(cfg.train.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "this CPU"
    return "\n".join([f"estimate on {where} (fixed-batch steps; evaluation not counted):",
                      *lines, f"  total: {_hours(total)} device-hours; about "
                      f"{_hours(total / flight)} hours of wall-clock with {flight} run(s) "
                      f"in flight ({cfg.execution.backend} backend)"])


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f}" if seconds >= 360 else f"{seconds / 3600:.3f}"
