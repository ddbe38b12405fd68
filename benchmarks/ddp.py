"""One run on 1 process and on W (torchrun + DDP, docs/cluster.md), side by side in one call: the
steady-state epoch time of the same fixed-batch run, alternating 1 and W, and their ratio.

    python -m benchmarks.ddp           # CPU: 1 against 2 gloo processes, about 2 minutes on 2 cores
    python -m benchmarks.ddp --gpu     # CUDA: 1, 2, 4, ... processes, up to the GPUs present

The global batch is the same at every W (strong scaling: each process takes B/W samples a
step), so a ratio below 1 is time saved. Writes benchmarks/results/ddp-<host>.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from deba_pipeline.config import merge
from deba_pipeline.engine.files import write_json
from deba_pipeline.execution.one_run import train
from deba_pipeline.execution.study import run_spec

from .__main__ import host_kind

RESULTS = Path(__file__).parent / "results"


def spec(world: int, gpu: bool, epochs: int):
    size = 50_000 if gpu else 4_000  # synthetic CIFAR-shaped images
    cfg = merge(
        OmegaConf.create(
            {
                "data": {"synthetic": {"train_size": size, "test_size": 1000}},
                "train": {
                    "epochs": epochs,
                    "batch_size": 1024 if gpu else 128,
                    "processes": world,
                    "device": "cuda" if gpu else "cpu",
                    "eval_batch_size": 1000,
                },
                "tracking": {"wandb": "disabled"},
            }
        )
    )
    return run_spec(cfg, "resnet18" if gpu else "test_resnet", "synthetic", 0, "fixed", "bench")


def steady_epoch_s(world: int, gpu: bool, epochs: int) -> float:
    """Median epoch time after the first (compilation, caches) of a fresh run on `world`."""
    with tempfile.TemporaryDirectory() as state:
        record = train(spec(world, gpu, epochs), state_dir=state, progress=False)
    return statistics.median(e["epoch_time_s"] for e in record["epochs"][1:])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of every W")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    present = torch.cuda.device_count() if args.gpu else os.cpu_count()
    worlds = [w for w in (1, 2, 4, 8) if w <= present] if args.gpu else [1, 2]
    times = {w: [] for w in worlds}
    for _ in range(args.rounds):  # alternate, so a slow stretch of the machine touches every W
        for world in worlds:
            times[world].append(steady_epoch_s(world, args.gpu, args.epochs))
    base = statistics.median(times[1])
    out = {
        "host_kind": host_kind("cuda" if args.gpu else "cpu"),
        "devices_present": present,
        "setup": spec(1, args.gpu, args.epochs).name,
        "epoch_s": times,
        "ratio_to_one_process": {w: statistics.median(t) / base for w, t in times.items()},
    }
    path = write_json(Path(args.out) / f"ddp-{out['host_kind']}.json", out)
    print(json.dumps(out["ratio_to_one_process"]), f"(epoch time on W processes over 1; {path})")
    if args.gpu and present < 2:
        print("one GPU present: no scaling to measure beyond W = 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
