"""Profile stage: fixed-batch runs of every architecture per dataset and profile seed (SPEC §2),
all in one pool so every device stays busy, then each architecture's stability metrics per
dataset (S per seed, μ_S, σ_S, convergence stability, class, prediction).
`deba profile` writes runs/profile/ARCH/ and results/stability/ARCH.json for each of
study.archs (`--arch A` for one)."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from ..analysis import profile_summary
from ..engine.files import write_json
from .runs import run_all, run_spec


def specs(cfg, archs) -> list:
    return [run_spec(cfg, arch, dataset, seed, "fixed", "profile", profile=True)
            for arch in archs for dataset in cfg.study.datasets
            for seed in cfg.study.profile_seeds]


def run(cfg, archs, out: str = "runs/profile", stability: str = "results/stability") -> dict:
    summaries = profile_summary(run_all(cfg, specs(cfg, archs), out),
                                OmegaConf.to_container(cfg.taxonomy))
    for arch in archs:
        write_json(Path(stability) / f"{arch}.json", summaries.get(arch, {}))
    return summaries
