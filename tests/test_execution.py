"""Issue 12: runs as Ray tasks. One embedded Ray session (4 CPUs and 2 GPUs declared, so a CPU
machine simulates a GPU node) serves every test here; test_ray_cluster.py joins a cluster."""

import json
import os
import sys

import pytest
from omegaconf import OmegaConf

from deba_pipeline.core.errors import DebaError
from deba_pipeline.execution import execute

from helpers import stage, tiny_cfg, tiny_spec, without_times

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow  # real processes: torchrun, Ray

LOGGER = """
import os, time
from pathlib import Path
from deba_pipeline import Signal, hookimpl

LOG = Path({log!r})
class Logged(Signal):
    name = 'logged'
    def compute(self, obs):
        with LOG.open('a') as f:
            f.write(f"{{os.getpid()}} {{obs.epoch}} {{time.time()}}\\n")
        if obs.epoch == 2 and not Path({flag!r}).exists():
            Path({flag!r}).touch()
            {die}
        return 1.0
@hookimpl
def register_signals(register):
    register(Logged)
"""


@pytest.fixture(scope="module")
def ray_session():
    ray.init(
        address="local",
        num_cpus=4,
        num_gpus=2,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


def ray_cfg(tmp_path, **execution):
    cfg = tiny_cfg()
    cfg.tracking.dir = str(tmp_path / "state")
    cfg.execution = OmegaConf.merge(
        cfg.execution, {"backend": "ray", "gpus_per_run": 0, "cpus_per_run": 1, **execution}
    )
    return cfg


def logged_spec(tmp_path, seed=2, die="pass", epochs=3):
    plugin = tmp_path / "plugins" / "logged.py"
    plugin.parent.mkdir(exist_ok=True)
    plugin.write_text(
        LOGGER.format(log=str(tmp_path / "log.txt"), flag=str(tmp_path / "flag"), die=die)
    )
    return tiny_spec(
        seed=seed,
        train={"epochs": epochs},
        deba={
            "plugins": [str(plugin)],
            "signals": ["grad_variance", "grad_norm_variation", "loss_variation", "logged"],
        },
    )


def collect(written):
    return lambda spec, record: written.append((spec.name, record))


def test_ray_gives_every_run_the_same_record_as_local(ray_session, tmp_path):
    import torch

    threads = torch.get_num_threads()
    specs = [tiny_spec(seed=s, train={"epochs": 3}) for s in (2, 42)] + [
        tiny_spec("fixed", seed=2, train={"epochs": 3})
    ]
    try:
        local = execute(ray_cfg(tmp_path / "a", backend="local"), specs, lambda *a: None)
    finally:
        torch.set_num_threads(threads)
    written = []
    remote = execute(ray_cfg(tmp_path / "b"), specs, collect(written))
    assert all(
        r.pop("execution") == {"backend": "ray", "gpus": 0.0, "cpus": 1, "shared_machine": True}
        for r in remote
    )  # 4 CPUs a node
    assert [without_times(r) for r in remote] == [without_times(r) for r in local]
    assert sorted(name for name, _ in written) == sorted(s.name for s in specs)


def test_a_failing_run_fails_the_stage_after_the_others_are_written(ray_session, tmp_path):
    good = [tiny_spec(seed=s, train={"epochs": 2}) for s in (2, 42)]
    bad = tiny_spec(seed=7, train={"epochs": 2, "batch_size": 4096})  # larger than digits
    bad.deba.max_batch = 8192
    written = []
    with pytest.raises(DebaError) as info:
        execute(ray_cfg(tmp_path), [good[0], bad, good[1]], collect(written))
    lines = str(info.value).splitlines()
    assert lines[0].startswith("1 of 3 runs failed (the other records are written")
    assert lines[1].startswith(f"  {bad.name}: DebaError: ")
    assert "larger than the training" in lines[1]
    assert sorted(name for name, _ in written) == sorted(s.name for s in good)
    again = []  # a rerun trains only what is missing: the good ones come from the cache
    with pytest.raises(DebaError, match="1 of 3 runs failed"):
        execute(ray_cfg(tmp_path), [good[0], bad, good[1]], collect(again))
    assert sorted(name for name, _ in again) == sorted(s.name for s in good)


def test_a_killed_worker_is_retried_and_its_run_resumes(ray_session, tmp_path):
    spec = logged_spec(tmp_path, die="os._exit(9)")
    [record] = execute(ray_cfg(tmp_path, max_retries=1), [spec], lambda *a: None)
    epochs = [int(line.split()[1]) for line in (tmp_path / "log.txt").read_text().splitlines()]
    assert epochs == [1, 2, 2, 3]  # killed in epoch 2; the retry resumed after epoch 1
    pids = {line.split()[0] for line in (tmp_path / "log.txt").read_text().splitlines()}
    assert len(pids) == 2
    assert [e["epoch"] for e in record["epochs"]] == [1, 2, 3]
    import torch

    threads = torch.get_num_threads()
    try:  # the same run straight through, here (the flag is set: nobody dies)
        [straight] = execute(
            ray_cfg(tmp_path / "straight", backend="local"), [spec], lambda *a: None
        )
    finally:
        torch.set_num_threads(threads)
    assert record.pop("execution")["backend"] == "ray"
    assert without_times(record) == without_times(straight)


def test_on_two_gpus_two_runs_are_in_flight_while_runs_remain(ray_session, tmp_path):
    specs = [logged_spec(tmp_path, seed=s, epochs=4) for s in (1, 2, 3, 4)]
    (tmp_path / "flag").touch()  # nobody dies here
    execute(ray_cfg(tmp_path, gpus_per_run=1), specs, lambda *a: None)
    spans, current = [], {}  # a worker process may run several runs, one after another
    for line in (tmp_path / "log.txt").read_text().splitlines():
        pid, epoch, at = line.split()
        if epoch == "1":
            current[pid] = []
            spans.append(current[pid])
        current[pid].append(float(at))
    assert len(spans) == 4
    events = sorted([(min(t), 1) for t in spans] + [(max(t), -1) for t in spans])
    in_flight, most = 0, 0
    for _, change in events:
        in_flight += change
        most = max(most, in_flight)
    assert most == 2  # 4 CPUs but 2 GPUs: never more than two, and two at once
    records = [
        json.loads(p.read_text())["content"]  # a kept entry: checksum, identity, record
        for p in (tmp_path / "state" / "finished").glob("*")
    ]
    assert len(records) == 4
    assert all(not r["execution"]["shared_machine"] for r in records)


def test_a_run_of_two_processes_asks_ray_for_two_devices(ray_session, tmp_path):
    spec = tiny_spec("fixed", train={"epochs": 2, "processes": 2})
    [record] = execute(ray_cfg(tmp_path, gpus_per_run=1), [spec], lambda *a: None)
    assert record["world_size"] == 2  # torchrun inside the task: 2 processes, 2 of the 2 GPUs
    assert record["execution"] == {
        "backend": "ray",
        "gpus": 2.0,
        "cpus": 2,
        "shared_machine": False,
    }


def _placement():
    import torch

    return (
        ray.get_runtime_context().get_assigned_resources(),
        torch.get_num_threads(),
        os.getcwd(),
        os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"),
    )


def test_a_step_time_table_is_measured_with_a_whole_device(ray_session, tmp_path):
    from ray import cloudpickle

    from deba_pipeline.execution.steptime import measure_apart

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tests/ is not on a worker's path
    [(cpu, threads, cwd, cache)] = measure_apart(ray_cfg(tmp_path), _placement, [()])
    assert cpu == {"CPU": 1.0}
    assert threads == 1
    assert cwd == os.getcwd()
    assert cache == "16384"  # oneDNN holds every size's kernels, set in a fresh worker
    both = measure_apart(ray_cfg(tmp_path, gpus_per_run=0.5), _placement, [(), ()])
    assert [b[0] for b in both] == [{"GPU": 1.0, "CPU": 1.0}] * 2  # a whole GPU, not a share


def test_a_local_step_time_table_holds_every_size_s_onednn_kernels(monkeypatch, tmp_path):
    """oneDNN's default cache (1,024 primitives) held 8 of test_efficientnet's sizes, not 17:
    an evicted size compiled its kernels again on its first step, ~25 ms the table took for its
    epoch start. The stage sets a larger cache before anything runs, and leaves a user's own."""
    import torch

    from deba_pipeline.execution.steptime import measure_apart

    cfg = tiny_cfg(execution={"cpus_per_run": torch.get_num_threads()})  # as this process has
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    seen = measure_apart(cfg, lambda: os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"), [()])
    assert seen == ["16384"]
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "4096")
    assert measure_apart(cfg, lambda: os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"], [()]) == [
        "4096"
    ]


def _started(label):
    import time

    return label, time.time()


def test_ray_starts_the_longest_job_first(ray_session, tmp_path):
    from ray import cloudpickle

    from deba_pipeline.execution import longest_first
    from deba_pipeline.execution.steptime import measure_apart

    assert longest_first(4, [1.0, 3.0, 2.0, 3.0]) == [1, 3, 2, 0]
    assert longest_first(3, None) == [0, 1, 2]
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # each job holds all 4 of the session's CPUs, so they run one at a time, in Ray's order
    done = measure_apart(
        ray_cfg(tmp_path, cpus_per_run=4),
        _started,
        [("a",), ("b",), ("c",)],
        expected_s=[1.0, 30.0, 2.0],
    )
    assert [label for label, _ in done] == ["a", "b", "c"]  # results in the order asked
    assert [label for label, _ in sorted(done, key=lambda d: d[1])] == ["b", "c", "a"]


def test_a_run_is_expected_to_cost_its_cells_fixed_epoch_times_its_epochs():
    from deba_pipeline.execution.study import expected_seconds

    def record(method, arch, *times):
        return {
            "method": method,
            "arch": arch,
            "dataset": "digits",
            "epochs": [{"epoch_time_s": t} for t in times],
        }

    profiled = [
        record("fixed", "test_vit", 0.3, 0.5, 0.4),
        record("fixed", "test_vit", 9.0),
        record("deba", "test_resnet", 7.0),
        record("fixed", "test_resnet", 0.1, 0.2),
    ]
    specs = [
        tiny_spec(arch="test_vit"),
        tiny_spec(arch="test_resnet"),  # 4 epochs each
        tiny_spec(arch="test_efficientnet"),
    ]
    # medians: test_vit of 0.3, 0.5, 0.4, 9.0 is 0.45; test_resnet's DEBA run does not count
    assert expected_seconds(specs, profiled) == pytest.approx([1.8, 0.6, 0.0])
    assert expected_seconds(specs, profiled[2:3]) is None


def test_a_stage_with_every_run_finished_starts_no_ray(tmp_path, monkeypatch):
    from deba_pipeline.execution import ray_tasks

    cfg, spec = ray_cfg(tmp_path), tiny_spec("fixed", train={"epochs": 2})
    cfg.execution.backend = "local"
    [record] = execute(cfg, [spec], lambda *a: None)
    monkeypatch.setattr(ray_tasks, "session", lambda *a: pytest.fail("Ray was started"))
    cfg.execution.backend = "ray"
    assert execute(cfg, [spec], lambda *a: None) == [record]


def test_a_training_stage_sends_every_architecture_in_one_pool(tmp_path, monkeypatch):
    from deba_pipeline.cli import main

    from helpers import small_params

    pools = []
    monkeypatch.setattr(
        "deba_pipeline.execution.execute",
        lambda cfg, specs, *rest: pools.append([s.name for s in specs]) or [],
    )
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        small_params(
            {"study": {"archs": ["test_resnet", "test_vit"]}, "deba": {"thresholds": "fixed"}}
        )
    )
    assert main(stage("train")) == 0
    assert main(stage("ablate")) == 0
    assert main(stage("train", "--arch", "test_vit")) == 0
    train, ablate, one = pools
    assert (
        {n.split("/")[0] for n in train}
        == {n.split("/")[0] for n in ablate}
        == {"test_resnet", "test_vit"}
    )
    assert {n.split("/")[0] for n in one} == {"test_vit"}
    assert len(one) == len(train) // 2


def test_the_report_names_measured_times_from_packed_runs():
    from deba_pipeline.report.text import packed_note

    records = [
        {"execution": {"shared_machine": True}},
        {"execution": {"shared_machine": False}},
        {},
    ]
    assert packed_note(records) == (
        " The measured times of 1 of 3 runs come from runs that shared a "
        "machine with others (several runs side by side on one machine "
        "or device); the modelled times do not depend on it."
    )
    assert packed_note(records[1:]) == ""
