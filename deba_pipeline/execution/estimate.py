"""What a study costs before it runs: `deba validate paper --estimate [--device h100]`.

Here: a short epoch per architecture and input shape (WARMUP untimed steps, then the median of
STEPS timed ones, at train.batch_size on synthetic data shaped like the dataset, on this
machine's device) times the steps the study trains gives device-hours; divided by the runs
`execution` keeps in flight here, the wall-clock. The process warms up once before the first
architecture, so no architecture carries the one-time start-up (oneDNN's kernels, the
allocator). The steps are counted at the fixed batch size: DEBA's larger batches take fewer,
so the estimate leans high. Evaluation is not counted. On a CPU, inputs above DIRECT_SIDE pixels
are timed at PROBE_BATCH and scaled by samples to train.batch_size, so the paper's ViT-B/16 at 224
pixels takes seconds, not minutes (a line through two small batches, tried before, put two of
the paper's convnets at a third of their step); each architecture's line is printed as it is
timed.

For a device the user names (`--device`: execution/devices.py): each model's FLOPs a training
step (forward and backward, counted by PyTorch's FlopCounterMode on the meta device, so nothing
is computed) over the device's documented peak at the run's precision times a stated
utilization.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from itertools import islice

import torch
from omegaconf import OmegaConf

from deba_pipeline.core.errors import DebaError
from deba_pipeline.engine.ddp import resolve_device
from deba_pipeline.engine.loop import Trainer
from deba_pipeline.execution.study import run_spec

STEPS = 3  # timed steps per architecture and shape (their median), after WARMUP untimed ones
WARMUP = 2
PROBE_BATCH = 16  # on a CPU, the batch a large input is timed at (then scaled by samples)
DIRECT_SIDE = 64  # pixels: on a CPU, inputs up to this side are timed at train.batch_size
SHAPES = {"cifar10": (50_000, 10, 32, 3), "cifar100": (50_000, 100, 32, 3)}
# training images, classes, side in pixels, channels


def dataset_shape(cfg, dataset):
    """(training images, classes, side, channels): an image folder's own, counted on disk."""
    if dataset in cfg.data.folders:
        from deba_pipeline.engine.datasets.folders import describe

        return describe(cfg.data.folders[dataset])
    s = cfg.data.synthetic
    if dataset == "digits":  # its split follows data.test_fraction
        from deba_pipeline.execution.preflight import known_train_size

        return (known_train_size("digits", cfg.data), 10, 8, 1)
    return SHAPES.get(dataset, (s.train_size, s.num_classes, s.image_size, s.channels))


def probe_batch(cfg, side: int = 0) -> int:
    """The batch a step is timed at: train.batch_size, or PROBE_BATCH on a CPU for inputs
    larger than DIRECT_SIDE pixels."""
    if resolve_device(cfg.train.device).type == "cuda" or side <= DIRECT_SIDE:
        return cfg.train.batch_size
    return min(cfg.train.batch_size, PROBE_BATCH)


def step_seconds(cfg, arch, dataset) -> float:
    """Seconds per training step of `arch` at train.batch_size on `dataset`-shaped inputs:
    timed there, or (a large input on a CPU) at the probe batch and scaled by samples, which
    leans high by the step's fixed cost."""
    size, target = probe_batch(cfg, _side(cfg, arch, dataset)), cfg.train.batch_size
    return _timed_step(cfg, arch, dataset, size) * target / size


def _side(cfg, arch, dataset) -> int:
    return cfg.train.image_size.get(arch, dataset_shape(cfg, dataset)[2])  # resized on the way in


def _timed_step(cfg, arch, dataset, size) -> float:
    _, classes, side, channels = dataset_shape(cfg, dataset)
    probe = OmegaConf.merge(
        cfg,
        {
            "train": {"batch_size": size},
            "data": {
                "synthetic": {
                    "train_size": size * (WARMUP + STEPS),
                    "test_size": size,
                    "num_classes": classes,
                    "image_size": side,
                    "channels": channels,
                }
            },
        },
    )
    spec = run_spec(probe, arch, "synthetic", cfg.study.seeds[0], "fixed", "estimate")
    try:
        return _median_step(spec, size)
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        # the CPU allocator's own failure is a RuntimeError ("can't allocate memory")
        if (
            isinstance(exc, RuntimeError)
            and not isinstance(exc, torch.OutOfMemoryError)
            and "allocate memory" not in str(exc)
        ):
            raise
        raise DebaError(
            f"timing {arch} at batch {size} ran out of memory here "
            f"({type(exc).__name__}): estimate for the GPU you will use instead "
            f"(`--estimate --device h100`), which computes nothing."
        ) from None


def _median_step(spec, size) -> float:
    with tempfile.TemporaryDirectory() as state:
        trainer = Trainer(spec, state)
        batches = list(islice(trainer.data.train_batches(size), WARMUP + STEPS))
        trainer.train_epoch(size, batches[:WARMUP])
        times = []
        for batch in batches[WARMUP:]:
            began = time.perf_counter()
            trainer.train_epoch(size, [batch])  # ends with the epoch's one host sync
            times.append(time.perf_counter() - began)
        return statistics.median(times)


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
    if cells:  # once a process: the first architecture would carry the start-up otherwise
        _timed_step(cfg, cells[0][0], cells[0][1], PROBE_BATCH)
    for done, (arch, dataset) in enumerate(cells, start=1):
        train_size, _, side, channels = dataset_shape(cfg, dataset)
        key, probe = (arch, side, channels), probe_batch(cfg, _side(cfg, arch, dataset))
        if key not in measured:
            if progress:
                trained = _side(cfg, arch, dataset)
                progress(
                    f"timing {arch} on {trained}x{trained}x{channels} inputs at batch "
                    f"{probe} ({done} of {len(cells)})"
                )
            measured[key] = step_seconds(cfg, arch, dataset)
        steps = (
            runs_per_cell(cfg, dataset) * cfg.train.epochs * (train_size // cfg.train.batch_size)
        )
        seconds = steps * measured[key]
        total += seconds
        scaled = (
            f" (from batch {probe}, scaled by samples)" if probe != cfg.train.batch_size else ""
        )
        lines.append(
            f"  {arch}/{dataset}: {measured[key] * 1000:.1f} ms a step at batch "
            f"{cfg.train.batch_size}{scaled}, {runs_per_cell(cfg, dataset)} runs: "
            f"{as_hours(seconds)} device-hours"
        )
    flight = in_flight(cfg)
    device = resolve_device(cfg.train.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "this CPU"
    return "\n".join(
        [
            f"estimate on {where} (fixed-batch steps; evaluation not counted):",
            *lines,
            f"  total: {as_hours(total)} device-hours; about "
            f"{as_hours(total / flight)} hours of wall-clock with {flight} run(s) "
            f"in flight ({cfg.execution.backend} backend)",
        ]
    )


def as_hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f}" if seconds >= 360 else f"{seconds / 3600:.3f}"
