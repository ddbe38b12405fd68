"""Atomic file writes: a kill never leaves a half-written record, table or checkpoint."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

from deba_pipeline.core.errors import DebaError


class UnreadableFile(DebaError):
    """A stage output that is missing, truncated or not what it should be."""


def _file_mode() -> int:
    """What a plain open() would give a new file: 0o666 less the umask (mkstemp's 0o600 would
    keep a colleague from reading the reports)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def make_folder(path, writing=None) -> Path:
    """`path` as a folder (made with its parents), or one DebaError where a file stands in the
    way (naming `writing`, the file that was to go into it)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise DebaError(
            f"{f'cannot write {writing}: ' if writing else ''}{blocker} is a file "
            f"where a folder is needed: move it away or delete it, then "
            f"rerun."
        ) from None
    return path


def _atomic(path, write) -> Path:
    """Write through a temporary file in the same folder and rename it into place; on any
    failure (a full disk, a folder that is a file, no permission) nothing is left behind."""
    path, tmp = Path(path), None
    try:
        make_folder(path.parent, writing=path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        where = exc.filename if exc.filename not in (None, tmp, str(path)) else None
        raise DebaError(
            f"cannot write {path}: {exc.strerror or exc}"
            f"{f' ({where})' if where else ''}. Make sure its folder "
            f"is a writable folder with free space, then rerun."
        ) from None
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(tmp) -> None:
    if tmp is not None:
        Path(tmp).unlink(missing_ok=True)


def write_json(path, data) -> Path:
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    return _atomic(path, lambda handle: handle.write(text.encode()))


def write_text(path, text: str) -> Path:
    return _atomic(path, lambda handle: handle.write(text.encode()))


CHECKSUM = b"deba-checkpoint sha256:"  # the first line of a checkpoint, then torch.save's bytes


def save_torch(path, obj) -> Path:
    """torch.save's bytes after a line with their SHA-256, so a damaged file is found on load."""
    import torch  # here, not above: the commands that train nothing never import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getbuffer()
    header = CHECKSUM + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    return _atomic(path, lambda handle: (handle.write(header), handle.write(payload)))


class DamagedFile(ValueError):
    """A checkpoint whose bytes are not the ones written."""


def load_torch(path, device="cpu"):
    """What `save_torch` wrote, read with weights_only=True after its checksum is verified."""
    import torch

    data = Path(path).read_bytes()
    header, _, payload = data.partition(b"\n")
    if not header.startswith(CHECKSUM):
        raise DamagedFile("it has no checksum line (not written by this version of deba-pipeline)")
    if hashlib.sha256(payload).hexdigest().encode() != header[len(CHECKSUM) :]:
        raise DamagedFile("its content does not match the checksum written with it")
    return torch.load(io.BytesIO(payload), map_location=device, weights_only=True)


def read_json(path, fix: str = "rerun the stage that writes it (`dvc repro`)"):
    """The JSON in `path`; a missing, unreadable or truncated file is one UnreadableFile naming
    the path and `fix`."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise UnreadableFile(f"{path} does not exist: {fix}.") from None
    except (OSError, ValueError) as exc:  # ValueError: truncated JSON, bytes that are not UTF-8
        reason = exc.strerror if isinstance(exc, OSError) else str(exc).split(":")[0]
        raise UnreadableFile(f"{path} is unreadable ({reason}): {fix}.") from None
