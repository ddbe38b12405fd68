"""Run every benchmark and write benchmarks/results/<host-kind>.{json,md}.

python -m benchmarks            # CPU, about 5 minutes on 2 cores
python -m benchmarks --gpu      # the GPU check (benchmarks/gpu.sh runs this)
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from deba_pipeline.engine.files import write_json, write_text

from . import cases, costs, quick
from .harness import Bench

RESULTS = Path(__file__).parent / "results"


def host_kind(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name().lower().replace(" ", "-")
    return f"cpu-{os.cpu_count()}core"


def run(device: str, gpu: bool, size: int, image: int) -> dict:
    torch.manual_seed(0)
    kwargs = {"precision": "bf16", "channels_last": True} if gpu else {}
    arch = "resnet18" if gpu else "test_resnet"
    out = {
        "host_kind": host_kind(device),
        "device": device,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "setup": {"arch": arch, "dataset": f"synthetic {size}×3×{image}×{image}", **kwargs},
    }
    began = time.time()
    repeats = 3 if gpu else 5  # the GPU check must fit one 8-minute call
    bench = Bench(arch=arch, size=size, image=image, device=device, **kwargs)
    out["scheduler_share"], out["scheduler_share_noise_scale"] = cases.scheduler_share(
        bench, repeats=repeats
    )
    out["signal_overhead_ratio"] = cases.signal_overhead(bench, repeats=repeats)
    out["noise_scale_overhead_ratio"] = cases.noise_scale_overhead(bench, repeats=repeats)
    out["profile_overhead_ratio"] = cases.profile_overhead(bench, repeats=repeats)
    out["profile_share"] = cases.profile_share(bench, repeats=repeats)
    out["loader_vs_floor_ratio"], out["loader_vs_dataloader_speedup"] = cases.loaders(
        bench, repeats=3 * repeats
    )  # a 2 % goal: three times the repeats to decide it
    out["batch_change_ratio"] = cases.batch_change(bench, repeats=repeats)
    out["streaming_vs_device_ratio"] = cases.streaming(bench, repeats=repeats)
    out["variance_peak_memory_ratio"], out["variance_time_ratio"] = costs.variance_cost(device)
    archs = ("resnet18", "mobilenetv3_large_100") if gpu else ("test_resnet", "test_efficientnet")
    out["epoch_time_by_batch"] = costs.epoch_time_by_batch(
        archs, device=device, size=size, image=image, **kwargs
    )
    if gpu:
        out.update(quick.gpu_comparison(device))
    else:
        out.update(quick.quick_preset())
    if not gpu:
        out.update(costs.startup())
    out["wall_s"] = round(time.time() - began, 1)
    return out


GOALS = (
    "scheduler_share",
    "scheduler_share_noise_scale",
    "signal_overhead_ratio",
    "noise_scale_overhead_ratio",
    "profile_overhead_ratio",
    "profile_share",
    "loader_vs_floor_ratio",
    "loader_vs_dataloader_speedup",
    "batch_change_ratio",
    "streaming_vs_device_ratio",
    "variance_peak_memory_ratio",
    "variance_time_ratio",
    "quick_speedup_pct",
    "quick_delta_acc",
    "gpu_speedup_pct",
    "gpu_delta_acc",
    "samples_per_s_vs_floor",
    "help_s",
    "preset_diff_s",
    "validate_s",
)


def markdown(result: dict) -> str:
    lines = [
        f"### {result['host_kind']} ({result['device']}, torch {result['torch']}, "
        f"{result['threads']} threads)",
        "",
        f"Setup: {result['setup']}. Wall time {result['wall_s']} s.",
        "",
        "| measurement | median | 90% interval of the median | goal | verdict |",
        "|---|---|---|---|---|",
    ]
    for key in GOALS:
        if key in result:
            m = result[key]
            met = (
                "–"
                if m.get("goal") is None
                else {True: "met", False: "**missed**", None: "undecided"}[m.get("met")]
            )
            goal = "–" if m.get("goal") is None else f"≤ {m['goal']}"
            value = m["value"]
            ci = m.get("interval")
            interval = "–" if not ci else f"[{ci[0]}, {ci[1]}] ({m['repeats']} repeats)"
            if "extra_bytes" in m:
                value = (
                    f"{value} ({m['extra_bytes']} B extra; cat path {m['concat_extra_bytes']} B)"
                )
            lines.append(f"| `{key}` | {value} | {interval} | {goal} | {met} |")
            for op in m.get("profile", []):
                unit = op.get("unit", "ms")
                lines.append(
                    f"|   ↳ profile: `{op['op']}` | {op['self_ms']} {unit} "
                    f"({op['calls']} calls) | | | |"
                )
    lines += [
        "",
        "Seconds per epoch by batch size (Figure 1):",
        "",
        "| model | " + " | ".join(next(iter(result["epoch_time_by_batch"].values()))) + " |",
        "|---|" + "---|" * len(next(iter(result["epoch_time_by_batch"].values()))),
    ]
    for arch, row in result["epoch_time_by_batch"].items():
        lines.append(f"| {arch} | " + " | ".join(str(v) for v in row.values()) + " |")
    return "\n".join(lines) + "\n"


MARKER = "<!-- results -->"
NO_GPU = (
    "No GPU result yet: no session so far had a device machine. `gpu.sh` has run only on "
    "the CPU, as a smoke test of its code paths at tiny sizes, which says nothing of its "
    "timings.\n"
)


def refresh_readme(results: Path) -> None:
    """Rewrite the README's results section from every machine kind's table."""
    readme = Path(__file__).parent / "README.md"
    text = readme.read_text()
    tables = [p.read_text() for p in sorted(results.glob("*.md"))]
    if not any(t.startswith("### nvidia") for t in tables):
        tables.append(NO_GPU)
    write_text(readme, text[: text.index(MARKER) + len(MARKER)] + "\n\n" + "\n".join(tables))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--gpu", action="store_true", help="the GPU check (needs CUDA)")
    parser.add_argument("--size", type=int, default=None, help="synthetic training images")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args(argv)
    device = "cuda" if args.gpu else "cpu"
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device; run `python -m benchmarks` on the CPU")
    size = args.size or (50_000 if args.gpu else 4096)
    result = run(device, args.gpu, size, 32)
    out = Path(args.out)
    write_json(out / f"{result['host_kind']}.json", result)
    table = markdown(result)
    write_text(out / f"{result['host_kind']}.md", table)
    if out.resolve() == RESULTS.resolve():
        refresh_readme(out)
    print(table)


if __name__ == "__main__":
    main()
