"""Timing that can be trusted on a noisy machine: interleaved repeats from one saved state, so
every variant computes the same epoch, and a check that it did before any ratio is reported."""

from __future__ import annotations

import copy
import statistics
import time

import torch
from omegaconf import OmegaConf

from deba_pipeline.config import merge
from deba_pipeline.engine.loop import Trainer
from deba_pipeline.execution.study import run_spec


class Bench:
    """A model, its optimiser and its held data, restorable to one state between variants."""

    def __init__(
        self,
        arch="test_resnet",
        dataset="synthetic",
        size=2048,
        image=32,
        device="cpu",
        precision="fp32",
        channels_last=False,
        method="deba",
        state_dir="/tmp/deba-bench",
    ):
        cfg = merge(
            OmegaConf.create(
                {
                    "data": {
                        "synthetic": {"train_size": size, "test_size": 256, "image_size": image}
                    },
                    "train": {
                        "device": device,
                        "precision": precision,
                        "channels_last": channels_last,
                    },
                    "deba": {"thresholds": "fixed"},
                    "tracking": {"wandb": "disabled"},
                }
            )
        )
        self.spec = run_spec(cfg, arch, dataset, 0, method, "bench")
        self.trainer = Trainer(self.spec, state_dir)
        self.device = self.trainer.device
        self.saved = self._state()

    def _state(self):
        t = self.trainer
        return (
            copy.deepcopy(t.model.state_dict()),
            copy.deepcopy(t.optimizer.state_dict()),
            t.data.generator.get_state(),
        )

    def restore(self):
        model, optimizer, generator = self.saved
        self.trainer.model.load_state_dict(model)
        self.trainer.optimizer.load_state_dict(copy.deepcopy(optimizer))  # it keeps its tensors
        self.trainer.data.generator.set_state(generator)

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, variant, *args):
        """(seconds, result) of one call of `variant` from the saved state."""
        self.restore()
        return self.timed_here(variant, *args)

    def timed_here(self, variant, *args):
        """(seconds, result) of one call of `variant` from wherever training is now."""
        self.sync()
        began = time.perf_counter()
        result = variant(self, *args)
        self.sync()
        return time.perf_counter() - began, result


def interleaved(bench, variants: dict, repeats: int, *args) -> dict:
    """Median seconds per variant, run in turn `repeats` times, plus each variant's results."""
    times = {name: [] for name in variants}
    results = {}
    for fn in variants.values():  # warm-up: allocator, kernels, caches
        bench.timed(fn, *args)
    for _ in range(repeats):
        for name, fn in variants.items():
            seconds, results[name] = bench.timed(fn, *args)
            times[name].append(seconds)
    return {
        "median_s": {n: statistics.median(t) for n, t in times.items()},
        "times_s": times,
        "results": results,
    }


LEVEL = 0.90  # the confidence of every benchmark interval


def median_interval(values, level: float = LEVEL):
    """(low, high), a distribution-free interval of the median: the order statistics
    x₍ₖ₎ and x₍ₙ₋ₖ₊₁₎ with the largest k whose coverage 1 − 2·P(Binomial(n, ½) < k) is at least
    `level` (5 repeats: the minimum and maximum, 93.75 %). None where n is too small for it. A
    repeat that another process slowed moves a mean, not this."""
    from scipy.stats import binom

    xs, n = sorted(values), len(values)
    ks = [k for k in range(1, n // 2 + 1) if 1 - 2 * binom.cdf(k - 1, n, 0.5) >= level]
    return (xs[max(ks) - 1], xs[n - max(ks)]) if ks else None


def paired(measured, numerator, denominator) -> list:
    """The ratio numerator/denominator of each repeat (the two timed side by side)."""
    pairs = zip(measured["times_s"][numerator], measured["times_s"][denominator])
    return [a / b for a, b in pairs]


def same_epoch(results: dict) -> None:
    """Every variant trained the same samples to the same loss, or no ratio is reported."""
    losses = {name: r["train_loss"] for name, r in results.items()}
    samples = {name: r["samples"] for name, r in results.items()}
    reference = next(iter(losses.values()))
    if len(set(samples.values())) != 1 or any(
        abs(v - reference) > 1e-5 * abs(reference) for v in losses.values()
    ):
        raise AssertionError(
            f"variants computed different epochs: losses {losses}, samples {samples}"
        )


def _self_times(fn, bench, *args) -> dict:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if bench.device.type == "cuda" else []
    )
    bench.restore()
    with profile(activities=activities) as prof:
        fn(bench, *args)
        bench.sync()
    key = "self_cuda_time_total" if bench.device.type == "cuda" else "self_cpu_time_total"
    return {e.key: (getattr(e, key) / 1000, e.count) for e in prof.key_averages()}


def top_ops(fn, bench, *args, baseline=None, rows=6) -> list:
    """What costs the time (torch profiler, self time per op): with a `baseline`, the ops whose
    time grew most from the baseline's epoch to `fn`'s, which is where the extra cost lives."""
    mine = _self_times(fn, bench, *args)
    theirs = _self_times(baseline, bench, *args) if baseline else {}
    grown = {op: (ms - theirs.get(op, (0.0, 0))[0], calls) for op, (ms, calls) in mine.items()}
    ranked = sorted(grown.items(), key=lambda item: item[1][0], reverse=True)[:rows]
    unit = "ms more than baseline" if baseline else "ms"
    return [
        {"op": op, "self_ms": round(ms, 2), "calls": calls, "unit": unit}
        for op, (ms, calls) in ranked
    ]
