"""The one PluginManager. Built-ins arrive through this package's own `deba` entry points, exactly
like a third-party package's; project files are loaded by path. `registry(kind)` says what exists
and where it came from."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import pluggy

from deba_pipeline.core import hookspecs
from deba_pipeline.core.errors import (
    PLUGIN_FAULTS,
    ConfigError,
    DebaError,
    PluginError,
    UnknownPluginError,
)

KINDS = {
    "signal": "register_signals",
    "rule": "register_rules",
    "policy": "register_policies",
    "dataset": "register_datasets",
}
PLURAL = {"signal": "signals", "rule": "rules", "policy": "policies", "dataset": "datasets"}

pm = pluggy.PluginManager("deba")
pm.add_hookspecs(hookspecs)
_loaded = False


def _ensure_loaded() -> None:
    """Load installed plugins once, on first use, so a broken one is reported, not a crash."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    try:
        pm.load_setuptools_entrypoints("deba")
    except PLUGIN_FAULTS as exc:
        raise PluginError(
            f"an installed `deba` plugin failed to load: {type(exc).__name__}: "
            f"{exc}. Uninstall or fix it (`pip list` shows what is "
            f"installed)."
        ) from exc
    if not any(
        getattr(plugin, "__name__", "").startswith("deba_pipeline.") for plugin in pm.get_plugins()
    ):
        raise PluginError(
            "deba_pipeline's built-in plugins were not found: they register through "
            "the package's `deba` entry points, which only an installed package has. "
            "Install it (`pip install -e .` in the project)."
        )


def load_plugin_file(path) -> str:
    """Import a project-local plugin file (e.g. plugins/grad_cosine.py) and register it once."""
    _ensure_loaded()
    path = Path(path).resolve()
    name = f"file:{path}"
    if pm.get_plugin(name) is not None:
        return name
    if not path.is_file():
        raise PluginError(f"plugin file {str(path)!r} does not exist: fix the path in `plugins`.")
    spec = importlib.util.spec_from_file_location(f"deba_plugin_{path.stem}", path)
    if spec is None or spec.loader is None:  # not a Python source file
        raise PluginError(
            f"plugin file {str(path)!r} is not a Python module: name a .py file in `plugins`."
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: timm's @register_model looks it up
    try:
        spec.loader.exec_module(module)
    except PLUGIN_FAULTS as exc:
        del sys.modules[spec.name]
        raise PluginError(
            f"plugin file {str(path)!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    pm.register(module, name=name)
    return name


def project_models() -> dict:
    """{model name: source} of the timm models that loaded plugin files register (timm's own
    `@register_model`), so `study.archs` can name them."""
    import timm

    return {
        model: source_of(name)
        for name, plugin in pm.list_name_plugin()
        if name.startswith("file:")
        for model in timm.list_models(module=getattr(plugin, "__name__", ""))
    }


def source_of(plugin_name: str) -> str:
    plugin = pm.get_plugin(plugin_name)
    for registered, dist in pm.list_plugin_distinfo():
        if registered is plugin:
            kind = "built-in" if dist.project_name == "deba-pipeline" else "package"
            return f"{kind} ({dist.project_name} {dist.version})"
    if plugin_name.startswith("file:"):
        return f"file {plugin_name[5:]}"
    return f"in-process ({plugin_name})"


def registry(kind: str) -> dict:
    """{name: (class, source)} of every registered plugin class of `kind`."""
    _ensure_loaded()
    found: dict = {}
    for impl in getattr(pm.hook, KINDS[kind]).get_hookimpls():
        source = source_of(impl.plugin_name)

        def register(cls, source=source):
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(
                    f"{kind} plugin from {source} registered {cls!r} without a "
                    f"`name` string attribute."
                )
            if name in found:
                raise PluginError(
                    f"{kind} {name!r} is registered twice: by {found[name][1]} and "
                    f"by {source}. Rename one of them."
                )
            found[name] = (cls, source)

        try:
            impl.function(register=register)
        except PluginError:
            raise
        except PLUGIN_FAULTS as exc:
            raise PluginError(
                f"plugin {impl.plugin_name!r} ({source}) raised while registering "
                f"{kind}s: {type(exc).__name__}: {exc}"
            ) from exc
    return found


def get(kind: str, name: str):
    """The class registered as `name`, or an error listing what is available."""
    found = registry(kind)
    if not isinstance(name, str) or name not in found:
        raise UnknownPluginError(
            f"unknown {kind} {name!r}. Available {PLURAL[kind]}: "
            f"{', '.join(sorted(found)) or 'none'}. Install or load the plugin "
            f"that provides it (see `deba plugins`)."
        )
    return found[name][0]


def create(kind: str, name: str, *args, options: dict | None = None, where: str = "options"):
    """An instance of plugin `name`, built with `args` and the user's `options` (from `where`).
    An option the class does not take is a ConfigError naming what it takes; the plugin itself
    judges the values (ConfigError), and any other failure names the plugin."""
    cls, options = get(kind, name), dict(options or {})
    parameters = inspect.signature(cls).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):
        takes = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]
        unknown = sorted(set(options) - set(takes))
        if unknown:
            raise ConfigError(
                f"{kind} {name!r} does not take the option {unknown[0]!r} (from "
                f"`{where}`); it takes {', '.join(takes) or 'no options'}."
            )
    try:
        return cls(*args, **options)
    except DebaError:
        raise
    except PLUGIN_FAULTS as exc:
        raise PluginError(
            f"{kind} {name!r} failed to start with options {options} (from "
            f"`{where}`): {type(exc).__name__}: {exc}"
        ) from exc
