"""The checks of params.yaml beyond its types: ranges, names, and what the keys mean together.
`config.merge` runs `validate` on every params file it loads, before any training."""

from __future__ import annotations

import difflib
import math
import re

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deba_pipeline.config.placement import validate_execution, validate_processes
from deba_pipeline.config.schema import OPTIMIZER_DEFAULTS, SAFE_NAME
from deba_pipeline.core.errors import ConfigError, fail
from deba_pipeline.core.options import check_deba


def known_datasets(cfg) -> list:
    """The registered datasets (built-in, installed, loaded plugin files) and data.folders."""
    from deba_pipeline.core import plugins

    registered = list(plugins.registry("dataset"))
    return registered + [name for name in cfg.data.folders if name not in registered]


def check_dataset_names(cfg, where: str) -> None:
    """Every dataset the study names is registered or a name of data.folders."""
    known = known_datasets(cfg)
    for dataset in list(cfg.study.datasets) + [cfg.ablate.dataset]:
        if dataset not in known:
            fail(
                "study.datasets",
                dataset,
                f"one of {', '.join(known)} (a name of data.folders "
                f"reads an image folder){did_you_mean(dataset, known)}",
                where,
            )


def did_you_mean(name, known) -> str:
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1)
    return f"; the closest is {close[0]!r}" if close else ""


def deba_groups(cfg) -> dict:
    """{where in params: the `deba` group it resolves to}: deba itself, each of study.methods
    and each of ablate.variants (overrides merged over deba)."""
    groups = {"deba": cfg.deba}
    for where, named in (
        ("study.methods", cfg.study.methods),
        ("ablate.variants", cfg.ablate.variants),
    ):
        for name, overrides in named.items():
            try:
                groups[f"{where}.{name}"] = OmegaConf.merge(cfg.deba, overrides)
            except OmegaConfBaseException as exc:
                raise ConfigError(f"`{where}.{name}`: {exc}".splitlines()[0]) from None
    return groups


MAX_EPOCHS = 10_000  # more is a typo, not a study


def _validate_data(cfg, where) -> None:
    d, t = cfg.data, cfg.train
    if not 0 < d.test_fraction < 1:
        fail("data.test_fraction", d.test_fraction, "a number in (0, 1)", where)
    least = {"train_size": 1, "test_size": 1, "num_classes": 2, "image_size": 1, "channels": 1}
    for key, low in least.items():
        if d.synthetic[key] < low:
            fail(f"data.synthetic.{key}", d.synthetic[key], f"an integer >= {low}", where)
    for arch, side in t.image_size.items():
        if side < 1:
            fail(f"train.image_size.{arch}", side, "an integer >= 1 (pixels)", where)
    if d.workers < 0:
        fail("data.workers", d.workers, "an integer >= 0 (0: load in the training process)", where)
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", t.device):
        fail("train.device", t.device, "auto, cpu, mps, cuda or cuda:N", where)


def validate(cfg: DictConfig, source: str = "<params>") -> None:
    """Every check of a merged config, each failure naming the key, its value and what it
    takes; the first that fails raises."""
    where = f"{source}: "
    _validate_study(cfg, where)
    _validate_data(cfg, where)
    _validate_train(cfg.train, where)
    _validate_numbers(cfg, where)
    validate_execution(cfg.execution, where)
    validate_processes(cfg, deba_groups(cfg), where)
    _validate_strategies(cfg, where)


def _validate_study(cfg, where) -> None:
    s = cfg.study
    for key in ("archs", "datasets", "seeds", "profile_seeds"):
        if len(s[key]) == 0:
            fail(f"study.{key}", list(s[key]), "a non-empty list", where)
    _validate_folder_names(cfg, where)
    if not cfg.deba.plugins:  # a plugin file may register one: preflight checks once they load
        check_dataset_names(cfg, where)
    for key in ("archs", "datasets", "seeds", "profile_seeds"):
        repeated = sorted({str(v) for v in s[key] if list(s[key]).count(v) > 1})
        if repeated:
            fail(
                f"study.{key}",
                list(s[key]),
                f"a list without repeats ({', '.join(repeated)} appears twice)",
                where,
            )
    for seed in list(s.seeds) + list(s.profile_seeds):
        if not 0 <= seed < 2**63:
            fail(
                "study.seeds",
                seed,
                "an integer in [0, 2^63 - 1] (a signed 64-bit seed, as "
                "torch and the run keys hold it)",
                where,
            )
    if not SAFE_NAME.fullmatch(s.name):
        fail(
            "study.name",
            s.name,
            "a name of letters, digits, '_', '-' and '.' (it names the W&B group)",
            where,
        )
    if not 2 <= cfg.train.epochs <= MAX_EPOCHS:  # Δ‖∇‖ and ΔL are undefined in epoch 1
        fail(
            "train.epochs",
            cfg.train.epochs,
            f"an integer in [2, {MAX_EPOCHS}] (the Δ signals "
            "and the calibration need a previous epoch)",
            where,
        )


def _validate_numbers(cfg, where) -> None:
    """The timing, tracking, report and taxonomy settings: numbers in their ranges."""
    if cfg.timing.warmup < 0:
        fail("timing.warmup", cfg.timing.warmup, "an integer >= 0", where)
    if not cfg.tracking.dir.strip():
        fail(
            "tracking.dir", cfg.tracking.dir, "a folder path (for W&B files and checkpoints)", where
        )
    tolerance = cfg.report.accuracy_tolerance
    if not (math.isfinite(tolerance) and 0 <= tolerance < 100):
        fail("report.accuracy_tolerance", tolerance, "a number of points in [0, 100)", where)
    margin = cfg.report.non_inferiority
    if not (math.isfinite(margin) and 0 <= margin <= 100):
        fail("report.non_inferiority", margin, "a number of points in [0, 100]", where)
    for key, value in cfg.taxonomy.items():
        if not (math.isfinite(value) and value >= 0):
            fail(f"taxonomy.{key}", value, "a finite number >= 0", where)
    t = cfg.train
    positive = {
        "train.batch_size": t.batch_size,
        "train.eval_batch_size": t.eval_batch_size,
        "train.checkpoint_every": t.checkpoint_every,
        "timing.repeats": cfg.timing.repeats,
        "timing.steps": cfg.timing.steps,
    }
    for key, value in positive.items():
        if value < 1:
            fail(key, value, "an integer >= 1", where)
    for key, most in (("repeats", 1000), ("steps", 10_000)):  # more is a typo, not a table
        if cfg.timing[key] > most:
            fail(f"timing.{key}", cfg.timing[key], f"an integer in [1, {most}]", where)


def _validate_train(t, where) -> None:
    """The optimizer's numbers and the models' own options."""
    if t.lr is None or not (math.isfinite(t.lr) and t.lr > 0):
        fail("train.lr", t.lr, "a finite number > 0 (at 0 nothing trains)", where)
    for key in ("lr", "momentum", "weight_decay"):
        if t[key] is not None and not (math.isfinite(t[key]) and t[key] >= 0):
            fail(
                f"train.{key}",
                t[key],
                "a finite number >= 0"
                + ("" if key == "lr" else ", or null for the optimizer's own"),
                where,
            )
    if t.optimizer in OPTIMIZER_DEFAULTS:
        for key in ("momentum", "weight_decay"):
            if t[key] is not None and key not in OPTIMIZER_DEFAULTS[t.optimizer]:
                fail(
                    f"train.{key}",
                    t[key],
                    f"null with train.optimizer = {t.optimizer} (it has no {key} option)",
                    where,
                )
    for arch, kwargs in t.model_kwargs.items():
        reserved = {"num_classes", "in_chans", "img_size", "pretrained"} & set(kwargs or {})
        if reserved:
            fail(
                f"train.model_kwargs.{arch}",
                sorted(reserved),
                "free of num_classes, in_chans, "
                "img_size and pretrained (set from the dataset and train.image_size)",
                where,
            )


def _validate_strategies(cfg, where) -> None:
    """The names of strategies and ablation variants, and each one's deba options."""
    for group, reserved, what in (
        ("ablate.variants", ("baseline", "profile"), "variant"),
        ("study.methods", ("fixed",), "method"),
    ):
        for name in OmegaConf.select(cfg, group):
            if not SAFE_NAME.fullmatch(str(name)) or name in reserved:
                fail(
                    f"{group}.{name}",
                    name,
                    f"a name of letters, digits, '_', '-' and '.' "
                    f"not starting with '.', other than {' and '.join(reserved)} (it names "
                    f"the {what}'s record files)",
                    where,
                )
    if len(cfg.study.methods) == 0:
        fail("study.methods", {}, "at least one strategy, e.g. {deba: {}}", where)
    try:
        groups = deba_groups(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    for name, group in groups.items():
        check_deba(OmegaConf.to_container(group, resolve=True), where, f"{name}.")
        _validate_schedule_epochs(group, cfg.train.epochs, where, f"{name}.")


def _validate_schedule_epochs(group, epochs, where, prefix) -> None:
    """An epoch of step_schedule's `at` changes the batch of the epoch after it: at the last
    epoch or beyond, it would never change one."""
    at = group.rule_options.get("at") if group.rule == "step_schedule" else None
    if not at or not all(isinstance(e, int) for e in at):
        return  # check_deba named a missing or malformed `at`
    late = [e for e in at if e >= epochs]
    if late:
        fail(
            f"{prefix}rule_options.at",
            list(at),
            f"epochs before the last (train.epochs = {epochs}): {late} would never change a batch",
            where,
        )


def _validate_folder_names(cfg, where) -> None:
    """An image folder's name names its record folders and must not hide a registered
    dataset (the folder would silently replace it)."""
    from deba_pipeline.core import plugins

    registered = sorted(plugins.registry("dataset"))
    for name in cfg.data.folders:
        if not SAFE_NAME.fullmatch(str(name)):
            fail(
                "data.folders",
                name,
                "a name of letters, digits, '_', '-' and '.' not "
                "starting with '.' (it names the dataset's record folders)",
                where,
            )
        if name in registered:
            fail(
                "data.folders",
                name,
                f"a name other than a registered dataset's "
                f"({', '.join(registered)}): the folder would silently replace it",
                where,
            )
