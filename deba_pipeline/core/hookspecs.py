"""The four kinds of plugin. Each hook receives a `register` callback and calls it with classes."""

import pluggy

hookspec = pluggy.HookspecMarker("deba")
hookimpl = pluggy.HookimplMarker("deba")


@hookspec
def register_signals(register):
    """Call register(SignalClass) for each Signal subclass this plugin provides."""


@hookspec
def register_rules(register):
    """Call register(RuleClass) for each Rule subclass this plugin provides."""


@hookspec
def register_policies(register):
    """Call register(PolicyClass) for each Policy subclass this plugin provides."""


@hookspec
def register_datasets(register):
    """Call register(DatasetClass) for each Dataset subclass this plugin provides."""
