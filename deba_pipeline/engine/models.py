"""Any timm model by name, sized for the dataset, never pretrained (no downloads).

Importing timm takes seconds (it imports torchvision and torch's compiler), so a command that
only checks names (`deba validate`) reads timm's own model names from a file cached per timm
version, and imports timm only for a name the file lacks (a model a plugin file registers).
"""

from __future__ import annotations

import contextlib
import difflib
import os
from importlib.metadata import version
from pathlib import Path

from deba_pipeline.core.errors import ConfigError, DebaError


def _names_file() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "deba-pipeline" / f"timm-{version('timm')}-models.txt"


def _cached_names() -> set:
    try:
        return set(_names_file().read_text().split())
    except OSError:
        return set()


def _cache_names(timm) -> None:
    """timm's own model names (not those plugin files added) for the next check."""
    from deba_pipeline.core import plugins
    from deba_pipeline.engine.files import write_text

    names = set(timm.list_models()) - set(plugins.project_models())
    with contextlib.suppress(Exception):  # a read-only home: the next check imports timm again
        write_text(_names_file(), "\n".join(sorted(names)) + "\n")


def check_arch(name: str) -> None:
    if name in _cached_names():
        return
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)  # only to suggest
        hint = f" Did you mean {', '.join(close)}?" if close else " See timm.list_models()."
        raise ConfigError(f"unknown architecture {name!r}: not a timm model name.{hint}")
    _cache_names(timm)


def create_model(name: str, num_classes: int, in_chans: int, image_size: int, **kwargs):
    import timm

    check_arch(name)
    try:  # ViTs and other fixed-size models need the input side; CNNs take none
        return timm.create_model(
            name,
            pretrained=False,
            num_classes=num_classes,
            in_chans=in_chans,
            img_size=image_size,
            **kwargs,
        )
    except TypeError:
        return timm.create_model(
            name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs
        )


def create_optimizer(params, train):
    """SGD (the paper's: momentum, weight decay) or AdamW (weight decay), from train.*."""
    import torch

    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.SGD(
        params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
    )


def check_fits(model, spec, labels: int, train_size: int) -> None:
    """The model has an output for every label, and the training set holds a first batch."""
    if labels > getattr(model, "num_classes", labels):
        raise DebaError(
            f"{spec.name}: {spec.dataset} has labels up to {labels - 1} but the "
            f"model has {model.num_classes} outputs: check "
            f"data.synthetic.num_classes or the dataset files."
        )
    if spec.train.batch_size > train_size:
        raise DebaError(
            f"{spec.name}: train.batch_size = {spec.train.batch_size} is larger than "
            f"the training set ({train_size} samples of {spec.dataset}): "
            f"lower train.batch_size or use more data."
        )


def check_takes(model, sample, spec) -> None:
    """One eval-mode forward of `sample`, so a shape mismatch is a message, not a trace."""
    import torch

    model.eval()
    try:
        with torch.no_grad():
            model(sample)
    except (AssertionError, RuntimeError, ValueError) as exc:
        raise DebaError(
            f"{spec.name}: {spec.arch} cannot take {spec.dataset} inputs of shape "
            f"{tuple(sample.shape[1:])} ({str(exc).splitlines()[0]}): set "
            f"train.image_size.{spec.arch} (e.g. 32 or 224) or "
            f"train.model_kwargs.{spec.arch} (e.g. patch_size)."
        ) from None
