"""User-facing errors: each one names the problem and the fix, and the CLI prints it without a trace."""


class DebaError(Exception):
    """An error the user can fix; its message is printed as is by the `deba` CLI."""


class ConfigError(DebaError, ValueError):
    """A bad argument or parameter: names the key, the value and what is allowed."""


class PluginError(DebaError):
    """An unknown, duplicate or failing plugin."""


def check(ok: bool, name: str, value, allowed: str) -> None:
    """Raise one ConfigError naming the argument, its value and what is allowed."""
    if not ok:
        raise ConfigError(f"{name}={value!r} is not allowed: {name} must be {allowed}.")
