"""The structured schema of params.yaml: the one source of defaults, and its validation.

The defaults are the paper's (SPEC §3): `DEBAScheduler` takes its keywords from `DebaConfig`, and
the presets in pipelines/ are overlays that say only what they change. `load_params(path)` merges
a file over the schema, so an unknown key, a wrong type or an out-of-range value stops before any
training with the file and the key path named. `DEBA_RULES` is the one table of what each `deba`
value may be; params.yaml and the library both check against it.
"""
from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError, fail

THRESHOLD_MODES = ("calibrated", "paper", "fixed")
GRADIENT_SOURCES = ("last_batch", "epoch_mean")
PAPER_THRESHOLDS = {  # paper Table 1: (θ_stab, θ_conf)
    "mobilenetv3_large_100": (0.25, 0.5), "efficientnet_b0": (0.60, 0.8),
    "resnet18": (0.55, 0.6), "resnet50": (12.0, 0.8), "densenet121": (0.55, 0.6),
    "vit_base_patch16_224": (0.40, 0.7),
}


@dataclass
class StudyConfig:
    name: str = "paper"                    # experiment name; W&B group (DVC_EXP_NAME wins)
    archs: List[str] = field(default_factory=lambda: [  # timm names (SPEC §3)
        "resnet18", "resnet50", "densenet121", "efficientnet_b0", "mobilenetv3_large_100",
        "vit_base_patch16_224"])
    datasets: List[str] = field(default_factory=lambda: ["cifar10", "cifar100"])
    seeds: List[int] = field(default_factory=lambda: [2, 7, 42, 123, 199])  # train, ablations
    profile_seeds: List[int] = field(default_factory=lambda: [2, 42, 199])  # fixed-batch profiles
    reuse_profile_runs: bool = False  # take a fixed baseline from the profile run of its seed
    # batch strategies trained against the same fixed baseline: name -> overrides of `deba`
    # (SPEC §6 peers: e.g. gns: {rule: gns, signals: [gradient_noise_scale]})
    methods: Dict[str, Any] = field(default_factory=lambda: {"deba": {}})


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
    folders: Dict[str, str] = field(default_factory=dict)  # NAME -> PATH of train/ and test/
    placement: str = "auto"    # auto: on the device where it fits, else streamed | device | stream
    workers: int = 2           # DataLoader worker processes of the streaming path


# Each optimizer's defaults for what params.yaml leaves null: SGD the paper's (SPEC §3), AdamW
# PyTorch's own weight decay. AdamW has no momentum option (its betas stay PyTorch's).
OPTIMIZER_DEFAULTS = {"sgd": {"momentum": 0.9, "weight_decay": 5.0e-4},
                      "adamw": {"weight_decay": 0.01}}


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 64           # initial (and fixed-method) batch, samples
    lr: float = 0.01               # fixed for the whole run (paper §8.1)
    momentum: Optional[float] = None      # null: the optimizer's own (OPTIMIZER_DEFAULTS)
    weight_decay: Optional[float] = None  # null: likewise
    eval_batch_size: int = 1024    # samples; evaluation is timed apart from training
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    precision: str = "fp32"        # fp32 | bf16 (autocast, GPU)
    channels_last: bool = False
    checkpoint_every: int = 1      # epochs between checkpoints
    processes: int = 1             # data-parallel ranks a run (torchrun + DDP, SPEC §7); B global
    sync_batchnorm: bool = False   # DDP, GPUs: BatchNorm over the global batch, not per rank
    optimizer: str = "sgd"         # sgd (the paper: momentum, weight_decay) | adamw (weight_decay)
    lr_schedule: str = "constant"  # constant (the paper) | cosine over the run's samples
    # arch -> input side in pixels, resized on the device (SPEC §3: ViT-B/16 at 224)
    image_size: Dict[str, int] = field(default_factory=lambda: {"vit_base_patch16_224": 224})
    model_kwargs: Dict[str, Any] = field(default_factory=dict)  # arch -> timm.create_model kwargs


@dataclass
class DebaConfig:
    thresholds: str = "paper"       # paper (Table 1) | calibrated (calibrate stage) | fixed
    theta_stab: float = 0.55        # ResNet-18's; read when thresholds is fixed, and by the library
    theta_conf: float = 0.6
    cooldown: int = 10              # epochs between adaptations
    window: Any = 15                # epochs of σ² history, or "full"
    growth: float = 1.5             # α_grow
    rollback: float = 0.8           # α_roll
    min_batch: int = 16             # samples
    max_batch: int = 2048           # samples
    signals: List[str] = field(default_factory=lambda: [
        "grad_variance", "grad_norm_variation", "loss_variation"])
    rule: str = "deba"
    policy: str = "multiplicative"
    rule_options: Dict[str, Any] = field(default_factory=dict)    # keywords of the rule's class
    policy_options: Dict[str, Any] = field(default_factory=dict)  # keywords of the policy's class
    signal_options: Dict[str, Any] = field(default_factory=dict)  # signal name -> its keywords
    gradient_source: str = "last_batch"  # last_batch | epoch_mean (SPEC §1)
    plugins: List[str] = field(default_factory=list)  # files in plugins/, e.g. grad_cosine.py


@dataclass
class TaxonomyConfig:  # SPEC §2 bounds; the defaults reproduce paper Table 2
    dynamic_sigma: float = 0.15
    unstable_mu: float = 0.26
    overly_mu: float = 0.54
    moderate_low: float = 0.45
    stagnation: float = 0.20  # convergence stability below which overly stable still benefits
    seed_spread: float = 1.0  # points: per-seed ΔAcc std above which an outcome is seed-dependent


@dataclass
class AblateConfig:
    dataset: str = "cifar10"
    variants: Dict[str, Any] = field(default_factory=lambda: {  # name -> overrides of `deba`
        "universal": {"thresholds": "fixed", "theta_stab": 0.1, "theta_conf": 0.5},
        "cooldown2": {"cooldown": 2},
        "cooldown5": {"cooldown": 5},
        "full_history": {"window": "full"},
    })


@dataclass
class TimingConfig:  # SPEC §8: the step-time table behind the modelled run times
    repeats: int = 15           # timed rounds over every batch size
    steps: int = 5              # steps timed one by one per round; the fastest is kept
    warmup: int = 1             # untimed rounds over every size first
    estimate: str = "paired"    # paired: median ratio to train.batch_size in the same round,
                                # disturbed rounds left out (an option beyond SPEC §8);
                                # median: the median over rounds (SPEC §8 as written)


@dataclass
class ReportConfig:  # what the aggregate stage reads beyond the records and tables
    accuracy_tolerance: float = 0.5  # points: time to accuracy is to the fixed run's final - this


@dataclass
class ExecutionConfig:  # where runs go; results do not depend on it, so no stage declares it
    backend: str = "local"          # local: in this process, one run after another | ray: tasks
    address: Optional[str] = None   # ray: null starts Ray here; "host:6379" (or RAY_ADDRESS) joins
    gpus_per_run: Any = "auto"      # auto: 1 where the cluster has GPUs, else 0; 0.25 packs four
    cpus_per_run: Optional[float] = None  # cores (torch threads) a run; null: local all, ray 1
    max_retries: int = 1            # ray: restarts of a run whose worker died (it resumes)


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
    timing: TimingConfig = field(default_factory=TimingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


# -- what each `deba` value may be: one table for params.yaml and for DEBAScheduler ----------
def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _names(v) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(n, str) and n for n in v)


def _mapping(v) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) for k in v)


DEBA_RULES = {  # key: (test, what is allowed)
    "thresholds": (lambda v: v in THRESHOLD_MODES, " | ".join(THRESHOLD_MODES)),
    "theta_stab": (lambda v: _number(v) and v >= 0, "a finite number >= 0"),
    "theta_conf": (lambda v: _number(v) and v >= 0, "a finite number >= 0"),
    "cooldown": (lambda v: _int(v) and v >= 0, "an integer >= 0 (epochs)"),
    "window": (lambda v: v == "full" or (_int(v) and v >= 2), 'an integer >= 2 (epochs) or "full"'),
    "growth": (lambda v: _number(v) and v > 1, "a finite number > 1"),
    "rollback": (lambda v: _number(v) and 0 < v < 1, "a number in (0, 1)"),
    "min_batch": (lambda v: _int(v) and v >= 1, "an integer >= 1 (samples)"),
    "max_batch": (lambda v: _int(v) and v >= 1, "an integer >= 1 (samples)"),
    "signals": (lambda v: _names(v) and 0 < len(v) == len(set(v)),
                "a non-empty list of distinct signal names"),
    "rule": (lambda v: isinstance(v, str) and v != "", "a rule name (see `deba plugins`)"),
    "policy": (lambda v: isinstance(v, str) and v != "", "a policy name (see `deba plugins`)"),
    "rule_options": (_mapping, "a mapping of option names to values"),
    "policy_options": (_mapping, "a mapping of option names to values"),
    "signal_options": (lambda v: _mapping(v) and all(_mapping(o) for o in v.values()),
                       "a mapping of signal names to mappings of options"),
    "gradient_source": (lambda v: v in GRADIENT_SOURCES, " or ".join(GRADIENT_SOURCES)),
    "plugins": (_names, "a list of plugin file paths"),
}
DEBA_FIELDS = tuple(f.name for f in fields(DebaConfig))
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # a name that is never a path
assert set(DEBA_RULES) == set(DEBA_FIELDS), "every DebaConfig field needs a rule"


def check_deba(values: dict, where: str = "", prefix: str = "") -> None:
    """Raise one ConfigError for the first value of `values` that DEBA_RULES does not allow."""
    for key, value in values.items():
        test, allowed = DEBA_RULES[key]
        if not test(value):
            fail(f"{prefix}{key}", value, allowed, where)
    if values["min_batch"] > values["max_batch"]:
        fail(f"{prefix}min_batch", values["min_batch"],
             f"<= {prefix}max_batch ({values['max_batch']})", where)
    unknown = set(values["signal_options"]) - set(values["signals"])
    if unknown:
        fail(f"{prefix}signal_options", sorted(unknown), "options of signals listed in "
             f"{prefix}signals", where)
    if values["rule"] == "step_schedule":
        _check_schedule(values["rule_options"].get("at"), values["cooldown"], where, prefix)


def _check_schedule(at, cooldown, where, prefix) -> None:
    """The step schedule's epochs must each be able to fire: epoch 1 always holds, and a
    cooldown of C epochs holds the C epochs after every change, and epochs 1..C at the start
    (SPEC §1). Without this, at = [5, 12, 14] with the paper's cooldown 10 fires only at 12."""
    if not at:
        fail(f"{prefix}rule_options.at", at, "a non-empty list of epochs at whose end "
             "step_schedule increases the batch, e.g. [30, 60, 80]", where)
    if not isinstance(cooldown, int) or not all(_int(e) for e in at):
        return  # the rule itself names a malformed `at`
    blocked, last = [], 0  # the epoch of the last increase (t_last)
    for epoch in sorted(at):
        if epoch < 2 or epoch <= last + cooldown:
            blocked.append(epoch)
        else:
            last = epoch
    if blocked and cooldown == 0:
        fail(f"{prefix}rule_options.at", list(at), "epochs from 2 on: epoch 1 always holds",
             where)
    if blocked:
        fail(f"{prefix}rule_options.at", list(at), f"epochs the schedule can reach: "
             f"{prefix}cooldown = {cooldown} holds the {cooldown} epochs at the start and after "
             f"each increase, so {blocked} would never fire; set {prefix}cooldown: 0 (as "
             f"step_schedule is meant to run), or start after epoch {cooldown} and space the "
             f"epochs more than {cooldown} apart", where)


def deba_config(config=None, **overrides) -> DebaConfig:
    """A validated DebaConfig from a DebaConfig, a mapping or None (the paper's), plus keywords."""
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    if config is not None and not isinstance(config, (DebaConfig, Mapping)):
        fail("config", config, "a DebaConfig, a mapping of DEBA options, or None (the paper's)")
    base = config if isinstance(config, DebaConfig) else DebaConfig()
    given = dict(config or {}) if not isinstance(config, DebaConfig) else {}
    given.update(overrides)
    unknown = [key for key in given if key not in DEBA_FIELDS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], DEBA_FIELDS, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else f" Known: {', '.join(DEBA_FIELDS)}."
        raise ConfigError(f"unknown DEBA option `{unknown[0]}`.{hint}")
    cfg = replace(base, **given)
    values = asdict(cfg)
    check_deba(values)
    if isinstance(cfg.signals, tuple):
        cfg.signals = list(cfg.signals)
    return cfg


# -- params.yaml ----------------------------------------------------------------------------
def deba_groups(cfg) -> dict:
    """{where in params: the `deba` group it resolves to}: deba itself, each of study.methods
    and each of ablate.variants (overrides merged over deba)."""
    groups = {"deba": cfg.deba}
    for where, named in (("study.methods", cfg.study.methods),
                         ("ablate.variants", cfg.ablate.variants)):
        for name, overrides in named.items():
            try:
                groups[f"{where}.{name}"] = OmegaConf.merge(cfg.deba, overrides)
            except OmegaConfBaseException as exc:
                raise ConfigError(f"`{where}.{name}`: {exc}".splitlines()[0]) from None
    return groups


def load_params(path="params.yaml", overrides: Optional[list] = None) -> DictConfig:
    """params.yaml merged over the schema and validated; raises ConfigError naming file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file. Run from the project root, or write one "
                          f"from a preset: `deba preset quick`.")
    try:
        user = OmegaConf.load(path)
    except Exception as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if yaml.safe_load(path.read_text()) is None:  # empty or comments only; `{}` means defaults
        raise ConfigError(f"{path} is empty: write a study into it with `deba preset quick` (or "
                          f"`deba preset paper` for the paper's full grid).")
    return merge(user, source=str(path), overrides=overrides)


@functools.cache
def schema() -> DictConfig:
    """The typed schema of params.yaml, built once a process (merging never changes it)."""
    return OmegaConf.structured(Params)


def merge(user, source: str = "<params>", overrides: Optional[list] = None) -> DictConfig:
    schema_ = schema()
    _check_keys(OmegaConf.to_container(user) if isinstance(user, (DictConfig, ListConfig))
                else user, schema_, source, "")
    try:
        cfg = OmegaConf.merge(schema_, user, OmegaConf.from_dotlist(overrides or []))
    except OmegaConfBaseException as exc:
        key, message = getattr(exc, "full_key", "") or "?", str(getattr(exc, "msg", exc))
        null = re.search(r"Incompatible value 'None' for field of type '(\w+)'|is not Optional",
                         message)
        if null:
            kind = {"int": "an integer", "float": "a number", "bool": "true or false",
                    "str": "a string"}.get(null.group(1) or "", "a value")
            fail(key, None, f"{kind} (null is not a value here; leave the key out for its "
                 f"default)", f"{source}: ")
        wanted = re.search(r"could not be converted to (\w+)", message)
        if wanted and hasattr(exc, "value"):
            kind = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false",
                    "String": "a string"}.get(wanted.group(1), wanted.group(1))
            fail(key, exc.value, kind, f"{source}: ")
        raise ConfigError(f"{source}: key `{key}`: {message}".splitlines()[0]) from None
    for group in ("ablate.variants", "study.methods"):  # the user's replace the paper's
        named = OmegaConf.select(user, group) if isinstance(user, DictConfig) else None
        if named is not None:
            OmegaConf.update(cfg, group, OmegaConf.merge(named, OmegaConf.from_dotlist(
                [o.removeprefix(group + ".") for o in overrides or []
                 if o.startswith(group + ".")])), merge=False)
    from .validation import validate  # it reads this module's schema and rules
    validate(cfg, source)
    return cfg


NAMED_GROUPS = ("study.methods", "ablate.variants")  # name: overrides merged over `deba`


def _check_named(entries, group, source) -> None:
    """Each entry of a named group: a name (text) and a mapping of `deba` keys, checked like
    `deba` itself; plugin files are study-wide, so `plugins` is refused in an entry."""
    if not isinstance(entries, dict):
        return
    deba_schema = schema().deba
    for name, overrides in entries.items():
        if not isinstance(name, str):
            raise ConfigError(f"{source}: `{group}` key {name!r} is not allowed: it must be a "
                              f"name (text) such as my_method.")
        if not isinstance(overrides, dict):
            fail(f"{group}.{name}", overrides, "a mapping of deba overrides, e.g. {rule: gns} "
                 "(`{}` for deba as it is)", f"{source}: ")
        if "plugins" in overrides:
            raise ConfigError(f"{source}: `{group}.{name}.plugins` is not allowed: plugin files "
                              f"are study-wide: list them in deba.plugins (a file in plugins/), "
                              f"and name what they register in `{group}.{name}`.")
        _check_keys(overrides, deba_schema, source, f"{group}.{name}.")


def _check_keys(user, schema, source, prefix):
    """Unknown keys (with a did-you-mean) and a list or scalar where a mapping belongs (or the
    reverse), named by key, before OmegaConf's terser messages."""
    if not isinstance(user, dict):
        if prefix == "":
            fail("(the whole file)", user, "a mapping of params groups (study, train, ...)",
                 f"{source}: ")
        return
    if not isinstance(schema, DictConfig):
        return
    typed = OmegaConf.get_type(schema) not in (dict, None) and schema._is_typed()
    known = list(schema.keys())
    for key, value in user.items():
        path = f"{prefix}{key}"
        if typed and key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" Did you mean `{prefix}{close[0]}`?" if close else \
                f" Known keys here: {', '.join(known)}."
            raise ConfigError(f"{source}: unknown key `{path}`.{hint}")
        node = schema.get(key)
        if isinstance(node, DictConfig) and value is not None and not isinstance(value, dict):
            fail(path, value, "a mapping (`key: value` lines)", f"{source}: ")
        if isinstance(node, ListConfig) and value is not None and not isinstance(value, list):
            fail(path, value, "a list", f"{source}: ")
        if path in NAMED_GROUPS:
            _check_named(value, path, source)
        elif typed:
            _check_keys(value, node, source, f"{path}.")
