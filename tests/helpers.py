"""The tests' shared helpers: small configs (tiny timm models on the bundled digits data), a
fresh copy of the project, a record less its times, a mid-run checkpoint, and a reader of an
offline W&B run's log."""

import json
import shutil
import struct
import subprocess
import time
from pathlib import Path

from omegaconf import OmegaConf

from deba_pipeline.config import merge
from deba_pipeline.execution.study import run_spec

# A small study for tests that write a params file: the defaults are the paper's grid.
SMALL_STUDY = {
    "study": {
        "name": "test",
        "archs": ["test_resnet"],
        "datasets": ["digits"],
        "seeds": [2],
        "profile_seeds": [2],
    },
    "train": {"epochs": 2, "device": "cpu"},
    "deba": {"thresholds": "calibrated"},
    "ablate": {"dataset": "digits"},
    "tracking": {"wandb": "disabled"},
}


def small_params(overrides: dict) -> str:
    """params.yaml text: SMALL_STUDY with `overrides` merged over it."""
    return OmegaConf.to_yaml(OmegaConf.merge(SMALL_STUDY, overrides))


def tiny_cfg(**sections):
    base = {
        "study": {"archs": ["test_resnet"], "seeds": [2], "profile_seeds": [2]},
        "train": {"epochs": 4, "device": "cpu"},
        "deba": {
            "thresholds": "fixed",
            "theta_stab": 0.55,
            "theta_conf": 1.0,
            "cooldown": 1,
            "window": 3,
        },
        "tracking": {"wandb": "disabled"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return merge(OmegaConf.create(base))


def tiny_spec(method="deba", variant="baseline", seed=2, arch="test_resnet", **sections):
    return run_spec(
        tiny_cfg(**sections), arch, "digits", seed, method, variant, profile=(variant == "profile")
    )


def stage(name: str, *extra: str) -> list:
    """`deba NAME ...` as dvc.yaml runs it (the paths are its), for main(): plus `extra`."""
    import shlex
    from pathlib import Path

    import yaml

    stages = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())
    return shlex.split(stages["stages"][name]["cmd"])[1:] + list(extra)


ROOT = Path(__file__).resolve().parents[1]


BRIEF_TIMING = {"repeats": 3, "steps": 1}  # for tests that never read the step-time tables


def copy_project(dest: Path, brief_timing: bool = False) -> Path:
    """The project's tracked files in `dest`, as a fresh clone would have them, switched to the
    micro preset with `deba preset micro`; `brief_timing` measures its step-time table in a few
    seconds instead of about twenty (the records do not depend on it)."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    files += [
        str(p.relative_to(ROOT))
        for p in (ROOT / ".dvc").rglob("*")
        if p.is_file() and "tmp" not in p.parts and "cache" not in p.parts
    ]
    for rel in set(files):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    (dest / "dvc.lock").unlink(missing_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(
        ["deba", "preset", "micro", "--force"], cwd=dest, check=True, capture_output=True
    )  # as a user switches presets
    (dest / "params.yaml.bak").unlink(missing_ok=True)
    if brief_timing:
        params = OmegaConf.load(dest / "params.yaml")
        params.timing = OmegaConf.merge(params.timing, BRIEF_TIMING)
        OmegaConf.save(params, dest / "params.yaml")
    return dest


def new_process() -> None:
    """Forget what a new `deba` process would not have: plugin files loaded by path, and the
    code digest of the run keys (cached per process)."""
    from deba_pipeline.core import plugins
    from deba_pipeline.engine import spec

    for name, _ in plugins.pm.list_name_plugin():
        if name.startswith("file:"):
            plugins.pm.unregister(name=name)
    spec._digest.cache_clear()


def without_times(record):
    """A record less its wall-clock times and placement: what two runs of one spec share."""
    from deba_pipeline.core.record import TIMING_KEYS

    record = {
        k: v
        for k, v in record.items()
        if k not in ("train_time_s", "eval_time_s", "step_probe", "execution")
    }
    record["epochs"] = [
        {k: v for k, v in e.items() if k not in TIMING_KEYS} for e in record["epochs"]
    ]
    return record


def study_records(root) -> dict:
    """{path under runs/: record less its times} of a workspace: what two reproductions share."""
    import json

    return {
        str(p.relative_to(root)): without_times(json.loads(p.read_text()))
        for p in sorted((Path(root) / "runs").rglob("*.json"))
        if "schema" in p.read_text()
    }


def checkpoint_of(spec, state_dir, epochs_before_stop=2):
    """Leave a real mid-run checkpoint of `spec` behind, as a killed run would."""
    import pytest

    from deba_pipeline.engine import loop
    from deba_pipeline.execution import one_run

    class Stop(Exception):
        pass

    real = loop.Trainer.step_scheduler

    def stop_after(self, result):
        if result.epoch > epochs_before_stop:
            raise Stop
        return real(self, result)

    loop.Trainer.step_scheduler = stop_after
    try:
        with pytest.raises(Stop):
            one_run.train(spec, state_dir=state_dir, progress=False)
    finally:
        loop.Trainer.step_scheduler = real
    return next((Path(state_dir) / "checkpoints").glob("*.pt"))


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
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        pending += data[pos + 7 : pos + 7 + length]
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
            history.append(
                {
                    item.key or ".".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
        elif kind == "summary":
            summary.update(
                {
                    item.key or ".".join(item.nested_key): json.loads(item.value_json)
                    for item in record.summary.update
                }
            )
    return {"history": history, "summary": summary, "complete": complete, "run": run}


def stand_in_table(sizes, reference=64, seconds=0.01, repeats=3) -> dict:
    """A step-time table as `timing.steptime.measure` returns one, for stage tests that do not
    time anything: every size's rounds take `seconds` × size / reference (the reference beside
    each at `seconds`), its numbers computed by the real estimate."""
    from deba_pipeline.timing.estimates import estimate

    rounds = {}
    for size in sorted(set(sizes) | {reference}):
        step = seconds * size / reference
        rounds[str(size)] = {
            "fastest_s": [step] * repeats,
            "typical_s": [step] * repeats,
            "starts_s": [0.001] * repeats,
        }
        if size != reference:
            rounds[str(size)]["beside_s"] = [seconds] * repeats
    return {
        "device": "cpu",
        "estimate": "paired",
        "reference": reference,
        "rounds": rounds,
        **estimate(rounds, reference, "paired"),
        "order": [int(s) for _ in range(repeats) for s in rounds],
        "out_of_memory": [],
        "beyond_data": [],
        "extra_rounds": 0,
        "slow_throughout": False,
        "measured_at": "stand-in",
    }


def record_of(method, seed, epochs, accuracy=90.0, **fields) -> dict:
    """A run record of architecture "a" on dataset "d", as the report's tests build them: their
    `epochs`, a train time that is the epochs' sum, and `fields` over the rest."""
    return {
        "arch": "a",
        "dataset": "d",
        "method": method,
        "variant": "baseline",
        "seed": seed,
        "final_test_accuracy": accuracy,
        "train_time_s": sum(e.get("epoch_time_s", 0.0) for e in epochs),
        "epochs": epochs,
        **fields,
    }
