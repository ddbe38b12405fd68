"""Joining a Ray cluster the way the README's recipe does: `ray start --head`, then `dvc repro`
with `execution.address`. The head is started as a user's would be: Ray (2.59 and later) turns
token authentication on wherever a token is readable on its machine, and any `ray.init()` there
writes one to ~/.ray/auth_token. The client side sets no Ray variable, except to be wrong."""

import contextlib
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from deba_pipeline.execution.ray_session import refused_token

from helpers import copy_project, stage

pytest.importorskip("ray")

pytestmark = pytest.mark.slow  # real processes: torchrun, Ray
# a line Ray wrote: its C++ core's "[time W pid tid] gcs_client.cc:210: ..." or its Python
# loggers' "time\tWARNING authentication_token_setup.py:85 -- ..."
RAY_LOG_LINE = re.compile(r"\w+\.(cc|py):\d+|Token authentication")


def user_env(**extra) -> dict:
    """This machine's environment without anything a test run may have set for Ray or deba."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_", "DEBA_")) and k != "PYTEST_CURRENT_TEST"
    }
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory):
    """A head started by `ray start --head`, with this machine's token: (address, its log)."""
    if not (Path.home() / ".ray" / "auth_token").is_file():
        subprocess.run(
            ["ray", "get-auth-token", "--generate"], env=user_env(), check=True, capture_output=True
        )
    port, log = free_port(), tmp_path_factory.mktemp("head") / "head.log"
    with log.open("w") as out:
        head = subprocess.Popen(
            [
                "ray",
                "start",
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--port={port}",
                "--num-cpus=2",
                "--include-dashboard=false",
                "--disable-usage-stats",
                "--block",
            ],
            env=user_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while "Ray runtime started" not in log.read_text():  # the event: the head is up
            assert head.poll() is None, log.read_text()
            head_wait(head)
        yield f"127.0.0.1:{port}", log.read_text()
    finally:
        os.killpg(head.pid, 15)  # stopping `ray start --block` stops that cluster, only it
        head.wait(timeout=60)


def head_wait(head) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=0.2)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, token_cluster):
    """The micro preset in a fresh copy, joining the cluster at its address."""
    workspace = copy_project(tmp_path_factory.mktemp("clone"), brief_timing=True)
    point_at(workspace, token_cluster[0])
    return workspace


def point_at(workspace, address, **execution) -> None:
    params = OmegaConf.load(workspace / "params.yaml")
    params.execution = {
        "backend": "ray",
        "address": address,
        "cpus_per_run": 1,
        "gpus_per_run": 0,
        "max_retries": 1,
        **execution,
    }
    OmegaConf.save(params, workspace / "params.yaml")


def deba(workspace, *args, **env):
    return subprocess.run(
        ["deba", *args],
        cwd=workspace,
        env=user_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_head_asks_for_a_token(token_cluster):
    assert "Token authentication is enabled for this Ray cluster" in token_cluster[1]


def test_a_cluster_that_refuses_the_token_gets_one_line_naming_it(workspace, token_cluster):
    result = deba(workspace, *stage("profile"), RAY_AUTH_TOKEN="0" * 32)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"deba: error: the Ray cluster at {token_cluster[0]} refused the "
        f"token from the variable RAY_AUTH_TOKEN: it is not the token the "
        f"cluster was started with; {FIX}.\n"
    )


FIX = (
    "on the cluster's head node `ray get-auth-token` prints its token; put it in "
    "~/.ray/auth_token here (or in RAY_AUTH_TOKEN, or a file named by RAY_AUTH_TOKEN_PATH)"
)


def test_a_missing_or_switched_off_token_is_named_with_the_fix(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert refused_token("h:1", None) == (
        "the Ray cluster at h:1 asks for a token (it was "
        "started with token authentication) and none is "
        f"readable on this machine: {FIX}."
    )
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert refused_token("h:1", "/x") == (
        "the Ray cluster at h:1 asks for a token, and "
        f"RAY_AUTH_MODE=disabled is set here: unset it; {FIX}."
    )


def test_an_address_where_nothing_answers_fails_in_seconds_with_the_fix(workspace):
    params, port = workspace / "params.yaml", free_port()
    saved = params.read_text()
    point_at(workspace, f"127.0.0.1:{port}")
    try:
        result = deba(workspace, *stage("profile"))
    finally:
        params.write_text(saved)
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"deba: error: no Ray cluster answers at 127.0.0.1:{port} (Connection refused): start "
        f"one there with `ray start --head --port={port}`, or set execution.address to null"
    )


def test_a_run_larger_than_any_node_fails_before_it_is_submitted(workspace, token_cluster):
    params = workspace / "params.yaml"
    saved = params.read_text()
    point_at(workspace, token_cluster[0], cpus_per_run=8)
    try:
        result = deba(workspace, *stage("profile"))
    finally:
        params.write_text(saved)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "deba: error: a run of 1 process asks Ray for 8 cores and 0 GPUs "
        "on one node, and the largest node of the cluster has 2 cores and "
        "0 GPUs: lower execution.cpus_per_run or execution.gpus_per_run (a "
        "run of train.processes asks for that many times each), or add a "
        "larger node.\n"
    )


@pytest.mark.slow
def test_the_readme_recipe_runs_the_micro_study_on_the_token_cluster(workspace):
    result = subprocess.run(
        ["dvc", "repro"], cwd=workspace, env=user_env(), capture_output=True, text=True, timeout=400
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.search(
        r"test_resnet/digits/fixed/2: 5 epochs, accuracy [0-9.]+%, train [0-9.]+s, "
        r"batch sizes \[64\] \(on Ray, \d+ of \d+\)",
        result.stdout,
    ), result.stdout
    said = (result.stdout + result.stderr).splitlines()
    assert [line for line in said if RAY_LOG_LINE.search(line)] == []
    assert len(list((workspace / "runs").rglob("*.json"))) == 7
    status = subprocess.run(["dvc", "status"], cwd=workspace, capture_output=True, text=True)
    assert "up to date" in status.stdout
