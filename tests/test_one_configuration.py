"""One configuration, one result: a run's numbers follow its params and the code that decides
them, not the machine's load or how many runs went at once; the local backend keeps every core
busy; only the code that decides a result is in the run key."""

import os
import shutil
import subprocess

import pytest

from deba_pipeline.core.errors import DebaError
from deba_pipeline.engine import spec as spec_module
from deba_pipeline.execution import execute, pool

from helpers import copy_project, study_records, tiny_cfg, tiny_spec, without_times


def collect(written):
    return lambda spec, record: written.append(spec.name)


def test_a_runs_thread_count_is_in_its_key_and_its_record(tmp_path):
    one, two = tiny_spec(execution={"cpus_per_run": 1}), tiny_spec(execution={"cpus_per_run": 2})
    assert (one.threads, two.threads) == (1, 2)
    assert one.key() != two.key()
    assert tiny_spec(execution={"cpus_per_run": 1.5}).key() == one.key()  # 1.5 cores: 1 thread


@pytest.mark.parametrize(
    ("cores", "cpus", "world", "expected"),
    [(2, 1, 1, 2), (2, 2, 1, 1), (1, 1, 1, 1), (16, 1, 2, 8), (16, 3, 1, 5), (2, 4, 1, 1)],
)
def test_runs_at_once_are_the_usable_cores_over_a_runs_cores(
    monkeypatch, cores, cpus, world, expected
):
    monkeypatch.setattr(pool, "usable_cores", lambda: cores)
    monkeypatch.setattr(pool, "visible_gpus", lambda device: 0)
    assert pool.slots(tiny_cfg(execution={"cpus_per_run": cpus}), world) == (expected, [])


def test_on_gpus_each_slot_holds_its_own_devices(monkeypatch):
    monkeypatch.setattr(pool, "visible_gpus", lambda device: 8)
    assert pool.slots(tiny_cfg(), 1) == (8, [str(g) for g in range(8)])
    assert pool.slots(tiny_cfg(), 2) == (4, ["0,1", "2,3", "4,5", "6,7"])


@pytest.mark.slow  # trains a study's worth of runs: about 20 s on 2 cores
def test_side_by_side_runs_give_the_records_of_runs_one_after_another(tmp_path, monkeypatch):
    specs = [tiny_spec(seed=s, train={"epochs": 2}) for s in (2, 42)] + [
        tiny_spec("fixed", seed=2, train={"epochs": 2})
    ]
    monkeypatch.setattr(pool, "usable_cores", lambda: 1)
    alone = execute(tiny_cfg(tracking={"dir": str(tmp_path / "a")}), specs, lambda *a: None)
    monkeypatch.setattr(pool, "usable_cores", lambda: 2)
    written = []
    together = execute(tiny_cfg(tracking={"dir": str(tmp_path / "b")}), specs, collect(written))
    assert [r["execution"] for r in together] == [
        {"backend": "local", "cpus": 1, "gpus": 0, "shared_machine": True}
    ] * 3
    assert [without_times(r) for r in together] == [without_times(r) for r in alone]
    assert sorted(written) == sorted(s.name for s in specs)


@pytest.mark.slow  # a pool of spawned processes: seconds of start-up each
def test_a_failed_run_fails_the_stage_after_the_runs_in_flight_are_written(tmp_path, monkeypatch):
    good = [tiny_spec(seed=s, train={"epochs": 2}) for s in (2, 42)]
    bad = tiny_spec(seed=7, train={"epochs": 2, "batch_size": 4096})  # larger than digits
    bad.deba.max_batch = 8192
    monkeypatch.setattr(pool, "usable_cores", lambda: 2)
    written = []
    cfg = tiny_cfg(tracking={"dir": str(tmp_path)})
    with pytest.raises(DebaError) as info:
        execute(cfg, [bad, *good], collect(written))
    lines = str(info.value).splitlines()
    assert lines[0] == (
        "1 of 3 runs failed (every finished record is written; rerun the stage to train the rest):"
    )
    assert lines[1].startswith(
        f"  {bad.name}: {bad.name}: train.batch_size = 4096 is larger than the training set"
    )
    assert good[0].name in written  # in flight beside the failed one: finished and kept
    again = []  # a rerun trains what is missing and takes the rest from the cache
    with pytest.raises(DebaError, match="larger than the training set"):
        execute(cfg, [bad, *good], collect(again))
    assert sorted(again) == sorted(spec.name for spec in good)


def _edited_key(tmp_path, monkeypatch, relative: str, addition: str) -> tuple:
    """(run key, run key after `addition` is appended to `relative` of a copy of the package)."""
    copy = tmp_path / "project"
    shutil.copytree(spec_module.PROJECT / "deba_pipeline", copy / "deba_pipeline")
    monkeypatch.setattr(spec_module, "PROJECT", copy)
    spec_module._digest.cache_clear()
    spec = tiny_spec("fixed")
    before = spec.key()
    with open(copy / relative, "a") as file:
        file.write(addition)
    spec_module._digest.cache_clear()
    after = spec.key()
    spec_module._digest.cache_clear()
    return before, after


@pytest.mark.parametrize(
    "relative",
    [
        "deba_pipeline/engine/tracking.py",
        "deba_pipeline/timing/steptime.py",
        "deba_pipeline/engine/checkpoint.py",
    ],
)
def test_a_statement_outside_the_deciding_code_keeps_every_run_key(tmp_path, monkeypatch, relative):
    before, after = _edited_key(tmp_path, monkeypatch, relative, "UNUSED = 1\n")
    assert after == before


DECIDING = ["deba_pipeline/engine/loop.py", "deba_pipeline/core/rules/deba.py"]


@pytest.mark.parametrize("relative", DECIDING)
def test_a_statement_in_the_deciding_code_changes_the_run_key(tmp_path, monkeypatch, relative):
    before, after = _edited_key(tmp_path, monkeypatch, relative, "UNUSED = 1\n")
    assert after != before


@pytest.mark.parametrize("relative", DECIDING)
@pytest.mark.parametrize(
    ("addition", "kept"),
    [("# a comment\n", True), ("\n\n", True), ("def f():\n    'a docstring only'\n", False)],
)
def test_a_comment_or_docstring_in_the_deciding_code_keeps_the_run_key(
    tmp_path, monkeypatch, relative, addition, kept
):
    """A comment, blank lines or a reformatting decide nothing: the run key hashes the syntax
    tree without docstrings (a function added, even one holding only a docstring, is code)."""
    before, after = _edited_key(tmp_path, monkeypatch, relative, addition)
    assert (after == before) is kept


def _repro(workspace, *prefix):
    result = subprocess.run(
        [*prefix, "dvc", "repro"], cwd=workspace, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_the_records_are_the_same_on_an_idle_busy_or_one_core_machine(
    micro_study, busy_micro_study, tmp_path
):
    (reference, clean), (busy, beside) = micro_study, busy_micro_study
    assert clean.returncode == 0, clean.stderr
    assert beside.returncode == 0, beside.stderr
    pinned = copy_project(tmp_path / "pinned", brief_timing=True)
    result = subprocess.run(
        ["taskset", "-c", "0", "dvc", "repro"], cwd=pinned, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "at once" not in result.stdout  # one core: one run after another, in the stage
    if len(os.sched_getaffinity(0)) >= 2:  # the idle study's two train runs went side by side
        assert "training 2 runs, 2 at once (1 thread each on " in clean.stdout
    expected = study_records(reference)
    assert len(expected) == 7
    assert study_records(busy) == expected
    assert study_records(pinned) == expected


DIES = """
import os
from deba_pipeline import Signal, hookimpl
class Dies(Signal):
    name = 'dies'
    def compute(self, obs):
        os._exit(9)  # as the kernel's out-of-memory killer would end it
@hookimpl
def register_signals(register):
    register(Dies)
"""


@pytest.mark.slow  # a pool of spawned processes: seconds of start-up each
def test_a_run_whose_process_dies_is_named_and_the_others_are_kept(tmp_path, monkeypatch):
    plugin = tmp_path / "dies.py"
    plugin.write_text(DIES)
    dying = tiny_spec(
        seed=7,
        train={"epochs": 2},
        deba={
            "plugins": [str(plugin)],
            "signals": ["grad_variance", "grad_norm_variation", "loss_variation", "dies"],
        },
    )
    good = tiny_spec("fixed", seed=2, train={"epochs": 2})
    monkeypatch.setattr(pool, "usable_cores", lambda: 2)
    written = []
    with pytest.raises(DebaError) as info:
        execute(
            tiny_cfg(tracking={"dir": str(tmp_path / "state")}), [dying, good], collect(written)
        )
    assert f"  {dying.name}: its process, or another run's, died (killed, or out of memory)" in str(
        info.value
    )
    assert written == [good.name] or written == []  # the pool broke: kept if it had finished


@pytest.mark.parametrize(
    ("value", "on"),
    [
        ("1", True),
        ("yes", True),
        ("ON", True),
        ("0", False),
        ("no", False),
        ("", False),
        ("off", False),
    ],
)
def test_an_on_off_variable_reads_one_way(monkeypatch, value, on):
    from deba_pipeline.execution.process import flag

    monkeypatch.setenv("DEBA_DEBUG", value)
    assert flag("DEBA_DEBUG") is on


def test_an_on_off_variable_that_is_neither_is_refused_by_name(monkeypatch, capsys):
    from deba_pipeline.cli import main

    monkeypatch.setenv("DEBA_VERBOSE", "maybe")
    assert main(["plugins"]) == 2
    assert capsys.readouterr().err == (
        "deba: error: the environment variable DEBA_VERBOSE='maybe' is neither on nor off: set "
        "it to 1 (on) or 0 (off), or unset it.\n"
    )


def test_the_loop_used_as_a_library_leaves_the_process_threads_alone(tmp_path):
    import torch

    from deba_pipeline.engine.loop import Trainer

    before = torch.get_num_threads()
    spec = tiny_spec("fixed", train={"epochs": 2}, execution={"cpus_per_run": before + 1})
    record = Trainer(spec, tmp_path).run(progress=False)
    assert torch.get_num_threads() == before
    assert record["threads"] == before  # the record says what the run really computed with
