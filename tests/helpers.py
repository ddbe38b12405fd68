"""Small configs for fast tests: tiny timm models on the bundled digits data."""
from omegaconf import OmegaConf

from deba_pipeline.config import merge
from deba_pipeline.stages.runs import run_spec


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
