"""params.yaml merged over the schema, its keys checked by name, then validated: an unknown key,
a wrong type or an out-of-range value stops before any training with the file and key named."""

from __future__ import annotations

import difflib
import typing
from enum import Enum
from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deba_pipeline.config.schema import schema
from deba_pipeline.config.validation import validate
from deba_pipeline.core.errors import ConfigError, fail


def load_params(path="params.yaml", overrides: list | None = None) -> DictConfig:
    """params.yaml merged over the schema and validated; raises ConfigError naming file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such params file. Run from the project root, or write one "
            f"from a preset: `deba preset quick`."
        )
    try:
        user = OmegaConf.load(path)
    except Exception as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if yaml.safe_load(path.read_text()) is None:  # empty or comments only; `{}` means defaults
        raise ConfigError(
            f"{path} is empty: write a study into it with `deba preset quick` (or "
            f"`deba preset paper` for the paper's full grid)."
        )
    return merge(user, source=str(path), overrides=overrides)


KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _expected(schema_, key: str) -> str | None:
    """What the schema takes at `key` (e.g. `timing.sizes`, `study.seeds[0]`), read from the
    field's declared type: an enum's members, a scalar's kind; None where it has none."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(schema_, parent_key) if parent_key else schema_
    if not isinstance(parent, DictConfig):
        return None
    node = parent._get_node(leaf.split("[")[0])
    if node is None:  # an entry of a mapping such as train.image_size
        wanted = parent._metadata.element_type
    else:
        wanted = node._metadata.element_type if "[" in leaf else node._metadata.ref_type
    wanted = next((t for t in typing.get_args(wanted) if t is not type(None)), wanted)
    if isinstance(wanted, type) and issubclass(wanted, Enum):
        names = [m.name for m in wanted]
        return ", ".join(names[:-1]) + f" or {names[-1]}"
    return KINDS.get(wanted)


def merge(user, source: str = "<params>", overrides: list | None = None) -> DictConfig:
    schema_ = schema()
    _check_keys(
        OmegaConf.to_container(user) if isinstance(user, (DictConfig, ListConfig)) else user,
        schema_,
        source,
        "",
    )
    try:
        cfg = OmegaConf.merge(schema_, user, OmegaConf.from_dotlist(overrides or []))
    except OmegaConfBaseException as exc:  # a value of the wrong type for the schema
        key, value = getattr(exc, "full_key", "") or "?", getattr(exc, "value", None)
        wanted = _expected(schema_, key)
        if wanted is None:
            raise ConfigError(f"{source}: key `{key}`: {exc}".splitlines()[0]) from None
        fail(
            key,
            value,
            wanted
            if value is not None
            else f"{wanted} (null is not a value here; leave the key out for its default)",
            f"{source}: ",
        )
    for group in ("ablate.variants", "study.methods"):  # the user's replace the paper's
        named = OmegaConf.select(user, group) if isinstance(user, DictConfig) else None
        if named is not None:
            OmegaConf.update(
                cfg,
                group,
                OmegaConf.merge(
                    named,
                    OmegaConf.from_dotlist(
                        [
                            o.removeprefix(group + ".")
                            for o in overrides or []
                            if o.startswith(group + ".")
                        ]
                    ),
                ),
                merge=False,
            )
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
            raise ConfigError(
                f"{source}: `{group}` key {name!r} is not allowed: it must be a "
                f"name (text) such as my_method."
            )
        if not isinstance(overrides, dict):
            fail(
                f"{group}.{name}",
                overrides,
                "a mapping of deba overrides, e.g. {rule: gns} (`{}` for deba as it is)",
                f"{source}: ",
            )
        if "plugins" in overrides:
            raise ConfigError(
                f"{source}: `{group}.{name}.plugins` is not allowed: plugin files "
                f"are study-wide: list them in deba.plugins (a file in plugins/), "
                f"and name what they register in `{group}.{name}`."
            )
        _check_keys(overrides, deba_schema, source, f"{group}.{name}.")


def _check_keys(user, schema, source, prefix):
    """Unknown keys (with a did-you-mean) and a list or scalar where a mapping belongs (or the
    reverse), named by key, before OmegaConf's terser messages."""
    if not isinstance(user, dict):
        if prefix == "":
            fail(
                "(the whole file)",
                user,
                "a mapping of params groups (study, train, ...)",
                f"{source}: ",
            )
        return
    if not isinstance(schema, DictConfig):
        return
    typed = OmegaConf.get_type(schema) not in (dict, None) and schema._is_typed()
    known = list(schema.keys())
    for key, value in user.items():
        path = f"{prefix}{key}"
        if typed and key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = (
                f" Did you mean `{prefix}{close[0]}`?"
                if close
                else f" Known keys here: {', '.join(known)}."
            )
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
