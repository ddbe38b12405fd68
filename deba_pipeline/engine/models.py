"""Any timm model by name, sized for the dataset, never pretrained (no downloads)."""
from __future__ import annotations

import difflib

import timm

from ..errors import ConfigError


def check_arch(name: str) -> None:
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)  # only to suggest
        hint = f" Did you mean {', '.join(close)}?" if close else " See timm.list_models()."
        raise ConfigError(f"unknown architecture {name!r}: not a timm model name.{hint}")


def create_model(name: str, num_classes: int, in_chans: int, image_size: int, **kwargs):
    check_arch(name)
    try:  # ViTs and other fixed-size models need the input side; CNNs take none
        return timm.create_model(name, pretrained=False, num_classes=num_classes,
                                 in_chans=in_chans, img_size=image_size, **kwargs)
    except TypeError:
        return timm.create_model(name, pretrained=False, num_classes=num_classes,
                                 in_chans=in_chans, **kwargs)
