"""What a params file asks for: checks that need the registries (timm names, plugins), the runs
it will make, and switching presets. `deba validate pipelines/paper.yaml`"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..config import PAPER_THRESHOLDS, load_params
from ..errors import ConfigError

PRESETS = Path(__file__).resolve().parents[2] / "pipelines"


def preflight(cfg, source="params.yaml") -> None:
    """Everything that can be known wrong before training: names, plugins, combinations."""
    from .. import plugins
    from ..engine.models import check_arch
    for arch in cfg.study.archs:
        try:
            check_arch(arch)
        except ConfigError as exc:
            raise ConfigError(f"{source}: `study.archs`: {exc}") from None
    if cfg.ablate.variants and cfg.ablate.dataset not in cfg.study.datasets:
        raise ConfigError(f"{source}: `ablate.dataset` = {cfg.ablate.dataset!r} is not in "
                          f"study.datasets {list(cfg.study.datasets)}: the ablations are compared "
                          f"against that dataset's fixed runs; add it or change ablate.dataset.")
    for path in cfg.deba.plugins:
        try:
            plugins.load_plugin_file(path)
        except Exception as exc:
            raise ConfigError(f"{source}: `deba.plugins`: {exc}") from None
    for kind, names in (("signal", cfg.deba.signals), ("rule", [cfg.deba.rule]),
                        ("policy", [cfg.deba.policy])):
        for name in names:
            try:
                plugins.get(kind, name)
            except Exception as exc:
                raise ConfigError(f"{source}: `deba`: {exc}") from None
    if cfg.deba.thresholds == "paper":
        missing = [a for a in cfg.study.archs if a not in PAPER_THRESHOLDS]
        if missing:
            raise ConfigError(f"{source}: `deba.thresholds` = 'paper' but the paper has no "
                              f"thresholds for {missing}: use calibrated or fixed.")


def count_runs(cfg) -> dict:
    """Runs each stage records, and how many fixed runs the train stage takes from profiling."""
    s = cfg.study
    archs, datasets = len(s.archs), len(s.datasets)
    reused = archs * datasets * len(set(s.seeds) & set(s.profile_seeds))
    counts = {"profile": archs * datasets * len(s.profile_seeds),
              "train": archs * datasets * len(s.seeds) * 2,
              "ablate": archs * len(cfg.ablate.variants) * len(s.seeds),
              "train_reused_from_profile": reused}
    counts["trained"] = counts["profile"] + counts["train"] - reused + counts["ablate"]
    return counts


def resolve_preset(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    preset = PRESETS / f"{name}.yaml"
    if not preset.is_file():
        known = sorted(p.stem for p in PRESETS.glob("*.yaml") if p.stem != "paper_printed")
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(known)} "
                          f"(files in pipelines/), or give a params file path.")
    return preset


def check(name: str) -> str:
    path = resolve_preset(name) if not Path(name).is_file() else Path(name)
    cfg = load_params(path)
    preflight(cfg, str(path))
    c = count_runs(cfg)
    return (f"{path}: valid. {c['profile']} profile runs, {c['train']} train records "
            f"({c['train_reused_from_profile']} fixed runs reused from profiling), "
            f"{c['ablate']} ablation runs: {c['trained']} runs to train, "
            f"{cfg.train.epochs} epochs each.")


def use_preset(name: str, params: str = "params.yaml") -> str:
    source = resolve_preset(name)
    cfg = load_params(source)
    preflight(cfg, str(source))
    shutil.copyfile(source, params)
    return f"{params} now holds preset {source.stem} ({check(params).split(': ', 1)[1]})"
