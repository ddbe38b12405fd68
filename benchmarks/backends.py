"""The quick study's `dvc repro` on the Ray backend against the local one, in one run: two fresh
copies of the project, each reproduced from scratch, one after the other, on this machine.

    python -m benchmarks.backends     # about 8 minutes on 2 cores

The local copy runs as a user's default does (every core, one run at a time); the Ray copy
starts an embedded Ray with `execution.cpus_per_run: 1` (one run per core). Prints the two
wall-clocks, their ratio (goal ≤ 0.7) and whether every run's decisions, batch sizes and accuracy
agree (CPU training matches exactly only at equal torch threads; both use one here when
`--same-threads` is given).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]


def clone(dest: Path, execution: dict) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    params = OmegaConf.load(dest / "params.yaml")
    params.execution = OmegaConf.merge(params.execution, execution)
    OmegaConf.save(params, dest / "params.yaml")
    subprocess.run(["git", "commit", "-qam", "benchmark backend"], cwd=dest, check=True)
    return dest


def reproduce(workspace: Path) -> float:
    began = time.perf_counter()
    done = subprocess.run(["dvc", "repro", "-q"], cwd=workspace, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"dvc repro failed in {workspace}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - began


def runs(workspace: Path) -> dict:
    out = {}
    for path in sorted((workspace / "runs").rglob("*.json")):
        r = json.loads(path.read_text())
        out[str(path.relative_to(workspace))] = (
            [(e["decision"], e["batch_size"]) for e in r["epochs"]], r["final_test_accuracy"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--same-threads", action="store_true",
                        help="give local runs one thread too, so records can match exactly")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        local = clone(Path(tmp) / "local",
                      {"backend": "local", "cpus_per_run": 1 if args.same_threads else None})
        ray = clone(Path(tmp) / "ray", {"backend": "ray", "cpus_per_run": 1, "gpus_per_run": 0})
        t_local, t_ray = reproduce(local), reproduce(ray)
        a, b = runs(local), runs(ray)
        same = a == b
        print(f"local {t_local:.1f} s, ray {t_ray:.1f} s: ray/local = {t_ray / t_local:.3f} "
              f"(goal <= 0.7); {len(a)} runs, decisions, batch sizes and accuracies "
              f"{'identical' if same else 'differ in ' + str(sum(a[k] != b.get(k) for k in a))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
