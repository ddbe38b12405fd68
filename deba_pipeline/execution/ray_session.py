"""Ray for the length of a stage's work, started here or joined, and quiet unless asked.

Joining a cluster can go wrong three ways, and each gets its own one-line answer: nothing
answers at the address (checked with one TCP connection, in seconds, before Ray is asked), the
cluster refuses this machine's token, or it is there but no node can hold what a run asks for
(`check_fits`, before anything is submitted).

Tokens: a cluster started with `ray start --head` turns token authentication on whenever a token
is readable on its machine (Ray 2.59 and later; `ray.init()` on that machine writes one to
~/.ray/auth_token). Ray's own client turns token mode on only for a cluster it finds by itself,
not for one named by address, so it would refuse the very cluster the README just started. Here
a joined cluster gets what Ray's CLI does: with RAY_AUTH_MODE unset and a token readable, token
mode is on (a cluster without authentication accepts a client that sends one).

Ray's own log lines (its C++ core writes them to the process's stderr) reach the terminal only
with `deba -v` or DEBA_VERBOSE=1; otherwise they are kept and read only to tell the causes apart.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from deba_pipeline.config.placement import parse_ray_address
from deba_pipeline.core.errors import ConfigError, DebaError
from deba_pipeline.execution.process import flag

CONNECT_TIMEOUT_S = 5.0  # a cluster's head answers a TCP connection at once when it is up


def verbose() -> bool:
    """`deba -v` (which sets it) or DEBA_VERBOSE=1: show the libraries' own log lines."""
    return flag("DEBA_VERBOSE")


def token_source() -> str | None:
    """Where Ray would read its token here, in Ray's own order; None when no token is readable."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "the variable RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return path if Path(path).is_file() else None
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() and default.read_text().strip() else None


@contextmanager
def session(address=None):
    """Ray for a stage: joined at `address` (or RAY_ADDRESS), else started here and stopped at
    the end (by hand: Ray's own exit hook first sleeps half a second)."""
    try:
        import ray
    except ImportError:
        raise DebaError(
            "execution.backend is ray but Ray is not installed here: "
            "`pip install 'deba-pipeline[ray]'` (or set execution.backend: local)."
        ) from None
    if not verbose():
        logging.getLogger("ray").setLevel(logging.ERROR)  # e.g. the token notice, every stage
    started = not ray.is_initialized()
    if started:
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        if address in ("local", "auto"):
            # "local" starts a Ray here even where a stopped cluster left its address behind
            with ray_output() as said:
                try:
                    ray.init(
                        address=address,
                        include_dashboard=False,
                        configure_logging=False,
                        log_to_driver=False,
                    )
                except ConnectionError as exc:
                    raise DebaError(
                        f"Ray could not start on this machine ({exc}); `deba -v` "
                        f"shows Ray's own lines:\n{said()[-2000:]}"
                    ) from None
        else:
            join(ray, address)
    try:
        yield ray
    finally:
        if started:
            with ray_output():
                ray.shutdown()


def join(ray, address: str) -> None:
    """Connect this process to the cluster at `address`, or fail with one line naming why."""
    host, port = parse_ray_address(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise DebaError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}): start one "
            f"there with `ray start --head --port={port}`, or set execution.address "
            f"to null to start Ray on this machine."
        ) from None
    token = token_source()
    if token and not os.environ.get("RAY_AUTH_MODE"):
        _token_mode_on()
    with ray_output() as said:
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                configure_logging=False,
                log_to_driver=False,
            )
            return
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ...
            failure, log = exc, said()
    if (
        "InvalidAuthToken" in log
        or "Unauthenticated" in log
        or "AuthenticationError" in type(failure).__name__
    ):
        raise DebaError(refused_token(address, token)) from None
    last = (str(failure).strip().splitlines() or [type(failure).__name__])[-1]
    raise DebaError(
        f"cannot join the Ray cluster at {address} ({last}): check that its "
        f"version of Ray and Python match this machine's; `deba -v` shows Ray's own "
        f"lines."
    ) from None


def refused_token(address: str, token: str | None) -> str:
    fix = (
        "on the cluster's head node `ray get-auth-token` prints its token; put it in "
        "~/.ray/auth_token here (or in RAY_AUTH_TOKEN, or a file named by RAY_AUTH_TOKEN_PATH)"
    )
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return (
            f"the Ray cluster at {address} asks for a token, and RAY_AUTH_MODE=disabled is "
            f"set here: unset it; {fix}."
        )
    if token is None:
        return (
            f"the Ray cluster at {address} asks for a token (it was started with token "
            f"authentication) and none is readable on this machine: {fix}."
        )
    return (
        f"the Ray cluster at {address} refused the token from {token}: it is not the token "
        f"the cluster was started with; {fix}."
    )


def _token_mode_on() -> None:
    """What Ray's CLI does before `ray start`: token mode for this process and its children."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except ImportError:  # another Ray version: the variable alone, read when Ray connects
        os.environ["RAY_AUTH_MODE"] = "token"


@contextmanager
def ray_output():
    """Keep what Ray's C++ core writes to this process's stderr (file descriptor 2) while the
    block runs, unless verbose; yields a function that returns the text kept so far."""
    if verbose():
        yield lambda: ""
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as kept:
        os.dup2(kept.fileno(), 2)
        try:
            yield lambda: (kept.seek(0), kept.read().decode(errors="replace"))[1]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def check_fits(ray, cpus: float, gpus: float, what: str) -> None:
    """Fail at once, naming the setting, when no live node can hold one task of `cpus` cores
    and `gpus` GPUs: Ray would otherwise wait for such a node forever, silently."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        return
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    raise ConfigError(
        f"{what} asks Ray for {cpus:g} cores and {gpus:g} GPUs on one node, and "
        f"the largest node of the cluster has {most_cpus:g} cores and {most_gpus:g} "
        f"GPUs: lower execution.cpus_per_run or execution.gpus_per_run (a run of "
        f"train.processes asks for that many times each), or add a larger node."
    )
