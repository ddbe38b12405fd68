"""RunSpec: everything that determines one training run's result, and the run record's frame."""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

from deba_pipeline.config import DataConfig, DebaConfig, TrainConfig
from deba_pipeline.config.schema import plain
from deba_pipeline.core.record import RECORD_SCHEMA

PROJECT = Path(__file__).resolve().parents[2]  # the folder holding deba_pipeline/
# The code that decides a training run's numbers, relative to the project root, and nothing else:
# the scheduler and its built-in plugins (core), then the loop, its per-step sums, the data and
# datasets, the models, the flat gradient, DDP's collectives and this spec (engine). The run key
# hashes what it does (`code_digest`: not its comments or layout), so a change here retrains; a
# change elsewhere (tracking, checkpoints and the finished-run cache, locks, file writing,
# step-time timing, messages) reuses every finished run.
# Every DVC stage that trains (profile, train, ablate) lists exactly these first, then plugins/
# for the plugin files that params name (tests/test_dependencies.py holds dvc.yaml to it).
TRAINING_CODE = (
    "deba_pipeline/core/base.py",
    "deba_pipeline/core/gradstats.py",
    "deba_pipeline/core/hookspecs.py",
    "deba_pipeline/core/inputs.py",
    "deba_pipeline/core/options.py",
    "deba_pipeline/core/plugin_calls.py",
    "deba_pipeline/core/plugins.py",
    "deba_pipeline/core/saved_state.py",
    "deba_pipeline/core/scheduler.py",
    "deba_pipeline/core/policies",
    "deba_pipeline/core/rules",
    "deba_pipeline/core/signals",
    "deba_pipeline/engine/data.py",
    "deba_pipeline/engine/datasets",
    "deba_pipeline/engine/ddp.py",
    "deba_pipeline/engine/flatgrad.py",
    "deba_pipeline/engine/loop.py",
    "deba_pipeline/engine/memory.py",
    "deba_pipeline/engine/models.py",
    "deba_pipeline/engine/spec.py",
    "deba_pipeline/engine/sums.py",
)
PLUGIN_DIR = "plugins"


def training_files() -> list:
    """Every file of TRAINING_CODE, folders expanded to their Python files, sorted."""
    files = []
    for entry in TRAINING_CODE:
        path = PROJECT / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


@cache
def _digest(paths: tuple) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(code_of(Path(path)).encode())
    return digest.hexdigest()[:16]


def code_digest(paths) -> str:
    """The hash of what the Python files at `paths` do: their syntax trees without docstrings,
    so a comment, a docstring or a reformatting keeps every run key and kept table, and any
    change to a statement changes them."""
    return _digest(tuple(str(p) for p in paths))


def code_of(path: Path) -> str:
    """`path`'s syntax tree, docstrings left out, as text; a file that does not parse, its
    bytes (loading it then says what is wrong)."""
    source = path.read_bytes()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source.hex()
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and ast.get_docstring(node, clean=False) is not None
        ):
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def code_fingerprint(plugin_files=()) -> str:
    """The training code and plugin files a result came from: a code change retrains, as the
    DVC stages' code dependencies say it should, instead of reusing an older result."""
    return code_digest([*training_files(), *(Path(p).resolve() for p in plugin_files)])


@dataclass
class RunSpec:
    arch: str  # timm name
    dataset: str  # digits | synthetic | cifar10 | cifar100
    seed: int
    method: str  # "fixed" | "deba"
    variant: str  # "profile" | "baseline" | an ablation name
    train: TrainConfig
    data: DataConfig
    deba: DebaConfig | None = None  # deba runs: thresholds resolved to numbers
    profile: bool = False  # record per-step gradient-norm and loss variances (docs/method.md)
    plugins: list = field(default_factory=list)  # plugin files (deba.plugins): models, datasets
    extra: dict = field(default_factory=dict)  # provenance, e.g. where thresholds came from
    threads: int = 1  # torch threads a process (execution.cpus_per_run): CPU sums follow

    def config(self) -> dict:
        """The spec as plain data (a Choice as its text): records, checkpoints, W&B, run keys."""
        return plain(asdict(self))

    def result_config(self) -> dict:
        """What determines the numbers: the config less its labels (variant, provenance). A profile
        run keeps its own key: a fixed baseline is trained apart from it unless the study asks
        to reuse profile runs (docs/method.md: a baseline timed in another stage is not
        comparable)."""
        config = self.config()
        for label in ("variant", "extra"):
            config.pop(label)
        train = config["train"]
        train.pop("checkpoint_every")
        # only this architecture's entries: another's edit must not retrain this one
        for per_arch in ("image_size", "model_kwargs"):
            train[per_arch] = train[per_arch].get(self.arch)
        return config

    def key(self) -> str:
        config = self.result_config()
        config["code"] = code_fingerprint(self.plugins)
        if self.dataset in self.data.folders:  # the images themselves, not only their path
            from deba_pipeline.engine.datasets.folders import fingerprint

            config["images"] = fingerprint(self.data.folders[self.dataset])
        blob = json.dumps(config, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def name(self) -> str:
        """arch/dataset/method/seed, the variant after the method where it is not the baseline."""
        method = self.method if self.variant == "baseline" else f"{self.method}-{self.variant}"
        return f"{self.arch}/{self.dataset}/{method}/{self.seed}"

    def new_scheduler(self, world: int = 1):
        """The run's scheduler; a fixed run's observes only, so its record carries the signals."""
        from deba_pipeline.core.scheduler import DEBAScheduler  # torch: only where a run trains

        if self.method == "fixed":
            size = self.train.batch_size
            return DEBAScheduler(
                batch_size=size, min_batch=world, max_batch=max(size, 2048), world_size=world
            )
        return DEBAScheduler(batch_size=self.train.batch_size, config=self.deba, world_size=world)

    def new_record(self) -> dict:
        return {
            "schema": RECORD_SCHEMA,
            "arch": self.arch,
            "dataset": self.dataset,
            "seed": self.seed,
            "method": self.method,
            "variant": self.variant,
            "key": self.key(),
            "world_size": self.train.processes,
            "final_test_accuracy": None,
            "train_time_s": None,
            "eval_time_s": None,
            "config": self.config(),
            "events": [],
            "epochs": [],
        }
