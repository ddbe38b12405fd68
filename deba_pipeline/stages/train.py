"""Train stage: the main comparison, the fixed batch against each strategy of study.methods (DEBA
by default), for every architecture, dataset and seed, in one pool so every device stays busy.
The fixed runs are trained here, apart from the profile runs; with
study.reuse_profile_runs a fixed run identical to a profile run is taken from the profile stage
(its record says `reused_from: profile`).
`deba train` (or `deba train --arch resnet18` for one)"""
from dataclasses import replace
from pathlib import Path

from ..engine.files import read_json, write_json
from .runs import expected_seconds, read_records, record_path, run_all, run_spec


def load_thresholds(cfg, path="results/thresholds.json"):
    if cfg.deba.thresholds != "calibrated":
        return None
    return read_json(path, "run the calibrate stage (`dvc repro calibrate`), or set "
                           "deba.thresholds to paper or fixed")


def reuse_profiles(specs, profiles, out) -> list:
    """Write the profile record for every fixed spec that a profile run already answered;
    return the specs still to train."""
    profiles = {r["key"]: r for r in profiles}
    remaining = []
    for spec in specs:
        found = profiles.get(replace(spec, profile=True).key()) if spec.method == "fixed" else None
        if found is None:
            remaining.append(spec)
            continue
        write_json(record_path(out, spec), dict(found, variant=spec.variant, config=spec.config(),
                                                reused_from="profile"))
    return remaining


def specs(cfg, archs, calibrated) -> list:
    """The fixed run and each strategy of study.methods, per architecture, dataset and seed."""
    methods = {"fixed": None, **cfg.study.methods}
    return [run_spec(cfg, arch, dataset, seed, method, "baseline", deba_overrides=overrides,
                     calibrated=calibrated)
            for arch in archs for dataset in cfg.study.datasets for seed in cfg.study.seeds
            for method, overrides in methods.items()]


def run(cfg, archs, out: str = "runs/train", profile_dir: str = "runs/profile",
        thresholds: str = "results/thresholds.json") -> None:
    runs = specs(cfg, archs, load_thresholds(cfg, thresholds))
    profiles = read_records(profile_dir) if Path(profile_dir).is_dir() else []
    if cfg.study.reuse_profile_runs:
        runs = reuse_profiles(runs, profiles, out)
    run_all(cfg, runs, out, expected_seconds(runs, profiles))
