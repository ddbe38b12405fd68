"""Small configs for fast tests: tiny timm models on the bundled digits data."""
from omegaconf import OmegaConf

from deba_pipeline.config import merge
from deba_pipeline.execution.study import run_spec

# A small study for tests that write a params file: the defaults are the paper's grid.
SMALL_STUDY = {"study": {"name": "test", "archs": ["test_resnet"], "datasets": ["digits"],
                         "seeds": [2], "profile_seeds": [2]},
               "train": {"epochs": 2, "device": "cpu"},
               "deba": {"thresholds": "calibrated"}, "ablate": {"dataset": "digits"},
               "tracking": {"wandb": "disabled"}}


def small_params(overrides: dict) -> str:
    """params.yaml text: SMALL_STUDY with `overrides` merged over it."""
    return OmegaConf.to_yaml(OmegaConf.merge(SMALL_STUDY, overrides))


def tiny_cfg(**sections):
    base = {"study": {"archs": ["test_resnet"], "seeds": [2], "profile_seeds": [2]},
            "train": {"epochs": 4, "device": "cpu"},
            "deba": {"thresholds": "fixed", "theta_stab": 0.55, "theta_conf": 1.0,
                     "cooldown": 1, "window": 3},
            "tracking": {"wandb": "disabled"}}
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return merge(OmegaConf.create(base))


def tiny_spec(method="deba", variant="baseline", seed=2, arch="test_resnet", **sections):
    return run_spec(tiny_cfg(**sections), arch, "digits", seed, method, variant,
                    profile=(variant == "profile"))


def stage(name: str, *extra: str) -> list:
    """`deba NAME ...` as dvc.yaml runs it (the paths are its), for main(): plus `extra`."""
    import shlex
    from pathlib import Path

    import yaml
    stages = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())
    return shlex.split(stages["stages"][name]["cmd"])[1:] + list(extra)
