"""Modelled against measured, side by side, on both data paths (docs/method.md). For each
architecture of the quick preset: its fixed runs (every seed, all epochs) trained on the device-
resident path and again streamed through the DataLoader with its workers, each timing its step
beside its epochs as every fixed run does; then the fixed size's step time measured the way the
steptime stage measures it; then the report's own check (`report.modelled.fixed_check`): the
fixed runs' modelled time over their measured time, against their clock noise.

    python -m benchmarks.step_model          # about 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from deba_pipeline.config import load_params
from deba_pipeline.engine.files import write_json
from deba_pipeline.engine.loop import Trainer
from deba_pipeline.execution.study import run_spec
from deba_pipeline.report.modelled import at_runs_level, fixed_check, fixed_noise_pct
from deba_pipeline.timing.steptime import measure

PRESET = Path(__file__).resolve().parents[1] / "pipelines" / "quick.yaml"
RESULTS = Path(__file__).parent / "results"


def cell(cfg, arch: str, dataset: str, state_dir: str) -> dict:
    """One architecture on one path: its fixed runs, the fixed size's step time, the check."""
    records = [
        Trainer(run_spec(cfg, arch, dataset, seed, "fixed", "baseline"), state_dir).run(
            progress=False
        )
        for seed in cfg.study.seeds
    ]
    trainer = Trainer(
        run_spec(cfg, arch, dataset, cfg.study.seeds[0], "fixed", "steptime"), state_dir
    )
    size, t = cfg.train.batch_size, cfg.timing
    table = measure(trainer, [size], size, t.repeats, t.steps, t.warmup, t.estimate)
    check = fixed_check(records, at_runs_level({arch: {dataset: table}}, records))
    return {
        "data_path": records[0]["data_path"],
        "ratio": round(check["model_ratio_fixed"], 3),
        "noise_pct": round(fixed_noise_pct(records), 1),
        "within_noise": check["model_ratio_within_noise"],
        "run_step_ms": [
            round(1000 * r["train_time_s"] / sum(e["steps"] for e in r["epochs"]), 2)
            for r in records
        ],
        "probe_step_ms": [round(1000 * r["step_probe"]["step_s"], 2) for r in records],
        "table_step_ms": round(1000 * table["step_s"][str(size)], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="*", help="default: the quick preset's")
    args = parser.parse_args()
    cfg = load_params(PRESET)
    cfg.tracking.wandb = "disabled"
    out = {}
    for placement in ("device", "stream"):
        cfg.data.placement = placement
        for arch in args.archs or cfg.study.archs:
            with tempfile.TemporaryDirectory() as state:
                result = cell(cfg, arch, "digits", state)
            out[f"{arch}/{placement}"] = result
            print(
                f"{arch:18} {placement:6} modelled/measured {result['ratio']:.3f}, clock noise "
                f"{result['noise_pct']:.1f}%: "
                f"{'within' if result['within_noise'] else 'outside'} noise "
                f"(runs {result['run_step_ms']} ms a step, beside them "
                f"{result['probe_step_ms']}, table {result['table_step_ms']})",
                flush=True,
            )
    write_json(RESULTS / "step_model.json", out)
    return 0 if all(r["within_noise"] for r in out.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
