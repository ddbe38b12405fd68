"""Entries kept in the state folder (finished runs, step-time tables) that verify what they hold:
each is written with a SHA-256 over its content and the identity it was made for, and read back
only when both still match and the content passes its own sanity check. An entry that fails is
never used: it is set aside beside itself (renamed, never deleted), one line says why, and the
caller makes it again.

    keep(path, record, identity)              # atomically, with its checksum
    kept(path, identity, check) -> content    # or None: absent, or set aside just now
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from deba_pipeline.engine.files import write_json

log = logging.getLogger(__name__)


def _digest(identity, content) -> str:
    blob = json.dumps({"identity": identity, "content": content}, sort_keys=True, allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def keep(path, content, identity: dict) -> Path:
    """Write `content` to `path` with `identity` and the checksum over both."""
    return write_json(
        path, {"sha256": _digest(identity, content), "identity": identity, "content": content}
    )


def kept(path, identity: dict, check=None):
    """The content kept at `path` when it is intact, made for `identity` and passes `check` (a
    function returning what is wrong, or None); else None, with a bad entry set aside."""
    path = Path(path)
    if not path.is_file():
        return None
    problem, entry = None, None
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problem = f"it is unreadable ({type(exc).__name__})"
    if problem is None:
        problem = _problem(entry, identity, check)
    if problem is None:
        return entry["content"]
    aside = set_aside(path)
    log.warning(
        "deba: %s was not used: %s. It is set aside as %s and made again.",
        path,
        problem,
        aside.name,
    )
    return None


def _problem(entry, identity, check) -> str | None:
    if not isinstance(entry, dict) or not {"sha256", "identity", "content"} <= set(entry):
        return "it is not an entry written by this version of deba-pipeline"
    try:
        intact = entry["sha256"] == _digest(entry["identity"], entry["content"])
    except (TypeError, ValueError):
        intact = False
    if not intact:
        return "its content does not match the checksum written with it (edited or damaged)"
    held = entry["identity"]
    if held != identity:
        wrong = sorted(k for k in set(identity) | set(held) if held.get(k) != identity.get(k))
        found = ", ".join(f"{k} {held.get(k)!r}" for k in wrong)
        return f"it was made for another run or table ({found})"
    return check(entry["content"]) if check else None


def set_aside(path: Path) -> Path:
    """Rename `path` to `<name>.set-aside-<time>`: out of the way, and kept for a look."""
    aside = path.with_name(f"{path.name}.set-aside-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.replace(path, aside)
    return aside
