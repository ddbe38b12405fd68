"""Profile stage: fixed-batch runs of one architecture per dataset and profile seed (SPEC §2),
then its stability metrics per dataset (S per seed, μ_S, σ_S, convergence stability, class,
prediction). `deba profile --arch resnet18` writes runs/profile/resnet18/ and
results/stability/resnet18.json."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from ..analysis import profile_summary
from ..engine.files import write_json
from .runs import run_all, run_spec


def run(cfg, arch: str, out: str = "runs/profile", stability: str | None = None) -> dict:
    specs = [run_spec(cfg, arch, dataset, seed, "fixed", "profile", profile=True)
             for dataset in cfg.study.datasets for seed in cfg.study.profile_seeds]
    records = run_all(cfg, specs, out)
    summary = profile_summary(records, OmegaConf.to_container(cfg.taxonomy)).get(arch, {})
    write_json(stability or Path("results") / "stability" / f"{arch}.json", summary)
    return summary
