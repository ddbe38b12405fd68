"""The run record (docs/records.md): the interchange format between stages, and reading older
schemas.

Schema 2 nests each epoch's signal values under `signals`, so a plugin's signal can never replace
one of the record's own fields (a signal named `lr` used to overwrite the learning rate).
Schema 1 records (signals as top-level epoch keys) are read through `upgrade`.
"""

from __future__ import annotations

import base64

import numpy as np

from deba_pipeline.core.options import finite_number

RECORD_SCHEMA = 2
TIMING_KEYS = ("epoch_time_s", "samples_per_s", "eval_time_s", "peak_memory_mb")
EPOCH_FIELDS = (
    "epoch",
    "batch_size",
    "lr",
    "train_loss",
    "test_accuracy",
    "epoch_time_s",
    "eval_time_s",
    "samples_per_s",
    "signals",
    "decision",
    "next_batch_size",
    "peak_memory_mb",
    "grad_norm_var",
    "loss_var",
)


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
    return {"size": int(hits.size), "bits": base64.b64encode(np.packbits(hits).tobytes()).decode()}


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
    if (
        hits.size != size
        or size == 0
        or not isinstance(accuracy, (int, float))
        or abs(100.0 * hits.sum() / size - accuracy) > 1e-9
    ):
        return None
    return hits


def _fields_problem(record: dict) -> str | None:
    for name in ("arch", "dataset", "method", "variant"):
        if not isinstance(record.get(name), str) or not record[name]:
            return f"its {name} is {record.get(name)!r}, not a name"
    if not isinstance(record.get("seed"), int) or isinstance(record["seed"], bool):
        return f"its seed is {record.get('seed')!r}, not an integer"
    accuracy = record.get("final_test_accuracy")
    if not (finite_number(accuracy) and 0 <= accuracy <= 100):
        return f"its final_test_accuracy is {accuracy!r}, not a percentage"
    world = record.get("world_size", 1)
    if not isinstance(world, int) or isinstance(world, bool) or world < 1:
        return f"its world_size is {world!r}, not an integer >= 1"
    return None


def _epoch_problem(i: int, entry, train_size) -> str | None:
    if not isinstance(entry, dict) or entry.get("epoch") != i:
        return "its epochs are not 1, 2, ... in order"
    batch = entry.get("batch_size")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        return f"epoch {i}'s batch_size is {batch!r}, not an integer >= 1"
    if isinstance(train_size, int) and batch > train_size:
        return f"epoch {i}'s batch of {batch} exceeds its training set of {train_size}"
    if not (finite_number(entry.get("epoch_time_s")) and entry["epoch_time_s"] >= 0):
        return f"epoch {i}'s epoch_time_s is {entry.get('epoch_time_s')!r}, not seconds >= 0"
    if "train_loss" in entry and not finite_number(entry["train_loss"]):
        return f"epoch {i}'s train_loss is {entry['train_loss']!r}, not a number"
    accuracy = entry.get("test_accuracy", 0)
    if not (finite_number(accuracy) and 0 <= accuracy <= 100):
        return f"epoch {i}'s test_accuracy is {accuracy!r}, not a percentage"
    return None


def record_problem(record) -> str | None:
    """What makes `record` unreadable or contradict itself, in words; None for a sound one.
    A checksum proves a file was written whole, not that it is right: the content must agree
    with itself (its time is its epochs' sum, a fixed run keeps its batch, no batch exceeds
    its training set, its final accuracy is its last epoch's)."""
    if not is_record(record):
        return "it is not a run record (no schema or epochs)"
    schema = record["schema"]
    if not isinstance(schema, int) or isinstance(schema, bool) or not 1 <= schema <= RECORD_SCHEMA:
        return (
            f"its schema is {schema!r}, and this deba-pipeline reads schemas 1 to "
            f"{RECORD_SCHEMA} (a newer one wrote it: upgrade deba-pipeline)"
        )
    problem = _fields_problem(record)
    if problem:
        return problem
    epochs = record["epochs"]
    if not isinstance(epochs, list) or not epochs:
        return "it holds no epochs"
    for i, entry in enumerate(epochs, 1):
        problem = _epoch_problem(i, entry, record.get("train_size"))
        if problem:
            return problem
    if record["method"] == "fixed" and len({e["batch_size"] for e in epochs}) > 1:
        return "it is a fixed-batch run whose batch changes"
    if (
        "test_accuracy" in epochs[-1]
        and record["final_test_accuracy"] != epochs[-1]["test_accuracy"]
    ):
        return "its final accuracy is not its last epoch's"
    total, seconds = record.get("train_time_s"), sum(e["epoch_time_s"] for e in epochs)
    if not (finite_number(total) and abs(total - seconds) <= 1e-6 * max(1.0, seconds)):
        return f"its train_time_s ({total!r}) is not the sum of its epochs' ({seconds:.6g} s)"
    return None
