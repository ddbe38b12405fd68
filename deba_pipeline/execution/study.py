"""The runs a study makes, from params to RunSpecs (profile, train and ablate runs), and where each
run's record lives. Shared by every stage and by `deba run NAME`."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from omegaconf import OmegaConf

from deba_pipeline.config import OPTIMIZER_DEFAULTS, PAPER_THRESHOLDS, DebaConfig
from deba_pipeline.core.errors import ConfigError, DebaError
from deba_pipeline.core.record import is_record, record_problem, upgrade
from deba_pipeline.engine.files import read_json, write_json
from deba_pipeline.engine.spec import RunSpec
from deba_pipeline.execution.process import threads_per_run


def resolve_thresholds(deba: DebaConfig, arch: str, dataset: str, calibrated: dict | None):
    """(θ_stab, θ_conf, provenance) for one architecture and dataset, as `deba.thresholds` says."""
    if deba.thresholds == "fixed":
        return deba.theta_stab, deba.theta_conf, "fixed"
    if deba.thresholds == "paper":
        if arch not in PAPER_THRESHOLDS:
            raise ConfigError(
                f"deba.thresholds is 'paper' but paper Table 1 has no thresholds for "
                f"{arch!r} (it has {', '.join(PAPER_THRESHOLDS)}): use "
                f"'calibrated' or 'fixed'."
            )
        return (*PAPER_THRESHOLDS[arch], "paper")
    try:
        entry = calibrated[arch][dataset]
        values = float(entry["theta_stab"]), float(entry["theta_conf"])
    except (KeyError, TypeError, ValueError):
        raise DebaError(
            f"no calibrated thresholds for {arch}/{dataset}: run the calibrate stage "
            f"(`dvc repro calibrate`) or set deba.thresholds to paper or "
            f"fixed."
        ) from None
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise DebaError(
            f"calibrated thresholds for {arch}/{dataset} are {values}, not finite "
            f"numbers >= 0: run the calibrate stage again (`dvc repro calibrate`)."
        )
    return (*values, "calibrated")


def run_spec(
    cfg, arch, dataset, seed, method, variant, deba_overrides=None, calibrated=None, profile=False
) -> RunSpec:
    """The RunSpec of one run: the params groups it reads, as their schema dataclasses."""
    deba = None
    if method != "fixed":  # "deba", or a strategy of study.methods (its overrides given)
        deba = OmegaConf.to_object(OmegaConf.merge(cfg.deba, deba_overrides or {}))
        deba.theta_stab, deba.theta_conf, deba.thresholds = resolve_thresholds(
            deba, arch, dataset, calibrated
        )
    train = OmegaConf.to_object(cfg.train)
    for key, value in OPTIMIZER_DEFAULTS.get(train.optimizer, {}).items():
        if getattr(train, key) is None:  # the record shows what the optimizer used
            setattr(train, key, value)
    return RunSpec(
        arch,
        dataset,
        int(seed),
        method,
        variant,
        train,
        OmegaConf.to_object(cfg.data),
        deba,
        profile,
        list(cfg.deba.plugins),
        threads=threads_per_run(cfg.execution.cpus_per_run),
    )


def record_path(stage_dir, spec: RunSpec) -> Path:
    """One file per run: <stage_dir>/<arch>/<dataset>/<method>-<variant>-seed<seed>.json. Names
    come from params, so a path that would leave <stage_dir> is refused, whatever let it in."""
    root = Path(stage_dir).resolve()
    path = (
        root / spec.arch / spec.dataset / f"{spec.method}-{spec.variant}-seed{spec.seed}.json"
    ).resolve()
    if not path.is_relative_to(root):
        raise ConfigError(
            f"{spec.name}: its record would be written to {path}, outside "
            f"{root}: architecture, dataset and variant names must not be paths."
        )
    return Path(stage_dir) / path.relative_to(root)


def run_all(cfg, specs, runs_dir, expected_s=None) -> list:
    """Train (or reuse) each spec where `execution` says, writing each record as it finishes."""
    from deba_pipeline.execution import execute

    return execute(
        cfg, specs, lambda spec, record: write_json(record_path(runs_dir, spec), record), expected_s
    )


def epoch_seconds(records) -> dict:
    """{(arch, dataset): the median epoch of its fixed-batch runs, in seconds}, from records."""
    times = defaultdict(list)
    for record in records:
        if record["method"] == "fixed":
            times[record["arch"], record["dataset"]] += [
                e["epoch_time_s"] for e in record["epochs"]
            ]
    return {cell: statistics.median(t) for cell, t in times.items() if t}


def expected_seconds(specs, records) -> list | None:
    """Each spec's rough cost, its cell's fixed epoch × its epochs, to send the longest first;
    None where `records` time none of them."""
    per_epoch = epoch_seconds(records)
    if not any((s.arch, s.dataset) in per_epoch for s in specs):
        return None
    return [per_epoch.get((s.arch, s.dataset), 0.0) * s.train.epochs for s in specs]


def read_records(root) -> list:
    """Every run record under `root` (recursively), skipping JSON files that are not records;
    a record that contradicts itself, or a second record of one run, is one DebaError naming
    the file."""
    out, seen = [], {}
    fix = (
        "delete it and run `dvc repro`: the run is restored from the finished-run cache or "
        "trained again"
    )
    for path in sorted(Path(root).rglob("*.json")):
        data = read_json(path, fix)
        if not is_record(data):
            continue
        problem = record_problem(data)
        if problem:
            raise DebaError(
                f"{path} cannot be read as a run record: {problem}. If it is a stale "
                f"or edited copy, {fix}."
            )
        run = (data["arch"], data["dataset"], data["method"], data["variant"], data["seed"])
        if run in seen:
            name = "/".join(map(str, run))
            raise DebaError(
                f"{path} and {seen[run]} are records of one run ({name}): a stale "
                f"copy would silently stand for it. Delete the one that is not the "
                f"stage's output (e.g. a copy in another folder)."
            )
        seen[run] = path
        out.append(upgrade(data))
    return out


def profile_specs(cfg, archs) -> list:
    """The fixed-batch profile runs (docs/method.md): per architecture, dataset and profile seed."""
    return [
        run_spec(cfg, arch, dataset, seed, "fixed", "profile", profile=True)
        for arch in archs
        for dataset in cfg.study.datasets
        for seed in cfg.study.profile_seeds
    ]


def train_specs(cfg, archs, calibrated) -> list:
    """The fixed run and each strategy of study.methods, per architecture, dataset and seed."""
    methods = {"fixed": None, **cfg.study.methods}
    return [
        run_spec(
            cfg,
            arch,
            dataset,
            seed,
            method,
            "baseline",
            deba_overrides=overrides,
            calibrated=calibrated,
        )
        for arch in archs
        for dataset in cfg.study.datasets
        for seed in cfg.study.seeds
        for method, overrides in methods.items()
    ]


def ablate_specs(cfg, archs, calibrated) -> list:
    """The DEBA variants of ablate.variants on the ablation dataset, per architecture and seed."""
    return [
        run_spec(
            cfg,
            arch,
            cfg.ablate.dataset,
            seed,
            "deba",
            name,
            deba_overrides=overrides,
            calibrated=calibrated,
        )
        for arch in archs
        for name, overrides in cfg.ablate.variants.items()
        for seed in cfg.study.seeds
    ]


def load_thresholds(cfg, path):
    """The calibrate stage's thresholds where deba.thresholds is calibrated, else None."""
    if cfg.deba.thresholds != "calibrated":
        return None
    if path is None:
        raise ConfigError(
            "deba.thresholds is calibrated: name the calibrate stage's file with "
            "--thresholds (results/thresholds.json in dvc.yaml)."
        )
    return read_json(
        path,
        "run the calibrate stage (`dvc repro calibrate`), or set deba.thresholds to paper or fixed",
    )


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
        write_json(
            record_path(out, spec),
            dict(found, variant=spec.variant, config=spec.config(), reused_from="profile"),
        )
    return remaining
