"""Presets: a file in pipelines/ is an overlay, only what differs from the defaults (the
paper's, in config/schema.py); `deba preset NAME` writes it out as a complete params.yaml, and
`deba preset --diff NAME` says what it would change."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from deba_pipeline.config.load import load_params, merge
from deba_pipeline.core.errors import ConfigError

PRESETS = "pipelines"
HEADER = """\
# The study `dvc repro` runs. Written by `deba preset {name}`: pipelines/{name}.yaml (what the
# preset changes) over the defaults in deba_pipeline/config/schema.py (the paper's, with units).
# Edit it, or vary keys per experiment: `dvc exp run -S train.epochs=20`.
"""


def resolve_preset(name: str) -> Path:
    """A params file path, or a preset name looked up in pipelines/ of the current project."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    folder = Path(PRESETS)  # of the project deba runs in, not of wherever it was installed
    if not folder.is_dir():
        raise ConfigError(
            f"no {PRESETS}/ folder in {Path.cwd()}: run deba from the project root "
            f"(the folder holding dvc.yaml), or give a params file path."
        )
    preset = folder / f"{name}.yaml"
    if not preset.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml") if p.stem != "paper_printed")
        raise ConfigError(
            f"unknown preset {name!r}: choose one of {', '.join(known)} "
            f"(files in {PRESETS}/), or give a params file path."
        )
    return preset


def _flat(tree, prefix="") -> dict:
    if isinstance(tree, dict) and tree:
        out = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def diff(name: str, params: str = "params.yaml") -> str:
    """What switching to preset `name` changes in `params` (or in the defaults, without one)."""
    new = _flat(OmegaConf.to_container(load_params(resolve_preset(name))))
    base = Path(params)
    old_cfg = load_params(base) if base.is_file() else merge(OmegaConf.create({}), "defaults")
    old = _flat(OmegaConf.to_container(old_cfg))
    against = str(base) if base.is_file() else "the defaults"
    lines = [
        f"  {key}: {old.get(key, '(absent)')} → {new.get(key, '(absent)')}"
        for key in list(old) + [k for k in new if k not in old]
        if old.get(key) != new.get(key)
    ]
    if not lines:
        return f"preset {name} changes nothing in {against}."
    return f"preset {name} against {against}:\n" + "\n".join(lines)
