"""RunSpec: everything that determines one training run's result, and the run record's frame."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

RECORD_SCHEMA = 1  # bump when a reader would misread older records
TIMING_KEYS = ("epoch_time_s", "samples_per_s", "eval_time_s", "peak_memory_mb")
PACKAGE = Path(__file__).resolve().parents[1]
TRAINING_CODE = ("engine/*.py", "scheduler.py", "gradstats.py", "base.py", "signals/*.py",
                 "rules/*.py", "policies/*.py")


@lru_cache(maxsize=None)
def _digest(paths: tuple) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def code_fingerprint(plugin_files=()) -> str:
    """The training code and plugin files a result came from: a code change retrains, as the
    DVC stages' code dependencies say it should, instead of reusing an older result."""
    paths = sorted(str(p) for pattern in TRAINING_CODE for p in PACKAGE.glob(pattern))
    return _digest(tuple(paths) + tuple(str(Path(p).resolve()) for p in plugin_files))


@dataclass
class RunSpec:
    arch: str                 # timm name
    dataset: str              # digits | synthetic | cifar10 | cifar100
    seed: int
    method: str               # "fixed" | "deba"
    variant: str              # "profile" | "baseline" | an ablation name
    train: dict               # resolved TrainConfig
    data: dict                # resolved DataConfig
    deba: Optional[dict] = None   # resolved DebaConfig with numeric thresholds (deba runs)
    profile: bool = False     # record per-step gradient-norm and loss variances (SPEC §2)
    extra: dict = field(default_factory=dict)  # provenance, e.g. where thresholds came from

    def config(self) -> dict:
        return asdict(self)

    def result_config(self) -> dict:
        """What determines the numbers: the config less its labels (variant, provenance) and
        less per-step profiling, which does not change the trajectory."""
        config = self.config()
        for label in ("variant", "extra", "profile"):
            config.pop(label)
        config["train"] = {k: v for k, v in config["train"].items() if k != "checkpoint_every"}
        return config

    def key(self) -> str:
        config = self.result_config()
        config["code"] = code_fingerprint((self.deba or {}).get("plugins", []))
        blob = json.dumps(config, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def name(self) -> str:
        return f"{self.arch}/{self.dataset}/{self.method}/{self.variant}/{self.seed}"

    def new_record(self) -> dict:
        return {"schema": RECORD_SCHEMA, "arch": self.arch, "dataset": self.dataset,
                "seed": self.seed, "method": self.method, "variant": self.variant,
                "key": self.key(), "final_test_accuracy": None, "train_time_s": None,
                "eval_time_s": None, "config": self.config(), "events": [], "epochs": []}
