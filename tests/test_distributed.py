"""docs/cluster.md: one run on W processes with torchrun and DDP (gloo on the CPU). Each test launches
real torchrun processes, so each costs a few seconds. The micro preset with two processes a run
goes through `dvc repro` in test_own_data.py, on an image folder with a model of one's own."""

import json
import os

import pytest

from deba_pipeline.core.errors import ConfigError, DebaError
from deba_pipeline.execution.one_run import train

from helpers import stage, tiny_cfg, tiny_spec, without_times

pytestmark = pytest.mark.slow  # real processes: torchrun, Ray

VIT = {"model_kwargs": {"test_vit": {"patch_size": 4}}}  # LayerNorm, no BatchNorm

RULE = """
import os
from pathlib import Path
from deba_pipeline import Rule, hookimpl
class Logged(Rule):
    name = 'logged'
    def decide(self, values, windows):
        decision = {decide}
        with Path({log!r}).open('a') as f:
            f.write(f"{{os.environ['RANK']}} {{len(windows['grad_variance'])}} {{decision}} "
                    f"{{values['grad_variance']!r}}\\n")
        if len(windows['grad_variance']) == 3 and os.environ['RANK'] == '0' \\
                and not Path({flag!r}).exists():
            Path({flag!r}).touch()
            os._exit(9)
        return decision
@hookimpl
def register_rules(register):
    register(Logged)
"""


def ranked_spec(
    tmp_path,
    decide="'increase' if len(windows['grad_variance']) % 2 else 'rollback'",
    flag=True,
    **train,
):
    plugin = tmp_path / "logged.py"
    plugin.write_text(
        RULE.format(decide=decide, log=str(tmp_path / "log.txt"), flag=str(tmp_path / "flag"))
    )
    if flag:
        (tmp_path / "flag").touch()  # nobody dies
    return tiny_spec(
        arch="test_vit",
        train={"epochs": 5, "processes": 2, **VIT, **train},
        deba={"plugins": [str(plugin)], "rule": "logged", "cooldown": 0, "window": "full"},
    )  # a window as long as the epochs so far


def test_two_processes_at_half_the_batch_each_match_one_process(tmp_path):
    def spec(processes):
        return tiny_spec(
            "fixed", arch="test_vit", train={"epochs": 3, "processes": processes, **VIT}
        )

    one = train(spec(1), state_dir=tmp_path / "one", progress=False)
    two = train(spec(2), state_dir=tmp_path / "two", progress=False)
    assert one["world_size"] == 1
    assert two["world_size"] == 2
    assert [e["batch_size"] for e in two["epochs"]] == [64, 64, 64]
    for a, b in zip(one["epochs"], two["epochs"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["signals"]["grad_variance"] == pytest.approx(
            a["signals"]["grad_variance"], rel=1e-4
        )
        assert b["steps"] == a["steps"]  # every sample once an epoch, across the ranks
    assert abs(one["final_test_accuracy"] - two["final_test_accuracy"]) <= 0.3


def test_every_rank_decides_alike_and_the_ladder_is_rounded_to_the_processes(tmp_path):
    record = train(ranked_spec(tmp_path), state_dir=tmp_path / "state", progress=False)
    lines = [line.split() for line in (tmp_path / "log.txt").read_text().splitlines()]
    by_rank = {rank: [line[1:] for line in lines if line[0] == rank] for rank in ("0", "1")}
    assert by_rank["0"] == by_rank["1"]
    assert len(by_rank["0"]) == 4
    # docs/cluster.md, rounded down to a multiple of 2 after each update: after epoch 2 ⌊0.8·64⌋ = 51
    # → 50, after epoch 3 ⌊1.5·50⌋ = 75 → 74, after epoch 4 ⌊0.8·74⌋ = 59 → 58
    assert [e["batch_size"] for e in record["epochs"]] == [64, 64, 50, 74, 58]
    assert record["world_size"] == 2


def test_processes_that_disagree_stop_the_run_with_a_clear_error(tmp_path):
    spec = ranked_spec(tmp_path, decide="'increase' if os.environ['RANK'] == '1' else 'hold'")
    with pytest.raises(
        DebaError,
        match=r"its 2-process run failed: process [01]: .*the processes "
        r"disagree at epoch 2 \(rank 0: hold to 64, rank 1: "
        r"increase to 96\)",
    ):
        train(spec, state_dir=tmp_path / "state", progress=False)


def test_an_interrupted_two_process_run_resumes_to_the_same_record(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = train(
        ranked_spec(tmp_path / "a"), state_dir=tmp_path / "a" / "state", progress=False
    )
    spec = ranked_spec(tmp_path / "b", flag=False)
    with pytest.raises(
        DebaError, match="2-process run failed: process 0 ended with exit status 9 without an error"
    ):
        train(spec, state_dir=tmp_path / "b" / "state", progress=False)
    resumed = train(spec, state_dir=tmp_path / "b" / "state", progress=False)
    epochs = [
        int(line.split()[1])
        for line in (tmp_path / "b" / "log.txt").read_text().splitlines()
        if line.startswith("0 ")
    ]
    assert epochs == [2, 3, 3, 4, 5]  # rank 0 died deciding epoch 3; the rerun began there
    same = lambda r: {k: v for k, v in without_times(r).items() if k not in ("key", "config")}  # noqa: E731
    assert same(resumed) == same(straight)  # the two differ only in their plugin file's path


def test_a_killed_process_is_named_not_the_others_connection_errors(tmp_path):
    """The rank that dies is the cause; the other rank's gloo error ("connection closed by
    peer") only follows from it."""
    spec = ranked_spec(tmp_path, decide="'hold'")
    plugin = tmp_path / "logged.py"
    plugin.write_text(
        plugin.read_text().replace(
            "        return decision",
            "        if os.environ['RANK'] == '1':\n"
            "            import signal\n            os.kill(os.getpid(), signal.SIGKILL)\n"
            "        return decision",
        )
    )
    with pytest.raises(DebaError) as failed:
        train(spec, state_dir=tmp_path / "state", progress=False)
    message = str(failed.value)
    assert (
        "its 2-process run failed: process 1 was killed by SIGKILL (each process's output: "
        in message
    ), message
    assert "gloo" not in message, message
    assert "Connection" not in message, message


@pytest.mark.parametrize(
    ("train_cfg", "message"),
    [
        (
            {"processes": 2, "batch_size": 65},
            "`train.batch_size` = 65 is not allowed: it must be a "
            "multiple of train.processes = 2, at least 2",
        ),
        (
            {"processes": 4, "batch_size": 2},
            "`train.batch_size` = 2 is not allowed: it must be a "
            "multiple of train.processes = 4, at least 4",
        ),
        ({"processes": 0}, "`train.processes` = 0 is not allowed: it must be an integer >= 1"),
    ],
)
def test_a_global_batch_the_processes_cannot_share_is_refused(train_cfg, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny_cfg(train=train_cfg)


def test_more_processes_than_this_machine_has_is_refused(tmp_path):
    from deba_pipeline.execution.preflight import preflight

    cores = os.cpu_count()
    cfg = tiny_cfg(
        train={"processes": 2 * cores, "batch_size": 4 * cores}, deba={"min_batch": 2 * cores}
    )
    with pytest.raises(
        ConfigError,
        match=f"`train.processes` = {2 * cores} is not allowed here: "
        f"this machine has {cores} CPU cores, one per process",
    ):
        preflight(cfg, "params.yaml")


def test_a_run_launched_by_hand_with_rendezvous_flags_is_taken_by_its_stage(
    tmp_path, monkeypatch, capsys
):
    """README: over several machines each runs torchrun with --nnodes and --rdzv-endpoint and
    `deba run NAME`; here one machine plays them all."""
    import subprocess
    import sys

    from deba_pipeline.cli import main

    from helpers import small_params

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        small_params({"train": {"processes": 2}, "deba": {"thresholds": "fixed"}})
    )
    port = 29400 + os.getpid() % 500
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "1",
            "--nproc-per-node",
            "2",
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"127.0.0.1:{port}",
            "--rdzv-id",
            "t",
            "-m",
            "deba_pipeline.cli",
            "run",
            "test_resnet/digits/fixed-profile/2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert main(stage("profile")) == 0
    assert "test_resnet/digits/fixed-profile/2: reused the finished run" in capsys.readouterr().out
    record = json.loads(next((tmp_path / "runs").rglob("*.json")).read_text())
    assert record["world_size"] == 2
    assert main(["run", "test_resnet/digits/fixed/3"]) == 2
    assert capsys.readouterr().err.startswith(
        "deba: error: no run named 'test_resnet/digits/"
        "fixed/3' in this study: a name is ARCH/DATASET/"
    )


WRITE_SPY = """
import os
from pathlib import Path
from deba_pipeline.engine import files
LOG = Path({log!r})
with LOG.open('a') as f:
    f.write(f"{{os.environ.get('RANK', '0')}} loaded\\n")
real = files._atomic
def spy(path, write):
    with LOG.open('a') as f:
        f.write(f"{{os.environ.get('RANK', '0')}} wrote {{path}}\\n")
    return real(path, write)
files._atomic = spy  # every record, checkpoint and kept file is written through it
"""


def test_only_rank_0_writes_records_checkpoints_and_wandb(tmp_path):
    spy = tmp_path / "spy.py"
    spy.write_text(WRITE_SPY.format(log=str(tmp_path / "writes.txt")))
    spec = tiny_spec(
        "fixed",
        arch="test_vit",
        train={"epochs": 3, "processes": 2, **VIT},
        deba={"plugins": [str(spy)]},
    )
    train(
        spec,
        state_dir=tmp_path / "state",
        tracking={"wandb": "offline", "project": "t"},
        progress=False,
    )
    lines = (tmp_path / "writes.txt").read_text().splitlines()
    assert {"0 loaded", "1 loaded"} <= set(lines)  # the spy watched both ranks
    writes = [line for line in lines if " wrote " in line]
    assert any("checkpoints" in w for w in writes)
    assert any("finished" in w for w in writes)
    assert {w.split()[0] for w in writes} == {"0"}
    assert len(list((tmp_path / "state" / "wandb" / "wandb").glob("offline-run-*"))) == 1


def test_sync_batchnorm_is_refused_where_pytorch_cannot_run_it(tmp_path):
    from omegaconf import OmegaConf

    from deba_pipeline.config import merge
    from deba_pipeline.engine import ddp as distributed

    with pytest.raises(
        ConfigError,
        match=r"`train.sync_batchnorm` = True is not allowed: it "
        r"must be false on the CPU \(PyTorch's SyncBatchNorm "
        r"runs on GPUs only",
    ):
        merge(
            OmegaConf.create({"train": {"processes": 2, "device": "cpu", "sync_batchnorm": True}})
        )
    import torch

    with pytest.raises(DebaError, match="train.sync_batchnorm needs GPUs"):
        distributed.sync_batchnorm(torch.nn.BatchNorm2d(3), torch.device("cpu"), "r")
