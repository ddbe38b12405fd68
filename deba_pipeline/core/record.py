"""The run record (docs/records.md): the interchange format between stages, and reading older
schemas.

Schema 2 nests each epoch's signal values under `signals`, so a plugin's signal can never replace
one of the record's own fields (a signal named `lr` used to overwrite the learning rate).
Schema 1 records (signals as top-level epoch keys) are read through `upgrade`.
"""
from __future__ import annotations

import base64

import numpy as np

RECORD_SCHEMA = 2
TIMING_KEYS = ("epoch_time_s", "samples_per_s", "eval_time_s", "peak_memory_mb")
EPOCH_FIELDS = ("epoch", "batch_size", "lr", "train_loss", "test_accuracy", "epoch_time_s",
                "eval_time_s", "samples_per_s", "signals", "decision", "next_batch_size",
                "peak_memory_mb", "grad_norm_var", "loss_var")


def is_record(data) -> bool:
    return isinstance(data, dict) and "schema" in data and "epochs" in data


def upgrade(record: dict) -> dict:
    """`record` in the current shape; records of this schema are returned as they are."""
    if record.get("schema", 1) >= 2:
        return record
    epochs = []
    for entry in record["epochs"]:
        own = {k: v for k, v in entry.items() if k in EPOCH_FIELDS}
        own["signals"] = {k: v for k, v in entry.items() if k not in EPOCH_FIELDS}
        epochs.append(own)
    return {**record, "schema": RECORD_SCHEMA, "epochs": epochs}


def signal(entry: dict, name: str):
    """One signal's value in an epoch entry (None where undefined or not recorded)."""
    return entry["signals"].get(name)


def pack_hits(hits) -> dict:
    """The final evaluation's per-sample right (1) or wrong (0), in test-set order, as
    {"size": n, "bits": base64 of the packed bits}: 1.25 KB for 10,000 images. Two runs on one
    test set then give a paired ΔAcc its exact test-set term (the discordant pairs)."""
    hits = np.asarray(hits, dtype=bool)
    return {"size": int(hits.size), "bits": base64.b64encode(np.packbits(hits)).decode()}


def unpack_hits(record: dict):
    """The bool array `pack_hits` stored in `record["test_hits"]`; None where the record has
    none (older records, peers' runs) or it does not match the record's own accuracy."""
    stored = record.get("test_hits")
    if not isinstance(stored, dict):
        return None
    try:
        size = int(stored["size"])
        bits = np.frombuffer(base64.b64decode(stored["bits"], validate=True), dtype=np.uint8)
    except (KeyError, TypeError, ValueError):
        return None
    hits = np.unpackbits(bits)[:size].astype(bool)
    accuracy = record.get("final_test_accuracy")
    if hits.size != size or size == 0 or not isinstance(accuracy, (int, float)) \
            or abs(100.0 * hits.sum() / size - accuracy) > 1e-9:
        return None
    return hits
