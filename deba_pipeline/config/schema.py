"""The structured schema of params.yaml: the one source of defaults (docs/pipeline.md, the paper's).

The presets in pipelines/ are overlays that say only what they change; `config.load_params`
merges a file over this schema. DEBA's own group is `DebaConfig` of the core, so the library and
params.yaml share one set of defaults and one table of allowed values.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deba_pipeline.core.options import INITIAL_BATCH, DebaConfig

SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # a name that is never a path


class Choice(str, Enum):
    """A setting with a fixed set of values: OmegaConf refuses any other, and a value compares,
    prints and serialises as its text ("sgd"), so records and run keys hold plain strings."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _choice(name: str, values: str):
    return Choice(name, [(v, v) for v in values.split()])


Placement = _choice("Placement", "auto device stream")
Precision = _choice("Precision", "fp32 bf16")
Optimizer = _choice("Optimizer", "sgd adamw")
LrSchedule = _choice("LrSchedule", "constant cosine")
Estimate = _choice("Estimate", "paired median")
TableSizes = _choice("TableSizes", "ladder reached")
Backend = _choice("Backend", "local ray")
WandbMode = _choice("WandbMode", "offline online disabled")


def plain(value):
    """`value` with every Choice replaced by its text, through dicts and lists."""
    if isinstance(value, Choice):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


PAPER_THRESHOLDS = {  # paper Table 1: (θ_stab, θ_conf)
    "mobilenetv3_large_100": (0.25, 0.5),
    "efficientnet_b0": (0.60, 0.8),
    "resnet18": (0.55, 0.6),
    "resnet50": (12.0, 0.8),
    "densenet121": (0.55, 0.6),
    "vit_base_patch16_224": (0.40, 0.7),
}


@dataclass
class StudyConfig:
    name: str = "paper"  # experiment name; W&B group (DVC_EXP_NAME wins)
    archs: list[str] = field(
        default_factory=lambda: [  # timm names (docs/pipeline.md)
            "resnet18",
            "resnet50",
            "densenet121",
            "efficientnet_b0",
            "mobilenetv3_large_100",
            "vit_base_patch16_224",
        ]
    )
    datasets: list[str] = field(default_factory=lambda: ["cifar10", "cifar100"])
    seeds: list[int] = field(default_factory=lambda: [2, 7, 42, 123, 199])  # train, ablations
    profile_seeds: list[int] = field(default_factory=lambda: [2, 42, 199])  # fixed-batch profiles
    reuse_profile_runs: bool = False  # take a fixed baseline from the profile run of its seed
    # batch strategies trained against the same fixed baseline: name -> overrides of `deba`
    # (docs/peers.md: e.g. gns: {rule: gns, signals: [gradient_noise_scale]})
    methods: dict[str, Any] = field(default_factory=lambda: {"deba": {}})


@dataclass
class SyntheticConfig:
    train_size: int = 5000  # images
    test_size: int = 1000  # images
    num_classes: int = 10
    image_size: int = 32  # pixels per side
    channels: int = 3


@dataclass
class DataConfig:
    root: str = "data"  # where cifar10/cifar100 live (or are downloaded to)
    download: bool = True  # fetch missing CIFAR archives; false: only use files in root
    augment: bool = False  # random crop (pad 4) and horizontal flip, on the device
    test_fraction: float = 0.2  # digits only: share held out for testing, split by seed
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    folders: dict[str, str] = field(default_factory=dict)  # NAME -> PATH of train/ and test/
    placement: Placement = Placement.auto  # auto: on the device where it fits, else streamed;
    # device | stream
    workers: int = 2  # DataLoader worker processes of the streaming path


# Each optimizer's defaults for what params.yaml leaves null: SGD the paper's (docs/pipeline.md),
# AdamW PyTorch's own weight decay. AdamW has no momentum option (its betas stay PyTorch's).
OPTIMIZER_DEFAULTS = {
    "sgd": {"momentum": 0.9, "weight_decay": 5.0e-4},
    "adamw": {"weight_decay": 0.01},
}


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = INITIAL_BATCH  # initial (and fixed-method) batch, samples
    lr: float = 0.01  # fixed for the whole run (paper §8.1)
    momentum: float | None = None  # null: the optimizer's own (OPTIMIZER_DEFAULTS)
    weight_decay: float | None = None  # null: likewise
    eval_batch_size: int = 1024  # samples; evaluation is timed apart from training
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Precision = Precision.fp32  # fp32 | bf16 (autocast, GPU)
    channels_last: bool = False
    checkpoint_every: int = 1  # epochs between checkpoints
    # data-parallel ranks a run (torchrun + DDP, docs/cluster.md); B global
    processes: int = 1
    sync_batchnorm: bool = False  # DDP, GPUs: BatchNorm over the global batch, not per rank
    optimizer: Optimizer = Optimizer.sgd  # sgd (the paper: momentum, weight_decay) | adamw
    # (weight_decay)
    lr_schedule: LrSchedule = LrSchedule.constant  # constant (the paper) | cosine over the
    # run's samples
    # arch -> input side in pixels, resized on the device (docs/pipeline.md: ViT-B/16 at 224)
    image_size: dict[str, int] = field(default_factory=lambda: {"vit_base_patch16_224": 224})
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # arch -> timm.create_model kwargs


@dataclass
class TaxonomyConfig:  # docs/method.md bounds; the defaults reproduce paper Table 2
    dynamic_sigma: float = 0.15
    unstable_mu: float = 0.26
    overly_mu: float = 0.54
    moderate_low: float = 0.45
    stagnation: float = 0.20  # convergence stability below which overly stable still benefits
    seed_spread: float = 1.0  # points: per-seed ΔAcc std above which an outcome is seed-dependent


@dataclass
class AblateConfig:
    dataset: str = "cifar10"
    variants: dict[str, Any] = field(
        default_factory=lambda: {  # name -> overrides of `deba`
            "universal": {"thresholds": "fixed", "theta_stab": 0.1, "theta_conf": 0.5},
            "cooldown2": {"cooldown": 2},
            "cooldown5": {"cooldown": 5},
            "full_history": {"window": "full"},
        }
    )


@dataclass
class TimingConfig:  # docs/method.md: the step-time table behind the modelled run times
    repeats: int = 15  # timed rounds over every batch size
    steps: int = 5  # steps timed one by one per round; the fastest is kept
    warmup: int = 1  # untimed rounds over every size first
    estimate: Estimate = Estimate.paired  # paired: median ratio to train.batch_size in a round,
    # disturbed rounds left out (an option: docs/method.md);
    # median: the median over rounds (the reference method)
    # ladder: every size the study can reach (docs/method.md);
    sizes: TableSizes = TableSizes.ladder
    # reached: only those its runs reached, all a modelled time reads
    # (an option, docs/method.md: the same numbers up to the
    # table's noise, a shorter stage)


@dataclass
class ReportConfig:  # what the aggregate stage reads beyond the records and tables
    accuracy_tolerance: float = 0.5  # points: time to accuracy is to the fixed run's final - this
    non_inferiority: float = 1.0  # points: a benefit's ΔAcc interval stays above -this


@dataclass
class ExecutionConfig:  # where runs go; results do not depend on it, so no stage declares it
    backend: Backend = Backend.local  # local: a process pool on this machine | ray: Ray tasks
    address: str | None = None  # ray: null starts Ray here; "host:6379" (or RAY_ADDRESS) joins
    gpus_per_run: Any = "auto"  # auto: 1 where the cluster has GPUs, else 0; 0.25 packs four
    cpus_per_run: float = 1.0  # cores a run: its torch threads (rounded down, part of its key)
    max_retries: int = 1  # ray: restarts of a run whose worker died (it resumes)


@dataclass
class TrackingConfig:
    wandb: WandbMode = WandbMode.offline  # offline | online | disabled
    project: str = "deba-pipeline"
    entity: str | None = None
    dir: str = ".deba"  # W&B files and checkpoints (not DVC outputs)


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


@functools.cache
def schema() -> DictConfig:
    """The typed schema of params.yaml, built once a process (merging never changes it)."""
    return OmegaConf.structured(Params)
