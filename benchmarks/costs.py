"""Costs measured apart from the training loop: the peak memory and time of the gradient
variance in a process of its own, the epoch time at each batch size, and how long the commands
that train nothing take to start."""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from .cases import against_goal, plain
from .harness import Bench

VARIANCE_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time, timm, torch
    from deba_pipeline.core.gradstats import grad_stats
    torch.manual_seed(0)
    with torch.device("meta"):
        shapes = [p.shape for p in timm.create_model("resnet50").parameters()]
    device = sys.argv[2]
    grads = [torch.randn(s, device=device).mul_(1e-3) for s in shapes]  # no transient copies
    count = sum(g.numel() for g in grads)
    def ours(grads=grads):
        s = grad_stats(grads)
        return torch.stack([s.variance, s.norm]).tolist()
    def concat(grads=grads):
        flat = torch.cat([g.flatten() for g in grads]).double()
        return [flat.var(unbiased=False).item(), flat.norm().item()]
    fn = ours if sys.argv[1] == "ours" else concat
    # page in the code, start the threads
    fn([torch.randn(1 << 15, device=device), torch.randn(3, 7, device=device)])
    if device == "cuda":
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    value = fn()  # the first call sets the peak: nothing before it allocated scratch
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    times = []
    for _ in range(5):
        began = time.perf_counter(); fn(); times.append(time.perf_counter() - began)
    print(json.dumps({"count": count, "peak": peak, "time": sorted(times)[2], "value": value}))
""")


def variance_cost(device="cpu"):
    """Our σ²/‖∇‖ against torch.cat(...).var() on ResNet-50-sized gradients (~25.6M)."""
    import json

    runs = {"ours": [], "concat": []}
    for _ in range(5):  # fresh processes; page-ins only add to RSS, so the minimum is the cost
        for which in runs:
            out = subprocess.run(
                [sys.executable, "-c", VARIANCE_SCRIPT, which, device],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs[which].append(json.loads(out.strip().splitlines()[-1]))
    ours, concat = (min(runs[w], key=lambda r: r["peak"]) for w in ("ours", "concat"))
    ours["time"] = statistics.median(r["time"] for r in runs["ours"])
    concat["time"] = statistics.median(r["time"] for r in runs["concat"])
    for a, b in zip(ours["value"], concat["value"]):
        if abs(a - b) > 1e-9 * abs(b):
            raise AssertionError(f"σ²/‖∇‖ differ: ours {ours['value']}, concat {concat['value']}")
    copy_bytes = ours["count"] * 4  # the concatenated float32 copy
    memory = against_goal(max(ours["peak"], 0) / copy_bytes, 0.01)
    memory.update(
        parameters=ours["count"], extra_bytes=ours["peak"], concat_extra_bytes=concat["peak"]
    )
    if memory["met"] is not True:
        memory["profile"] = _allocations(device)
    return memory, against_goal(
        [o["time"] / c["time"] for o, c in zip(runs["ours"], runs["concat"])], 1.0
    )


def _allocations(device, rows=4):
    """Which ops allocate inside grad_stats (torch profiler, self memory), on 1M-element grads."""
    from torch.profiler import ProfilerActivity, profile

    from deba_pipeline.core.gradstats import grad_stats

    grads = [torch.randn(250_000, device=device) for _ in range(4)]
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        grad_stats(grads)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_memory_usage, reverse=True)
    return [
        {
            "op": e.key,
            "self_ms": round(e.self_cpu_memory_usage / 2**20, 3),
            "calls": e.count,
            "unit": "MiB allocated",
        }
        for e in events[:rows]
    ]


def epoch_time_by_batch(
    archs=("test_resnet", "test_efficientnet"),
    sizes=None,
    device="cpu",
    size=4096,
    image=32,
    **bench_kwargs,
):
    """Figure 1: seconds per epoch for each batch size, per model (one epoch each, after a
    warm-up epoch at that size)."""
    sizes = sizes or [16, 32, 64, 128, 256, 512, 1024, 2048]
    table = {}
    for arch in archs:
        bench = Bench(arch=arch, size=size, image=image, device=device, **bench_kwargs)
        row = {}
        for batch in sizes:
            bench.timed(plain, batch)
            seconds, result = bench.timed(plain, batch)
            if result["samples"] != size - size % batch:
                raise AssertionError(f"{arch} at batch {batch} saw {result['samples']} samples")
            row[str(batch)] = round(seconds, 4)
        table[arch] = row
    return table


STARTUP = {
    "help_s": (["deba", "--help"], 0.5),
    "preset_diff_s": (["deba", "preset", "quick", "--diff"], 0.5),
    "validate_s": (["deba", "validate", "quick"], 3.0),
}


def startup(repeats=7):
    """Seconds a command that trains nothing takes, from a fresh process (goals: --help and
    `preset quick --diff` ≤ 0.5 s, `validate quick` ≤ 3 s), each the median of `repeats` runs
    after one untimed run (which fills the timm names cache)."""
    import time

    root = Path(__file__).resolve().parent.parent
    out = {}
    for key, (command, goal) in STARTUP.items():
        subprocess.run(command, cwd=root, capture_output=True, check=True)
        seconds = []
        for _ in range(repeats):
            began = time.perf_counter()
            subprocess.run(command, cwd=root, capture_output=True, check=True)
            seconds.append(time.perf_counter() - began)
        out[key] = against_goal(seconds, goal)
    return out
