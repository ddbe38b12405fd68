"""Atomic file writes: a kill never leaves a half-written record, table or checkpoint."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


def _atomic(path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path, data) -> Path:
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    return _atomic(path, lambda handle: handle.write(text.encode()))


def write_text(path, text: str) -> Path:
    return _atomic(path, lambda handle: handle.write(text.encode()))


def save_torch(path, obj) -> Path:
    return _atomic(path, lambda handle: torch.save(obj, handle))


def read_json(path):
    with open(path) as handle:
        return json.load(handle)
