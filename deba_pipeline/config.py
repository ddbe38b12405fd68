"""The structured schema of params.yaml: the one source of defaults, and its validation.

`load_params("params.yaml")` merges the file over these dataclasses, so an unknown key, a wrong
type or an out-of-range value stops before any training with the file and the key path named.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError

DATASETS = ("digits", "synthetic", "cifar10", "cifar100")
THRESHOLD_MODES = ("calibrated", "paper", "fixed")
PAPER_THRESHOLDS = {  # paper Table 1: (θ_stab, θ_conf)
    "mobilenetv3_large_100": (0.25, 0.5), "efficientnet_b0": (0.60, 0.8),
    "resnet18": (0.55, 0.6), "resnet50": (12.0, 0.8), "densenet121": (0.55, 0.6),
    "vit_base_patch16_224": (0.40, 0.7),
}


@dataclass
class StudyConfig:
    name: str = "quick"                    # experiment name; W&B group (DVC_EXP_NAME wins)
    archs: List[str] = field(default_factory=lambda: ["test_resnet", "test_efficientnet", "test_vit"])
    datasets: List[str] = field(default_factory=lambda: ["digits"])
    seeds: List[int] = field(default_factory=lambda: [2, 42])          # train and ablations
    profile_seeds: List[int] = field(default_factory=lambda: [2, 42])  # fixed-batch profiling


@dataclass
class SyntheticConfig:
    train_size: int = 5000     # images
    test_size: int = 1000      # images
    num_classes: int = 10
    image_size: int = 32       # pixels per side
    channels: int = 3


@dataclass
class DataConfig:
    root: str = "data"         # where cifar10/cifar100 live (or are downloaded to)
    download: bool = True      # fetch missing CIFAR archives; false: only use files in root
    augment: bool = False      # random crop (pad 4) and horizontal flip, on the device
    test_fraction: float = 0.2  # digits only: share held out for testing, split by seed
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class TrainConfig:
    epochs: int = 12
    batch_size: int = 64           # initial (and fixed-method) batch, samples
    lr: float = 0.01               # fixed for the whole run (paper §8.1)
    momentum: float = 0.9
    weight_decay: float = 5.0e-4
    eval_batch_size: int = 1024    # samples; evaluation is timed apart from training
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    precision: str = "fp32"        # fp32 | bf16 (autocast, GPU)
    channels_last: bool = False
    checkpoint_every: int = 1      # epochs between checkpoints
    image_size: Dict[str, int] = field(default_factory=dict)  # arch -> input side, resized on device
    model_kwargs: Dict[str, Any] = field(default_factory=dict)  # arch -> timm.create_model kwargs


@dataclass
class DebaConfig:
    thresholds: str = "calibrated"  # calibrated | paper (Table 1) | fixed (theta_* below)
    theta_stab: float = 0.55
    theta_conf: float = 0.6
    cooldown: int = 3               # epochs between adaptations (paper: 10 of 100)
    window: Any = 5                 # epochs of σ² history, or "full" (paper: 15)
    growth: float = 1.5
    rollback: float = 0.8
    min_batch: int = 16
    max_batch: int = 2048
    signals: List[str] = field(default_factory=lambda: [
        "grad_variance", "grad_norm_variation", "loss_variation"])
    rule: str = "deba"
    policy: str = "multiplicative"
    gradient_source: str = "last_batch"  # last_batch | epoch_mean
    plugins: List[str] = field(default_factory=list)  # plugin files, e.g. plugins/grad_cosine.py


@dataclass
class TaxonomyConfig:  # SPEC §2 bounds; the defaults reproduce paper Table 2
    dynamic_sigma: float = 0.15
    unstable_mu: float = 0.26
    overly_mu: float = 0.54
    moderate_low: float = 0.45
    stagnation: float = 0.20  # convergence stability below which overly stable still benefits


@dataclass
class AblateConfig:
    dataset: str = "digits"  # paper: cifar10
    variants: Dict[str, Any] = field(default_factory=lambda: {
        "universal": {"thresholds": "fixed", "theta_stab": 0.1, "theta_conf": 0.5},
        "cooldown2": {"cooldown": 2},
        "cooldown5": {"cooldown": 5},
        "full_history": {"window": "full"},
    })


@dataclass
class TrackingConfig:
    wandb: str = "offline"          # offline | online | disabled
    project: str = "deba-pipeline"
    entity: Optional[str] = None
    dir: str = ".deba"              # W&B files and checkpoints (not DVC outputs)


@dataclass
class Params:
    study: StudyConfig = field(default_factory=StudyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    deba: DebaConfig = field(default_factory=DebaConfig)
    taxonomy: TaxonomyConfig = field(default_factory=TaxonomyConfig)
    ablate: AblateConfig = field(default_factory=AblateConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def load_params(path="params.yaml", overrides: Optional[list] = None) -> DictConfig:
    """params.yaml merged over the schema and validated; raises ConfigError naming file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file. Run from the project root, or copy a "
                          f"preset: `deba preset quick`.")
    try:
        user = OmegaConf.load(path)
    except Exception as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return merge(user, source=str(path), overrides=overrides)


def merge(user, source: str = "<params>", overrides: Optional[list] = None) -> DictConfig:
    schema = OmegaConf.structured(Params)
    _check_keys(OmegaConf.to_container(user) if isinstance(user, DictConfig) else user,
                schema, source, "")
    try:
        cfg = OmegaConf.merge(schema, user, OmegaConf.from_dotlist(overrides or []))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or "?"
        raise ConfigError(f"{source}: key `{key}`: {exc.msg if hasattr(exc, 'msg') else exc}"
                          .splitlines()[0]) from None
    validate(cfg, source)
    return cfg


def _check_keys(user, schema, source, prefix):
    """Unknown keys, with a did-you-mean, before OmegaConf's terser message."""
    if not isinstance(user, dict) or not isinstance(schema, DictConfig):
        return
    if OmegaConf.get_type(schema) in (dict, None) or not schema._is_typed():  # free-form dicts
        return
    known = list(schema.keys())
    for key, value in user.items():
        path = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" Did you mean `{prefix}{close[0]}`?" if close else \
                f" Known keys here: {', '.join(known)}."
            raise ConfigError(f"{source}: unknown key `{path}`.{hint}")
        _check_keys(value, schema[key], source, f"{path}.")


def _fail(source, key, value, allowed):
    raise ConfigError(f"{source}: `{key}` = {value!r} is not allowed: it must be {allowed}.")


def validate(cfg: DictConfig, source: str = "<params>") -> None:
    s, t, d = cfg.study, cfg.train, cfg.deba
    for key in ("archs", "datasets", "seeds", "profile_seeds"):
        if len(s[key]) == 0:
            _fail(source, f"study.{key}", list(s[key]), "a non-empty list")
    for dataset in list(s.datasets) + [cfg.ablate.dataset]:
        if dataset not in DATASETS:
            _fail(source, "study.datasets", dataset, f"one of {', '.join(DATASETS)}")
    for seed in list(s.seeds) + list(s.profile_seeds):
        if seed < 0:
            _fail(source, "study.seeds", seed, "an integer >= 0")
    positive = {"train.epochs": t.epochs, "train.batch_size": t.batch_size,
                "train.eval_batch_size": t.eval_batch_size,
                "train.checkpoint_every": t.checkpoint_every}
    for key, value in positive.items():
        if value < 1:
            _fail(source, key, value, "an integer >= 1")
    for key in ("lr", "momentum", "weight_decay"):
        if not (math.isfinite(t[key]) and t[key] >= 0):
            _fail(source, f"train.{key}", t[key], "a finite number >= 0")
    if t.precision not in ("fp32", "bf16"):
        _fail(source, "train.precision", t.precision, "fp32 or bf16")
    if cfg.tracking.wandb not in ("offline", "online", "disabled"):
        _fail(source, "tracking.wandb", cfg.tracking.wandb, "offline, online or disabled")
    for arch, kwargs in t.model_kwargs.items():
        reserved = {"num_classes", "in_chans", "img_size", "pretrained"} & set(kwargs or {})
        if reserved:
            _fail(source, f"train.model_kwargs.{arch}", sorted(reserved),
                  "free of num_classes, in_chans, img_size and pretrained (set from the dataset "
                  "and train.image_size)")
    validate_deba(d, source, "deba")
    for name, overrides in cfg.ablate.variants.items():
        try:
            variant = OmegaConf.merge(d, overrides)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{source}: `ablate.variants.{name}`: {exc}".splitlines()[0]) from None
        validate_deba(variant, source, f"ablate.variants.{name}")


def validate_deba(d, source, prefix) -> None:
    if d.thresholds not in THRESHOLD_MODES:
        _fail(source, f"{prefix}.thresholds", d.thresholds, " | ".join(THRESHOLD_MODES))
    if d.gradient_source not in ("last_batch", "epoch_mean"):
        _fail(source, f"{prefix}.gradient_source", d.gradient_source, "last_batch or epoch_mean")
    if not (d.window == "full" or (isinstance(d.window, int) and not isinstance(d.window, bool)
                                   and d.window >= 2)):
        _fail(source, f"{prefix}.window", d.window, 'an integer >= 2 or "full"')
    if d.cooldown < 0:
        _fail(source, f"{prefix}.cooldown", d.cooldown, "an integer >= 0 (epochs)")
    for key in ("theta_stab", "theta_conf"):
        if not (math.isfinite(d[key]) and d[key] >= 0):
            _fail(source, f"{prefix}.{key}", d[key], "a finite number >= 0")
    if not (math.isfinite(d.growth) and d.growth > 1):
        _fail(source, f"{prefix}.growth", d.growth, "a finite number > 1")
    if not 0 < d.rollback < 1:
        _fail(source, f"{prefix}.rollback", d.rollback, "a number in (0, 1)")
    if not 1 <= d.min_batch <= d.max_batch:
        _fail(source, f"{prefix}.min_batch", d.min_batch, f"an integer in [1, max_batch={d.max_batch}]")
