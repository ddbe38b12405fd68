"""Read an offline W&B run's `.wandb` transaction log, for tests of what was logged.

wandb 0.31 reads these files in its Go core only (the Python `datastore` reader is gone), so the
tests keep this small reader of the LevelDB-style log: 32 KiB blocks of records, each with a
7-byte header (checksum, length, fragment kind), holding `wandb_internal_pb2.Record` messages.
"""
import json
import struct
import time
from pathlib import Path


def read_offline_run(run_dir, wait_s: float = 60.0) -> dict:
    """History rows, summary and run (its id and group) of an offline run, read from its `.wandb` transaction log
    (LevelDB-style log: 32 KiB blocks of records with a 7-byte header each). W&B's core process
    writes the log after `finish()` returns, so on a busy machine the reader waits (up to
    `wait_s`) for the run's exit record, which closes a complete log."""
    deadline = time.monotonic() + wait_s
    while True:
        run = _read(run_dir)
        if run.pop("complete") or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


def _read(run_dir) -> dict:
    from wandb.proto import wandb_internal_pb2
    path = next(Path(run_dir).glob("*.wandb"), None)
    if path is None:  # W&B's core process has not written the log yet
        return {"history": [], "summary": {}, "complete": False, "run": {}}
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
    history, summary, complete, run = [], {}, False, {}
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        complete = complete or kind == "exit"
        if kind == "run":
            run = {"id": record.run.run_id, "group": record.run.run_group}
        elif kind == "history":
            history.append({item.key or ".".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
        elif kind == "summary":
            summary.update({item.key or ".".join(item.nested_key): json.loads(item.value_json)
                            for item in record.summary.update})
    return {"history": history, "summary": summary, "complete": complete, "run": run}
