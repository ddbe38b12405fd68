"""From params to RunSpecs, and where each run's record lives. Shared by every stage."""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from ..config import PAPER_THRESHOLDS
from ..engine.files import read_json, write_json
from ..engine.loop import train
from ..engine.spec import RunSpec
from ..errors import ConfigError, DebaError


def resolve_thresholds(deba: dict, arch: str, dataset: str, calibrated: dict | None):
    """(θ_stab, θ_conf, provenance) for one architecture and dataset, as `deba.thresholds` says."""
    mode = deba["thresholds"]
    if mode == "fixed":
        return deba["theta_stab"], deba["theta_conf"], "fixed"
    if mode == "paper":
        if arch not in PAPER_THRESHOLDS:
            raise ConfigError(f"deba.thresholds is 'paper' but paper Table 1 has no thresholds for "
                              f"{arch!r} (it has {', '.join(PAPER_THRESHOLDS)}): use "
                              f"'calibrated' or 'fixed'.")
        return (*PAPER_THRESHOLDS[arch], "paper")
    try:
        entry = calibrated[arch][dataset]
    except (KeyError, TypeError):
        raise DebaError(f"no calibrated thresholds for {arch}/{dataset}: run the calibrate stage "
                        f"(`dvc repro calibrate`) or set deba.thresholds to paper or fixed.") from None
    return entry["theta_stab"], entry["theta_conf"], "calibrated"


def run_spec(cfg, arch, dataset, seed, method, variant, deba_overrides=None, calibrated=None,
             profile=False) -> RunSpec:
    container = OmegaConf.to_container(cfg, resolve=True)
    deba = None
    if method == "deba":
        deba = OmegaConf.to_container(OmegaConf.merge(cfg.deba, deba_overrides or {}), resolve=True)
        deba["theta_stab"], deba["theta_conf"], source = resolve_thresholds(
            deba, arch, dataset, calibrated)
        deba["thresholds"] = source
    return RunSpec(arch, dataset, int(seed), method, variant, container["train"],
                   container["data"], deba, profile)


def record_path(stage_dir, spec: RunSpec) -> Path:
    """One file per run: <stage_dir>/<arch>/<dataset>/<method>-<variant>-seed<seed>.json."""
    return (Path(stage_dir) / spec.arch / spec.dataset
            / f"{spec.method}-{spec.variant}-seed{spec.seed}.json")


def experiment_name(cfg) -> str:
    """W&B group: the DVC experiment when one is running, else the study's name."""
    return os.environ.get("DVC_EXP_NAME") or cfg.study.name


def run_all(cfg, specs, runs_dir, progress=True) -> list:
    """Train (or reuse) each spec and write its record; returns the records."""
    records = []
    tracking = OmegaConf.to_container(cfg.tracking, resolve=True)
    for spec in specs:
        record = train(spec, state_dir=cfg.tracking.dir, tracking=tracking,
                       experiment=experiment_name(cfg), progress=progress)
        write_json(record_path(runs_dir, spec), record)
        records.append(record)
    return records


def read_records(root) -> list:
    """Every run record under `root` (recursively), skipping files that are not records."""
    out = []
    for path in sorted(Path(root).rglob("*.json")):
        data = read_json(path)
        if isinstance(data, dict) and "schema" in data and "epochs" in data:
            out.append(data)
    return out
