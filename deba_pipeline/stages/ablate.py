"""Ablate stage: the DEBA variants of SPEC §3 (params `ablate.variants`) for every architecture on
the ablation dataset, in one pool; the fixed baseline comes from the train stage.
`deba ablate` (or `deba ablate --arch resnet18` for one)"""
from .runs import run_all, run_spec
from .train import load_thresholds


def specs(cfg, archs, calibrated) -> list:
    return [run_spec(cfg, arch, cfg.ablate.dataset, seed, "deba", name, deba_overrides=overrides,
                     calibrated=calibrated)
            for arch in archs for name, overrides in cfg.ablate.variants.items()
            for seed in cfg.study.seeds]


def run(cfg, archs, out: str = "runs/ablate",
        thresholds: str = "results/thresholds.json") -> None:
    run_all(cfg, specs(cfg, archs, load_thresholds(cfg, thresholds)), out)
