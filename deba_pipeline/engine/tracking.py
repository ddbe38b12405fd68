"""Weights & Biases: one run per training run, offline unless the user opts in, never fatal.

The mode is decided before `wandb.init`: `online` without an API key warns once and logs offline.
"""
from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

_warned = False


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def _warn(message: str) -> None:
    global _warned
    if not _warned:
        warnings.warn(message, stacklevel=3)
        _warned = True


class Tracker:
    """Thin wrapper: log(dict, step), summary(dict), finish(). Does nothing when disabled."""

    def __init__(self, mode: str, project: str, group: str, name: str, config: dict,
                 directory: str, entity=None):
        self.run, self.mode = None, mode
        if mode == "disabled":
            return
        if mode == "online" and not _has_api_key():
            _warn("tracking.wandb is 'online' but no W&B API key is set (WANDB_API_KEY or "
                  "`wandb login`): logging offline instead; `wandb sync` uploads it later.")
            mode = "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
        Path(directory).mkdir(parents=True, exist_ok=True)
        import wandb

        # console="off": W&B's console capture, once a second run starts in the same process,
        # halved training speed on 2 CPU cores (measured); our logs are in the run record.
        settings = wandb.Settings(console="off")
        try:
            self.run = wandb.init(project=project, entity=entity, group=group, name=name,
                                  config=config, dir=directory, mode=mode, settings=settings,
                                  job_type=config.get("variant"), reinit="finish_previous")
        except Exception as exc:  # a tracking failure must never fail the training run
            _warn(f"W&B could not start ({type(exc).__name__}: {exc}); logging offline instead.")
            try:
                self.run = wandb.init(project=project, group=group, name=name, config=config,
                                      dir=directory, mode="offline", settings=settings,
                                      reinit="finish_previous")
            except Exception:
                self.run = None
        self.mode = mode

    def log(self, metrics: dict, step: int) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in metrics.items() if v is not None}, step=step)

    def summary(self, values: dict) -> None:
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = value

    @property
    def directory(self):
        return None if self.run is None else Path(self.run.dir).parent

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def read_offline_run(run_dir) -> dict:
    """History rows and summary of an offline run, read from its `.wandb` transaction log
    (LevelDB-style log: 32 KiB blocks of records with a 7-byte header each)."""
    from wandb.proto import wandb_internal_pb2
    path = next(Path(run_dir).glob("*.wandb"))
    data, block, pos, pending, records = path.read_bytes(), 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST fragment
            records.append(pending)
            pending = b""
    import json
    history, summary = [], {}
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({item.key or ".".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
        elif kind == "summary":
            summary.update({item.key or ".".join(item.nested_key): json.loads(item.value_json)
                            for item in record.summary.update})
    return {"history": history, "summary": summary}
