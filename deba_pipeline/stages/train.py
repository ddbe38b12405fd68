"""Train stage: the main comparison, the fixed batch against each strategy of study.methods (DEBA
by default), for every architecture, dataset and seed, in one pool so every device stays busy.
The fixed runs are trained here, apart from the profile runs; with study.reuse_profile_runs a
fixed run identical to a profile run is taken from the profile stage (its record says
`reused_from: profile`).
`deba train --out runs/train --profiles runs/profile --thresholds results/thresholds.json`"""

from pathlib import Path

from deba_pipeline.execution.study import (
    expected_seconds,
    load_thresholds,
    read_records,
    reuse_profiles,
    run_all,
    train_specs,
)


def run(cfg, archs, out: str, profile_dir: str, thresholds: str) -> None:
    runs = train_specs(cfg, archs, load_thresholds(cfg, thresholds))
    profiles = read_records(profile_dir) if Path(profile_dir).is_dir() else []
    if cfg.study.reuse_profile_runs:
        runs = reuse_profiles(runs, profiles, out)
    run_all(cfg, runs, out, expected_seconds(runs, profiles))
