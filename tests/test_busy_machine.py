"""A busy machine: thread counts that fit a busy machine, each recorded,
and a report that names runs compared across different ones."""
import pytest
import torch

from deba_pipeline import execution
from deba_pipeline.execution.local import train
from deba_pipeline.report.text import mixed_threads

from helpers import tiny_spec


def _machine(monkeypatch, cores, busy_percent):
    import psutil
    monkeypatch.setattr(execution.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: cores)
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: busy_percent)
    monkeypatch.setattr(execution, "_cpu_seconds", lambda process: 0.0)  # ours: idle


def test_an_idle_machine_gives_a_run_every_core_without_a_word(monkeypatch):
    _machine(monkeypatch, cores=2, busy_percent=3.0)
    assert execution.threads_here() == (2, None)


def test_a_busy_machine_gives_a_run_the_free_cores_and_says_so_once(monkeypatch):
    _machine(monkeypatch, cores=2, busy_percent=50.0)   # a CPU burner holds one of two cores
    threads, note = execution.threads_here()
    assert threads == 1 and note == (
        "deba: this machine is busy: other processes keep about 1.0 of its 2 cores in use, so "
        "each run here uses 1 thread instead of 2 (a thread waiting on a busy core slows every "
        "step several-fold). Set execution.cpus_per_run to choose the count yourself.")
    _machine(monkeypatch, cores=8, busy_percent=100.0)  # never below one thread
    assert execution.threads_here()[0] == 1
    _machine(monkeypatch, cores=2, busy_percent=30.0)   # 0.6 of a core: a passing load
    assert execution.threads_here() == (2, None)
    assert execution.threads_here(cpus_per_run=3) == (3, None)  # the user's choice wins


def test_a_stage_says_once_that_the_machine_is_busy(monkeypatch, capsys):
    _machine(monkeypatch, cores=2, busy_percent=50.0)
    before = torch.get_num_threads()
    try:
        execution._set_threads(None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert capsys.readouterr().err.count("deba: this machine is busy") == 1


def test_each_record_carries_its_thread_count(tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        record = train(tiny_spec("fixed", train={"epochs": 2}), state_dir=tmp_path,
                       progress=False)
    finally:
        torch.set_num_threads(before)
    assert record["threads"] == 1


def _record(method, seed, threads, variant="baseline"):
    return {"arch": "a", "dataset": "d", "method": method, "variant": variant, "seed": seed,
            "threads": threads}


def test_the_report_names_every_run_compared_with_a_fixed_run_of_other_threads():
    records = [_record("fixed", 2, 2), _record("deba", 2, 1), _record("gns", 2, 2),
               _record("fixed", 42, 1), _record("deba", 42, 1),
               _record("deba", 2, 4, variant="cooldown2")]
    assert mixed_threads(records) == ["a/d seed 2: fixed 2 threads, deba 1",
                                      "a/d seed 2: fixed 2 threads, deba-cooldown2 4"]
    from deba_pipeline.report.text import _threads
    assert _threads(records).startswith(" **Compared across thread counts** (2 pairs): ")
    assert _threads([_record("fixed", 2, 2), _record("deba", 2, 2)]) == ""


@pytest.mark.parametrize("old", [None])
def test_records_without_a_thread_count_are_never_flagged(old):
    assert mixed_threads([_record("fixed", 2, old), _record("deba", 2, 1)]) == []


def test_the_report_flags_a_run_that_ended_at_chance():
    from deba_pipeline.report.text import _chance, at_chance
    runs = [{"arch": "a", "dataset": "d", "method": "fixed", "variant": "baseline", "seed": 2,
             "num_classes": 3, "final_test_accuracy": 38.9},     # 33.3 + 6.7 = 40.0: flagged
            {"arch": "a", "dataset": "d", "method": "deba", "variant": "baseline", "seed": 2,
             "num_classes": 3, "final_test_accuracy": 40.1},
            {"arch": "a", "dataset": "e", "method": "gns", "variant": "baseline", "seed": 2,
             "num_classes": 10, "final_test_accuracy": 18.9},    # 10 + 9 = 19.0: flagged
            {"arch": "a", "dataset": "e", "method": "gns", "variant": "baseline", "seed": 3,
             "final_test_accuracy": 5.0}]                        # no class count: not judged
    assert at_chance(runs) == ["a/d/fixed seed 2 (38.9%, chance 33.3%)",
                               "a/e/gns seed 2 (18.9%, chance 10.0%)"]
    assert _chance(runs).startswith(" **At chance** (2 runs ended less than a tenth of the way")


def test_a_trained_record_carries_its_class_count(tmp_path):
    record = train(tiny_spec("fixed", train={"epochs": 2}), state_dir=tmp_path, progress=False)
    assert record["num_classes"] == 10


def test_a_misspelt_dataset_gets_the_closest_name(tmp_path, monkeypatch, capsys):
    from deba_pipeline.cli import main

    from helpers import small_params
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({"study": {"datasets": ["digit"]}}))
    assert main(["validate", "params.yaml"]) == 2
    assert "the closest is 'digits'." in capsys.readouterr().err


def test_deba_plugins_lists_the_image_folders_of_the_params(tmp_path, monkeypatch, capsys):
    from deba_pipeline.cli import main

    from helpers import small_params
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({"data": {"folders": {"mine": "img"}}}))
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "image folders (data.folders of params.yaml):\n  mine" in out and "img" in out
