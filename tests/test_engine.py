import json
import logging
import re
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from deba_pipeline.engine import data as data_module
from deba_pipeline.engine import loop
from deba_pipeline.engine.data import DeviceData, Split
from deba_pipeline.engine.files import load_torch
from deba_pipeline.execution import one_run

from helpers import read_offline_run, tiny_spec, without_times

EPOCH_KEYS = {
    "epoch",
    "batch_size",
    "lr",
    "train_loss",
    "test_accuracy",
    "epoch_time_s",
    "signals",
    "decision",
}
SIGNALS = {"grad_variance", "grad_norm_variation", "loss_variation"}


def test_fixed_and_deba_records(tmp_path):
    fixed = one_run.train(tiny_spec("fixed", "profile"), state_dir=tmp_path, progress=False)
    deba = one_run.train(
        tiny_spec("deba", deba={"theta_conf": 10.0, "theta_stab": 10.0}),
        state_dir=tmp_path,
        progress=False,
    )
    for record in (fixed, deba):
        assert record["schema"] == 2
        assert record["dataset"] == "digits"
        assert record["seed"] == 2
        assert len(record["epochs"]) == 4
        assert set(record["epochs"][0]) >= EPOCH_KEYS
        assert set(record["epochs"][0]["signals"]) == SIGNALS
        assert record["epochs"][0]["signals"]["grad_norm_variation"] is None
        assert record["epochs"][1]["signals"]["grad_norm_variation"] > 0
        assert 0 <= record["final_test_accuracy"] <= 100
        assert record["train_time_s"] == pytest.approx(
            sum(e["epoch_time_s"] for e in record["epochs"])
        )
        assert record["config"]["arch"] == "test_resnet"
    assert fixed["final_test_accuracy"] > 50  # it learns the digits
    assert {e["batch_size"] for e in fixed["epochs"]} == {64}
    assert fixed["epochs"][0]["grad_norm_var"] > 0
    assert fixed["epochs"][0]["loss_var"] > 0
    # DEBA: epoch t+1 runs at the size that epoch t's decision chose (cooldown 1)
    sizes = [e["batch_size"] for e in deba["epochs"]]
    decisions = [e["decision"] for e in deba["epochs"]]
    assert decisions == ["hold", "increase", "hold", "increase"]
    assert sizes == [64, 64, 96, 96]
    assert [e["next_batch_size"] for e in deba["epochs"]] == [64, 96, 96, 144]


def test_same_seed_same_record(tmp_path):
    first = one_run.train(tiny_spec(), state_dir=tmp_path / "a", progress=False)
    second = one_run.train(tiny_spec(), state_dir=tmp_path / "b", progress=False)
    assert without_times(first) == without_times(second)
    other_seed = one_run.train(tiny_spec(seed=3), state_dir=tmp_path / "c", progress=False)
    assert other_seed["epochs"][0]["train_loss"] != first["epochs"][0]["train_loss"]


RUNNER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from helpers import tiny_spec
    from deba_pipeline.execution.one_run import train
    train(tiny_spec(train={{"epochs": 40}}), state_dir=sys.argv[1], progress=False)
""")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_run_resumes_to_the_same_record(tmp_path, signum):
    state = tmp_path / "state"
    script = RUNNER.format(tests=str(Path(__file__).parent))
    proc = subprocess.Popen([sys.executable, "-c", script, str(state)], stderr=subprocess.DEVNULL)
    checkpoints = state / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until a few epochs are checkpointed
        found = list(checkpoints.glob("*.pt")) if checkpoints.exists() else []
        if found and load_torch(found[0])["epoch"] >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signum)
    assert proc.wait(timeout=60) != 0  # it really was cut short
    saved = load_torch(next(checkpoints.glob("*.pt")))
    assert 3 <= saved["epoch"] < 40
    assert len(saved["record"]["epochs"]) == saved["epoch"]

    resumed = one_run.train(tiny_spec(train={"epochs": 40}), state_dir=state, progress=False)
    straight = one_run.train(
        tiny_spec(train={"epochs": 40}), state_dir=tmp_path / "straight", progress=False
    )
    assert without_times(resumed) == without_times(straight)
    assert not list(checkpoints.glob("*.pt"))  # a finished run keeps only its record


def test_batch_size_change_touches_no_data_and_sees_every_sample_once():
    n = 203
    ids = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    split = Split(ids, torch.arange(n), ids[:5], torch.arange(5), 10)
    held = DeviceData(split, torch.device("cpu"), seed=0)
    pointer = held.x_train.data_ptr()
    for batch_size in (64, 96, 17, 203, 16):
        seen = torch.cat([x.flatten() for x, _ in held.train_batches(batch_size)])
        labels = torch.cat([y for _, y in held.train_batches(batch_size)])
        assert len(seen) == n - n % batch_size
        assert len(labels) == len(seen)
        assert len(set(seen.tolist())) == len(seen)  # no sample twice in an epoch
    assert held.x_train.data_ptr() == pointer  # the held tensor is never replaced


def test_deba_run_loads_data_once_while_batch_grows(tmp_path, monkeypatch):
    loads = []
    real = data_module.load_split
    monkeypatch.setattr(loop, "load_split", lambda *a: loads.append(a) or real(*a))
    record = one_run.train(
        tiny_spec(deba={"theta_conf": 10.0, "theta_stab": 10.0}), state_dir=tmp_path, progress=False
    )
    assert len({e["batch_size"] for e in record["epochs"]}) > 1
    assert len(loads) == 1


def test_out_of_memory_caps_and_continues(tmp_path, monkeypatch):
    real = loop.forward_backward

    def limited(model, x, y, autocast):
        if x.shape[0] > 100:
            raise torch.OutOfMemoryError("injected: CUDA out of memory")
        return real(model, x, y, autocast)

    monkeypatch.setattr(loop, "forward_backward", limited)
    spec = tiny_spec(
        train={"epochs": 6}, deba={"theta_conf": 10.0, "theta_stab": 10.0, "cooldown": 0}
    )
    record = one_run.train(spec, state_dir=tmp_path, progress=False)
    sizes = [e["batch_size"] for e in record["epochs"]]
    assert sizes == [64, 64, 96, 96, 96, 96]  # 144 did not fit in epoch 4: back to 96, capped
    assert record["events"] == [
        {"epoch": 4, "event": "out_of_memory", "batch_size": 144, "fallback": 96}
    ]
    assert len(record["epochs"]) == 6


def test_offline_wandb_logs_every_epoch_and_disabled_writes_nothing(tmp_path):
    spec = tiny_spec()
    one_run.train(
        spec,
        state_dir=tmp_path / "on",
        tracking={"wandb": "offline", "project": "t"},
        progress=False,
    )
    runs = list((tmp_path / "on" / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logged = read_offline_run(runs[0])
    rows = [row for row in logged["history"] if "batch_size" in row]
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert all(
        {"train_loss", "test_accuracy", "signals/grad_variance", "decision"} <= set(r) for r in rows
    )
    assert "final_test_accuracy" in logged["summary"]

    one_run.train(
        tiny_spec(), state_dir=tmp_path / "off", tracking={"wandb": "disabled"}, progress=False
    )
    assert not (tmp_path / "off" / "wandb").exists()


@contextmanager
def heard(logger):
    """The messages `logger` emits inside the block, whatever the console set up."""
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # as `deba` shows them without -q
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_online_without_key_warns_and_logs_offline(tmp_path, monkeypatch):
    from deba_pipeline.engine import tracking

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setattr(tracking, "_warned", False)
    with heard(tracking.log) as lines:
        one_run.train(
            tiny_spec(train={"epochs": 2}),
            state_dir=tmp_path,
            tracking={"wandb": "online", "project": "t"},
            progress=False,
        )
    assert any("no W&B API key" in line for line in lines)  # a plain line, not a UserWarning
    assert list((tmp_path / "wandb" / "wandb").glob("offline-run-*"))


def test_run_key_follows_the_config_and_the_training_code(tmp_path, monkeypatch):
    from deba_pipeline.engine import spec as spec_module

    base = tiny_spec()
    before = base.key()
    assert tiny_spec().key() == before
    assert tiny_spec(train={"lr": 0.02}).key() != base.key()
    assert tiny_spec(variant="cooldown2").key() == base.key()  # a label, not a result input
    edited = tmp_path / "deba_pipeline" / "core" / "scheduler.py"
    edited.parent.mkdir(parents=True)
    edited.write_text("# an edited copy of the training code\n")
    monkeypatch.setattr(spec_module, "TRAINING_CODE", ("deba_pipeline/core/scheduler.py",))
    monkeypatch.setattr(spec_module, "PROJECT", tmp_path)
    assert tiny_spec().key() != before


def test_epoch_mean_gradient_source(tmp_path):
    last = one_run.train(tiny_spec(train={"epochs": 2}), state_dir=tmp_path / "a", progress=False)
    mean = one_run.train(
        tiny_spec(train={"epochs": 2}, deba={"gradient_source": "epoch_mean"}),
        state_dir=tmp_path / "b",
        progress=False,
    )
    # same training, different gradient observed: the epoch's mean gradient is less noisy
    assert [e["train_loss"] for e in mean["epochs"]] == [e["train_loss"] for e in last["epochs"]]
    for a, b in zip(last["epochs"], mean["epochs"]):
        assert b["signals"]["grad_variance"] < a["signals"]["grad_variance"]


def test_a_signal_named_like_a_record_field_cannot_replace_it(tmp_path, register_plugin):
    from deba_pipeline import Signal, hookimpl

    def constant(field, value):
        return type(field, (Signal,), {"name": field, "compute": lambda self, obs: value})

    class Impostors:
        @hookimpl
        def register_signals(self, register):
            for field, value in (("lr", 123.0), ("decision", 7.0), ("batch_size", 1.0)):
                register(constant(field, value))

    register_plugin(Impostors(), "impostors")
    signals = [
        "grad_variance",
        "grad_norm_variation",
        "loss_variation",
        "lr",
        "decision",
        "batch_size",
    ]
    record = one_run.train(
        tiny_spec(train={"epochs": 2}, deba={"signals": signals}),
        state_dir=tmp_path,
        progress=False,
    )
    for entry in record["epochs"]:
        assert entry["lr"] == 0.01
        assert entry["decision"] == "hold"
        assert entry["batch_size"] == 64
        assert entry["signals"]["lr"] == 123.0
        assert entry["signals"]["decision"] == 7.0
        assert entry["signals"]["batch_size"] == 1.0


def test_schema_1_records_are_read_in_the_current_shape(tmp_path):
    from deba_pipeline.core.record import RECORD_SCHEMA, upgrade
    from deba_pipeline.execution.study import read_records

    old = {
        "schema": 1,
        "arch": "a",
        "dataset": "d",
        "method": "deba",
        "variant": "baseline",
        "seed": 2,
        "final_test_accuracy": 50.0,
        "train_time_s": 1.0,
        "epochs": [
            {
                "epoch": 1,
                "batch_size": 64,
                "lr": 0.01,
                "train_loss": 2.0,
                "decision": "hold",
                "epoch_time_s": 1.0,
                "grad_variance": 0.5,
                "grad_norm_variation": None,
                "grad_cosine": 0.9,
                "grad_norm_var": 0.1,
            }
        ],
    }
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "not_a_record.json").write_text('{"thresholds": 1}')
    [read] = read_records(tmp_path)
    assert read["schema"] == RECORD_SCHEMA == 2
    assert read["epochs"] == [
        {
            "epoch": 1,
            "batch_size": 64,
            "lr": 0.01,
            "train_loss": 2.0,
            "decision": "hold",
            "epoch_time_s": 1.0,
            "grad_norm_var": 0.1,
            "signals": {"grad_variance": 0.5, "grad_norm_variation": None, "grad_cosine": 0.9},
        }
    ]
    assert upgrade(read) is read  # the current schema passes through unchanged


def test_a_resumed_run_is_one_wandb_run(tmp_path, monkeypatch):
    class Stop(Exception):
        pass

    real = loop.Trainer.step_scheduler

    def stop_after_two(self, result):
        if result.epoch > 2:
            raise Stop
        return real(self, result)

    tracking = {"wandb": "offline", "project": "t"}
    spec = tiny_spec()
    monkeypatch.setattr(loop.Trainer, "step_scheduler", stop_after_two)
    with pytest.raises(Stop):
        one_run.train(
            spec,
            state_dir=tmp_path,
            tracking=tracking,
            progress=False,
            experiment="study 2026-12-01 10:00:00",
        )
    monkeypatch.setattr(loop.Trainer, "step_scheduler", real)
    one_run.train(
        spec,
        state_dir=tmp_path,
        tracking=tracking,
        progress=False,
        experiment="study 2026-12-01 11:30:00",
    )  # resumed by a later invocation
    pieces = [
        read_offline_run(p) for p in sorted((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    ]
    # `wandb sync` joins the pieces into one run by its id, in the group where it began
    assert [p["run"] for p in pieces] == [
        {"id": spec.key(), "group": "study 2026-12-01 10:00:00"}
    ] * 2
    assert [[row["epoch"] for row in p["history"] if "epoch" in row] for p in pieces] == [
        [1, 2],
        [3, 4],
    ]


def test_an_unreachable_wandb_server_falls_over_to_offline_with_the_same_id(tmp_path, monkeypatch):
    from deba_pipeline.engine import tracking

    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(tracking, "INIT_TIMEOUT_S", 3)
    monkeypatch.setattr(tracking, "_warned", False)
    with heard(tracking.log) as lines:
        tracker = tracking.Tracker(
            "online",
            "p",
            "g",
            "a/digits/deba/2",
            {"variant": "b"},
            str(tmp_path),
            run_id="runkey123",
        )
    try:
        assert tracker.mode == "offline"
        assert tracker.run is not None
        assert tracker.run.id == "runkey123"
    finally:
        tracker.finish()
    assert re.search("W&B could not start .* logging offline instead", lines[0])
    assert lines[1] == "a/digits/deba/2: logging to W&B offline."
    assert list((tmp_path / "wandb").glob("offline-run-*-runkey123"))
    # the next run does not wait for the server again, and says so in its own line
    with heard(tracking.log) as lines:
        tracker = tracking.Tracker(
            "online",
            "p",
            "g",
            "a/digits/deba/7",
            {"variant": "b"},
            str(tmp_path),
            run_id="runkey456",
        )
    tracker.finish()
    assert tracker.mode == "offline"
    assert len(lines) == 1
    assert lines[0].startswith("a/digits/deba/7: W&B did not answer for an earlier run (")


def test_a_run_reports_where_it_stands_after_each_epoch():
    from deba_pipeline.engine import tracking

    where = tracking.Progress("a/digits/deba/2", epochs=4, start=1, lines=True, every_s=0.0)
    entries = [{"epoch": e, "test_accuracy": 90.0 + e, "batch_size": 64} for e in (2, 3, 4)]
    with heard(tracking.log) as lines:
        fields = [where.update(entry) for entry in entries]
    # resumed after epoch 1: the pace is read from the epochs this process trained
    assert [
        f["remaining_s"] == pytest.approx(f["elapsed_s"] / (e - 1) * (4 - e))
        for f, e in zip(fields, (2, 3, 4))
    ] == [True] * 3
    assert fields[-1]["remaining_s"] == 0.0
    assert [line.split(",")[:3] for line in lines] == [  # none at the last epoch: the run's line
        ["a/digits/deba/2: epoch 2/4", " accuracy 92.00%", " batch 64"],
        ["a/digits/deba/2: epoch 3/4", " accuracy 93.00%", " batch 64"],
    ]
    assert lines[0].endswith(" to go")
    assert " elapsed, about " in lines[0]
    quiet = tracking.Progress("x", epochs=4, start=0, lines=False, every_s=0.0)
    with heard(tracking.log) as lines:
        quiet.update(entries[0])
    assert lines == []
