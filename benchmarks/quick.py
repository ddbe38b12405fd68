"""DEBA against the fixed batch, computed exactly as the pipeline computes it (its stages and
`analysis.compare`), in a temporary folder so the benchmark never touches the study's outputs."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from deba_pipeline.config import load_params, merge
from deba_pipeline.execution.one_run import train
from deba_pipeline.execution.study import read_records, run_spec
from deba_pipeline.report.comparison import compare
from deba_pipeline.stages import calibrate, profile
from deba_pipeline.stages import train as train_stage

from . import cases
from .harness import Bench

PRESET = Path(__file__).resolve().parents[1] / "pipelines" / "quick.yaml"


def _summary(comparisons: dict, prefix: str) -> dict:
    speedups = [c.speedup_mean for c in comparisons.values()]
    deltas = [c.delta_acc for c in comparisons.values()]
    return {
        f"{prefix}_speedup_pct": {
            "value": round(statistics.fmean(speedups), 2),
            "goal": None,
            "per_arch": {f"{a}/{d}": round(c.speedup_mean, 2) for (a, d), c in comparisons.items()},
        },
        f"{prefix}_delta_acc": {
            "value": round(statistics.fmean(deltas), 3),
            "goal": None,
            "per_arch": {f"{a}/{d}": round(c.delta_acc, 3) for (a, d), c in comparisons.items()},
        },
    }


def quick_preset() -> dict:
    """profile → calibrate → train of the quick preset, W&B off, then the mean speedup and ΔAcc."""
    cfg = load_params(PRESET)
    cfg.tracking.wandb = "disabled"
    cfg.study.methods = {"deba": {}}  # DEBA against fixed; the preset's peers are in its report
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cfg.tracking.dir = str(root / "state")
        archs = list(cfg.study.archs)
        profile.run(cfg, archs, str(root / "profile"), str(root / "stability"))
        calibrate.run(cfg, str(root / "profile"), str(root / "thresholds.json"))
        train_stage.run(
            cfg, archs, str(root / "train"), str(root / "profile"), str(root / "thresholds.json")
        )
        return _summary(compare(read_records(root / "train")), "quick")


def gpu_comparison(device: str, epochs: int = 10, size: int = 50_000) -> dict:
    """resnet18, bf16, channels_last, 10 epochs: fixed batch 64 against DEBA (paper thresholds,
    cooldown and window scaled to 10 epochs); and samples/s at batch 1024 against the floor."""
    cfg = merge(
        OmegaConf.create(
            {
                "data": {"synthetic": {"train_size": size, "test_size": 10_000}},
                "train": {
                    "epochs": epochs,
                    "device": device,
                    "precision": "bf16",
                    "channels_last": True,
                },
                "deba": {"thresholds": "paper", "cooldown": 2, "window": 5},
                "tracking": {"wandb": "disabled"},
            }
        )
    )
    out = {}
    with tempfile.TemporaryDirectory() as state:
        records = [
            train(
                run_spec(cfg, "resnet18", "synthetic", seed, method, "baseline"),
                state_dir=state,
                progress=False,
            )
            for seed in (2,)
            for method in ("fixed", "deba")
        ]
    out.update(_summary(compare(records), "gpu"))
    bench = Bench(arch="resnet18", size=size, device=device, precision="bf16", channels_last=True)
    began = time.time()
    vs_floor, _ = cases.loaders(bench, batch_size=1024, repeats=3)
    samples = size - size % 1024
    ours = bench.timed(cases.plain, 1024)[0]
    out["samples_per_s_vs_floor"] = {
        **vs_floor,
        "samples_per_s": round(samples / ours),
        "seconds": round(time.time() - began, 1),
    }
    return out
