"""The quick study's `dvc repro` on the Ray backend against the local one, side by side: two fresh
copies of the project, reproduced from scratch stage by stage, the two backends alternating.

    python -m benchmarks.backends     # about 10 minutes on 2 cores

Both copies run as a user's default does, one thread a run (`execution.cpus_per_run: 1`): the local
copy in its process pool, as many runs at once as the cores hold; the Ray copy on an embedded Ray,
one run per core. Each stage is reproduced in both copies before the next, the copy that goes first
alternating (ABBA), so a slow stretch of this shared machine falls on both sides alike (two
reproductions of the same study read 282 s and 255 s within an hour). A backend's wall-clock is the
sum of its stages (a `dvc repro -s` each, so DVC's start-up counts once per stage on both sides).
Prints each stage, the totals, their ratio (goal: local/ray ≤ 1, the pool no slower than Ray) and
whether every run's decisions, batch sizes and accuracy agree (they must: a run's threads are a
param), and checks that neither copy has a stage left to run. Writes
benchmarks/results/backends-<host>.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from deba_pipeline.engine.files import write_json

from .__main__ import host_kind

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def clone(dest: Path, execution: dict) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    params = OmegaConf.load(dest / "params.yaml")
    params.execution = OmegaConf.merge(params.execution, execution)
    OmegaConf.save(params, dest / "params.yaml")
    subprocess.run(["git", "commit", "-qam", "benchmark backend"], cwd=dest, check=True)
    return dest


def reproduce(workspace: Path, stage: str) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        ["dvc", "repro", "-q", "-s", stage], cwd=workspace, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(
            f"dvc repro -s {stage} failed in {workspace}:\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return time.perf_counter() - began


def left_to_run(workspace: Path) -> dict:
    done = subprocess.run(
        ["dvc", "status", "--json"], cwd=workspace, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout or "{}")


def runs(workspace: Path) -> dict:
    out = {}
    for path in sorted((workspace / "runs").rglob("*.json")):
        r = json.loads(path.read_text())
        out[str(path.relative_to(workspace))] = (
            [(e["decision"], e["batch_size"]) for e in r["epochs"]],
            r["final_test_accuracy"],
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    stages = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])  # in DAG order
    with tempfile.TemporaryDirectory() as tmp:
        copies = {
            "local": clone(Path(tmp) / "local", {"backend": "local"}),
            "ray": clone(Path(tmp) / "ray", {"backend": "ray", "gpus_per_run": 0}),
        }
        total, by_stage = dict.fromkeys(copies, 0.0), {}
        for i, stage in enumerate(stages):
            order = ["local", "ray"] if i % 2 == 0 else ["ray", "local"]
            seconds = {name: reproduce(copies[name], stage) for name in order}
            for name, s in seconds.items():
                total[name] += s
            by_stage[stage] = seconds
            print(
                f"{stage:10s} local {seconds['local']:6.1f} s  ray {seconds['ray']:6.1f} s"
                f"  ({order[0]} first)",
                flush=True,
            )
        stale = {name: left_to_run(path) for name, path in copies.items()}
        if any(stale.values()):
            sys.exit(f"stages left to run after the benchmark: {stale}")
        a, b = runs(copies["local"]), runs(copies["ray"])
        differ = sum(a[k] != b.get(k) for k in a)
    out = {
        "host_kind": host_kind("cpu"),
        "stage_s": by_stage,
        "total_s": total,
        "local_over_ray": total["local"] / total["ray"],
        "goal": 1.0,
        "runs": len(a),
        "runs_that_differ": differ,
    }
    path = write_json(Path(args.out) / f"backends-{out['host_kind']}.json", out)
    print(
        f"local {total['local']:.1f} s, ray {total['ray']:.1f} s: local/ray = "
        f"{out['local_over_ray']:.3f} (goal <= 1.0); {len(a)} runs, decisions, batch sizes "
        f"and accuracies {'identical' if not differ else f'differ in {differ}'} ({path})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
