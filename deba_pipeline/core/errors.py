"""User-facing errors: each names the problem and the fix; the CLI prints it without a trace."""


class DebaError(Exception):
    """An error the user can fix; its message is printed as is by the `deba` CLI."""


class ConfigError(DebaError, ValueError):
    """A bad argument or parameter: names the key, the value and what is allowed."""


class PluginError(DebaError):
    """An unknown, duplicate or failing plugin."""


class UnknownPluginError(PluginError, ConfigError):
    """A plugin name nothing registered: a bad argument as much as a plugin problem."""


# What a plugin call may raise that is the plugin's fault: sys.exit() in a plugin ends the run with
# a message and a non-zero exit, not a silent exit 0. Ctrl-C (KeyboardInterrupt) is not a fault.
PLUGIN_FAULTS = (Exception, SystemExit)


def fail(name: str, value, allowed: str, where: str = ""):
    """Raise one ConfigError: "<where>`name` = value is not allowed: it must be <allowed>."."""
    raise ConfigError(f"{where}`{name}` = {value!r} is not allowed: it must be {allowed}.")


def check(ok: bool, name: str, value, allowed: str) -> None:
    """`fail` unless `ok`: for a library argument."""
    if not ok:
        fail(name, value, allowed)
