"""The fourth hardening pass, case by case through the real commands: each refusal is one line
that names the problem and the fix, and nothing wrong is written or reused."""

import json
import os
import shutil
import stat

import pytest

from deba_pipeline.cli import main

from helpers import ROOT, record_of, small_params

RECORD = "train/test_resnet/digits/fixed-baseline-seed2.json"


@pytest.fixture
def runs(tmp_path):
    """A copy of the committed quick study's records, to spoil one at a time."""
    shutil.copytree(ROOT / "runs", tmp_path / "runs")
    return tmp_path / "runs"


def _edit(path, change):
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def _aggregate(runs, capsys, *extra):
    out = runs.parent / "reports"
    code = main(["aggregate", "--runs", str(runs), "--out", str(out), *extra])
    err = capsys.readouterr().err
    return code, err, out


def _epochs(change):
    return lambda r: [change(e) for e in r["epochs"]]


SPOILED = {  # one record of the study, edited: (the edit, what the message must say)
    "a newer schema": (
        lambda r: r.update(schema=3),
        "its schema is 3, and this deba-pipeline reads schemas 1 to 2",
    ),
    "no architecture": (lambda r: r.pop("arch"), "its arch is None, not a name"),
    "no epochs": (lambda r: r.update(epochs=[]), "it holds no epochs"),
    "a string seed": (lambda r: r.update(seed="2"), "its seed is '2', not an integer"),
    "a string batch": (
        _epochs(lambda e: e.update(batch_size="64")),
        "epoch 1's batch_size is '64', not an integer >= 1",
    ),
    "a null accuracy": (
        lambda r: r.update(final_test_accuracy=None),
        "its final_test_accuracy is None, not a percentage",
    ),
    "an accuracy of 140": (
        lambda r: r.update(final_test_accuracy=140.0),
        "its final_test_accuracy is 140.0, not a percentage",
    ),
    "a time unequal to its epochs'": (
        lambda r: r.update(train_time_s=r["train_time_s"] * 8),
        "is not the sum of its epochs'",
    ),
    "a fixed batch that changes": (
        lambda r: r["epochs"][3].update(batch_size=96),
        "it is a fixed-batch run whose batch changes",
    ),
    "a batch beyond the training set": (
        _epochs(lambda e: e.update(batch_size=5000)),
        "epoch 1's batch of 5000 exceeds its training set of 899",
    ),
    "a negative epoch time": (
        lambda r: r["epochs"][0].update(epoch_time_s=-1.0),
        "epoch 1's epoch_time_s is -1.0, not seconds >= 0",
    ),
    "a string loss": (
        lambda r: r["epochs"][0].update(train_loss="0.4"),
        "epoch 1's train_loss is '0.4', not a number",
    ),
    "epochs out of order": (
        lambda r: r["epochs"].reverse(),
        "its epochs are not 1, 2, ... in order",
    ),
    "a world size of 0": (
        lambda r: r.update(world_size=0),
        "its world_size is 0, not an integer >= 1",
    ),
    "a final accuracy off its last epoch": (
        lambda r: r.update(final_test_accuracy=1.0),
        "its final accuracy is not its last epoch's",
    ),
}


@pytest.mark.parametrize("case", SPOILED)
def test_aggregate_refuses_a_record_that_contradicts_itself(runs, capsys, case):
    edit, expected = SPOILED[case]
    _edit(runs / RECORD, edit)
    code, err, out = _aggregate(runs, capsys)
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err, err
    assert err.startswith(f"deba: error: {runs / RECORD} cannot be read as a run record: ")
    assert expected in err
    assert "delete it and run `dvc repro`" in err
    assert not out.exists()  # nothing half-made


def test_a_json_that_only_looks_like_a_record_is_named(runs, capsys):
    stray = runs / "train" / "notes.json"
    stray.write_text(json.dumps({"schema": 2, "epochs": "see the notebook"}))
    code, err, out = _aggregate(runs, capsys)
    assert code == 2
    assert f"{stray} cannot be read as a run record: its arch is None" in err
    assert not out.exists()


def test_a_stale_copy_of_a_record_is_refused_not_silently_used(runs, capsys):
    stale = runs / "zz_old" / "fixed-baseline-seed2.json"
    stale.parent.mkdir()
    shutil.copyfile(runs / RECORD, stale)
    _edit(
        stale,
        lambda r: r.update(
            final_test_accuracy=10.0, epochs=[{**e, "test_accuracy": 10.0} for e in r["epochs"]]
        ),
    )
    code, err, out = _aggregate(runs, capsys)
    assert code == 2
    assert not out.exists()
    assert (
        f"{runs / RECORD} and {stale} are records of one run (test_resnet/digits/fixed/baseline/2)"
        in err
        or f"{stale} and {runs / RECORD} are records of one run" in err
    )
    assert "Delete the one that is not the stage's output" in err


def test_aggregate_refuses_a_params_file_that_does_not_exist(runs, capsys):
    code, err, out = _aggregate(runs, capsys, "--params", str(runs.parent / "nonexistent.yaml"))
    assert code == 2
    assert not out.exists()
    assert err == (
        f"deba: error: --params {runs.parent / 'nonexistent.yaml'} does not exist: "
        f"give the params file the runs were made with, or leave --params out to "
        f"read params.yaml (the defaults where there is none).\n"
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"timing": {"sizes": [64, 96]}},
            "`timing.sizes` = [64, 96] is not allowed: it must be ladder or reached.",
        ),
        (
            {"study": {"seeds": [2**63]}},
            f"`study.seeds` = {2**63} is not allowed: it must be an integer in [0, 2^63 - 1]",
        ),
        (
            {"train": {"lr": 0}},
            "`train.lr` = 0.0 is not allowed: it must be a finite number > 0 "
            "(at 0 nothing trains).",
        ),
        (
            {"timing": {"repeats": 1_000_000_000}},
            "`timing.repeats` = 1000000000 is not allowed: it must be an integer in [1, 1000].",
        ),
        (
            {"timing": {"steps": 100_000}},
            "`timing.steps` = 100000 is not allowed: it must be an integer in [1, 10000].",
        ),
        (
            {"report": {"accuracy_tolerance": 200}},
            "`report.accuracy_tolerance` = 200.0 is not "
            "allowed: it must be a number of points in [0, 100).",
        ),
        (
            {"train": {"precision": "fp8"}},
            "`train.precision` = 'fp8' is not allowed: it must be fp32 or bf16.",
        ),
        (
            {"data": {"placement": None}},
            "`data.placement` = None is not allowed: it must be auto, "
            "device or stream (null is not a value here",
        ),
        (
            {"train": {"image_size": {"test_resnet": "big"}}},
            "`train.image_size.test_resnet` = 'big' is not allowed: it must be an integer.",
        ),
        (
            {"train": {"processes": 2, "batch_size": 64, "sync_batchnorm": True, "device": "auto"}},
            "`train.sync_batchnorm` = true is not allowed here: train.device = 'auto' is the CPU on "
            "this machine",
        ),
    ],
)
def test_validate_refuses_settings_that_cannot_work(
    tmp_path, monkeypatch, capsys, params, expected
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params(params))
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deba: error: params.yaml: "), err
    assert expected in err, err
    assert err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"train": {"epochs": 15}, "deba": {"cooldown": 10, "window": 15}},
            "warning: deba: train.epochs = 15 leaves the rule no decision that sees a full window and "
            "takes effect: it first decides at epoch 11 (cooldown 10), its window of 15 epochs is full "
            "from epoch 16, and the last epoch's decision changes nothing. Use at least 17 epochs",
        ),
        (
            {"deba": {"max_batch": 4096}},
            "warning: deba.max_batch = 4096 exceeds the 1438 training "
            "samples of digits: set it to at most 359 (a quarter)",
        ),
        (
            {
                "study": {
                    "methods": {
                        "deba": {},
                        "big": {"max_batch": 1000, "growth": 4.0, "cooldown": 1},
                    }
                },
                "train": {"epochs": 8},
            },
            "warning: study.methods.big: a batch of 1000, which the rule may reach in 8 epochs, leaves "
            "1 step(s) an epoch on digits (1438 samples): set study.methods.big.max_batch to at most "
            "359",
        ),
        (
            {"execution": {"cpus_per_run": 4096}},
            "warning: execution.cpus_per_run = 4096 is more threads than this machine's",
        ),
    ],
)
def test_validate_warns_where_a_valid_study_leaves_the_rule_little_to_do(
    tmp_path, monkeypatch, capsys, params, expected
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params(params))
    assert main(["validate"]) == 0
    out = capsys.readouterr().out
    assert "params.yaml: valid." in out, out
    assert expected in out, out


def test_a_warning_is_named_where_the_setting_is_set_not_in_every_group_that_inherits_it(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({"deba": {"max_batch": 4096}}))
    assert main(["validate"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if "max_batch" in line]
    assert warnings == [
        "warning: deba.max_batch = 4096 exceeds the 1438 training samples of "
        "digits: set it to at most 359 (a quarter) so an epoch keeps 4 steps."
    ]


def test_the_presets_give_no_warning_but_micros_short_cooldown5_ablation(capsys):
    assert main(["validate", "quick", "paper"]) == 0
    assert "warning" not in capsys.readouterr().out
    assert main(["validate", "micro"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: ablate.variants.cooldown5: ")


def test_a_second_forced_preset_keeps_the_first_backup(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    params = tmp_path / "params.yaml"
    params.write_text(small_params({"train": {"epochs": 3}}) + "# my own edit\n")
    assert main(["preset", "micro", "--force"]) == 0
    params.write_text(params.read_text() + "# a second edit\n")
    assert main(["preset", "quick", "--force"]) == 0
    assert "# my own edit" in (tmp_path / "params.yaml.bak").read_text()
    assert "# a second edit" in (tmp_path / "params.yaml.bak.1").read_text()
    assert "the previous file is params.yaml.bak.1" in capsys.readouterr().out


def test_deba_version_names_the_installed_package(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    from importlib.metadata import version

    assert capsys.readouterr().out == f"deba {version('deba-pipeline')}\n"


def test_files_are_written_with_the_umask_a_colleague_expects(tmp_path):
    from deba_pipeline.engine.files import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "table.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "table.json").stat().st_mode) == 0o644


def test_a_file_where_the_locks_folder_belongs_is_named(tmp_path):
    from deba_pipeline.core.errors import DebaError
    from deba_pipeline.engine.checkpoint import Checkpointer

    from helpers import tiny_spec

    (tmp_path / "locks").write_text("not a folder")
    with pytest.raises(DebaError) as refused, Checkpointer(tmp_path, tiny_spec()).lock():
        pass
    assert str(refused.value) == (
        f"{tmp_path / 'locks'} is a file where a folder is needed: "
        f"move it away or delete it, then rerun."
    )


def _outputs(out):
    return {
        p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
    }


def _aggregate_committed(out) -> int:
    """`deba aggregate` of the committed runs and step-time tables into `out`: its exit code."""
    runs, steptime = ROOT / "runs", ROOT / "results" / "steptime"
    return main(["aggregate", "--runs", str(runs), "--out", str(out), "--steptime", str(steptime)])


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """The committed study aggregated once into a folder of its own."""
    out = tmp_path_factory.mktemp("agg") / "reports"
    assert _aggregate_committed(out) == 0
    return out


def test_a_late_failure_leaves_the_last_report_whole(reported, tmp_path, monkeypatch, capsys):
    from deba_pipeline.core.errors import DebaError
    from deba_pipeline.stages import aggregate

    out = tmp_path / "reports"
    shutil.copytree(reported, out)
    before = _outputs(out)

    def fails_late(*args, **kwargs):
        raise DebaError("the report could not be rendered")

    monkeypatch.setattr(aggregate, "report", fails_late)
    code = _aggregate_committed(out)
    assert code == 2
    assert "the report could not be rendered" in capsys.readouterr().err
    # metrics.json, answer.json and every curve as they were, beside the REPORT.md they match
    assert _outputs(out) == before
    assert not (tmp_path / ".reports.partial").exists()


def test_an_output_folder_that_refuses_the_new_files_loses_none_of_the_old(
    reported, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "reports"
    shutil.copytree(reported, out)
    before = _outputs(out)
    real = os.replace

    def refused(src, dst):
        if str(dst).startswith(str(out)):
            raise PermissionError(13, "Permission denied")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", refused)
    code = _aggregate_committed(out)
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot write {out}: Permission denied" in err
    assert _outputs(out) == before  # no CSV under plots/ deleted before the failure


def test_a_gpu_estimate_is_the_steps_flops_over_the_stated_share_of_the_peak(
    tmp_path, monkeypatch, capsys
):
    from deba_pipeline.config import load_params
    from deba_pipeline.execution.devices import step_flops

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({}))
    flops = step_flops(load_params("params.yaml"), "test_resnet", "digits")
    assert main(["validate", "--estimate", "--device", "h100", "--utilization", "0.5"]) == 0
    out = capsys.readouterr().out
    ms = flops / (67e12 * 0.5) * 1000  # the H100's dense FP32 peak, half of it sustained
    assert f"test_resnet/digits: {flops / 1e9:.1f} GFLOP a step at batch 64, {ms:.2f} ms" in out
    assert "assumes: 67 TFLOP/s (fp32 peak, dense, the datasheet's) × 0.5 utilization" in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["validate", "--estimate", "--device", "h800"],
            "deba: error: --device 'h800' is not a device with a documented peak here: use one of "
            "h200, h100, h100-pcie, a100, a10, l4, rtx4090.\n",
        ),
        (
            ["validate", "--device", "h100"],
            "deba: error: --device and --utilization go with --estimate: add it.\n",
        ),
        (
            ["validate", "--estimate", "--device", "h100", "--utilization", "1.5"],
            "deba: error: --utilization 1.5 is not allowed: it must be in (0, 1].\n",
        ),
    ],
)
def test_a_gpu_estimate_refuses_what_it_cannot_answer(
    tmp_path, monkeypatch, capsys, argv, expected
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({}))
    assert main(argv) == 2
    assert capsys.readouterr().err.endswith(expected)


@pytest.mark.parametrize(
    ("fixed_accuracy", "losses", "expected"),
    [
        # 4 classes: chance 25%; 36.7% got 0.16 of the way to 100%, below a fifth
        (36.7, (1.380, 1.100), "its seed 0 ended at 36.7%, near chance (25.0%)"),
        (80.0, (1.380, 1.338), "its seed 0's training loss barely moved (1.380 to 1.338)"),
        (80.0, (1.380, 0.400), None),
    ],
)
def test_a_fixed_baseline_that_did_not_learn_leaves_no_comparison(fixed_accuracy, losses, expected):
    from deba_pipeline.report.answer import answers, sentence
    from deba_pipeline.report.comparison import compare

    def run(method, seed, accuracy):
        return record_of(
            method,
            seed,
            [
                {
                    "epoch": e,
                    "batch_size": 64,
                    "decision": "hold",
                    "epoch_time_s": 1.0,
                    "train_loss": loss,
                }
                for e, loss in enumerate(losses, 1)
            ],
            accuracy,
            num_classes=4,
        )

    records = [run("fixed", s, fixed_accuracy + s / 10) for s in range(3)] + [
        run("deba", s, fixed_accuracy + 5 + s / 10) for s in range(3)
    ]
    cell = compare(records)[("a", "d")]
    assert cell.no_comparison == expected
    if expected:
        assert cell.outcome == "no comparison"
        [(key, answer)] = answers({"deba": {("a", "d"): cell}}, []).items()
        assert sentence(key, answer) == (
            f"- **a on d**: no comparison: the fixed baseline did not learn ({expected}), so no "
            f"strategy can be judged against it. Raise train.epochs or change train.lr, or check "
            f"the data, then rerun."
        )


@pytest.mark.parametrize(
    "failure",
    [
        lambda: torch_oom(),
        lambda: RuntimeError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 4294967296 bytes"
        ),
    ],
    ids=["device", "CPU allocator"],
)
def test_an_estimate_that_runs_out_of_memory_says_what_to_do(
    tmp_path, monkeypatch, capsys, failure
):
    from deba_pipeline.engine.loop import Trainer

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({}))

    def out_of_memory(*args):
        raise failure()

    monkeypatch.setattr(Trainer, "train_epoch", out_of_memory)
    assert main(["validate", "--estimate"]) == 2
    err = capsys.readouterr().err
    # the process's warm-up, at the probe batch, is the first step to run
    assert "deba: error: timing test_resnet at batch 16 ran out of memory here (" in err
    assert "estimate for the GPU you will use instead (`--estimate --device h100`)" in err
    assert "Traceback" not in err


def torch_oom():
    import torch

    return torch.OutOfMemoryError("CUDA out of memory")


def _refused(call) -> str:
    from deba_pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        call()
    return str(refused.value)


GRADIENTS = {  # what a library caller may pass as grads: (the tensors, what the message names)
    "complex": (lambda t: [torch_randn(10).to(t.complex64)], "<gradient 0: complex>"),
    "sparse": (lambda t: [torch_randn(10).to_sparse()], "<gradient 0: sparse>"),
    "on the meta device": (
        lambda t: [t.empty(10, device="meta")],
        "<gradient 0: on the meta device>",
    ),
    "integer": (lambda t: [t.ones(10, dtype=t.int64)], "<gradient 0: int64>"),
}


def torch_randn(n):
    import torch

    return torch.randn(n)


@pytest.mark.parametrize("case", GRADIENTS)
def test_the_library_refuses_gradients_it_cannot_read(case):
    import torch

    from deba_pipeline import DEBAScheduler

    make, named = GRADIENTS[case]
    message = _refused(lambda: DEBAScheduler(batch_size=64).step(loss=1.0, grads=make(torch)))
    assert message == (
        f"`grads` = '{named}' is not allowed: it must be dense, real "
        f"floating-point tensors on a device that holds values (what backward() "
        f"leaves in p.grad)."
    )


def test_finite_gradients_too_large_to_square_are_not_called_infinite():
    import torch

    from deba_pipeline import DEBAScheduler

    huge = [torch.full((10,), 1e300, dtype=torch.float64)]
    message = _refused(lambda: DEBAScheduler(batch_size=64).step(loss=1.0, grads=huge))
    assert "these are finite but too large: scale the loss down" in message


def test_another_models_gradients_in_a_later_epoch_are_refused():
    import torch

    from deba_pipeline import DEBAScheduler

    scheduler = DEBAScheduler(batch_size=64)
    scheduler.step(loss=1.0, grads=[torch.randn(10)])
    message = _refused(lambda: scheduler.step(loss=1.0, grads=[torch.randn(12)]))
    assert message == (
        "`grads` = '<gradients holding 12 numbers>' is not allowed: it must be "
        "the same model's gradients every epoch (10 numbers before): a new model "
        "needs a new scheduler."
    )
    assert scheduler.epoch == 1  # all or nothing: the refused epoch left no trace


def test_a_count_of_steps_no_float_can_hold_is_refused():
    import torch

    from deba_pipeline import DEBAScheduler

    message = _refused(
        lambda: DEBAScheduler(batch_size=64).step(loss=1.0, grads=[torch.randn(10)], steps=10**30)
    )
    assert (
        "`steps` = 1000000000000000000000000000000 is not allowed: it must be an integer in "
        "[1, 2^53)" in message
    )


def test_a_loaded_state_whose_batch_does_not_split_over_the_processes_is_refused():
    from deba_pipeline import DEBAScheduler

    scheduler = DEBAScheduler(batch_size=64, world_size=2)
    state = {**scheduler.state_dict(), "batch_size": 63}
    message = _refused(lambda: scheduler.load_state_dict(state))
    assert message == (
        "load_state_dict: `state['batch_size']` = 63 is not allowed: it must be a "
        "multiple of world_size = 2 (the batch is global: each process takes "
        "batch_size / 2)."
    )
    assert scheduler.batch_size == 64


def test_a_nan_in_the_loops_sums_is_blamed_on_the_loop_not_the_signal():
    import torch

    from deba_pipeline import DEBAScheduler

    scheduler = DEBAScheduler(batch_size=64, signals=["gradient_noise_scale"], rule="gns")
    sums = {"grad_sq_norm": 4.0, "grad_sum": [torch.tensor([1.0, float("nan")])]}
    message = _refused(
        lambda: scheduler.step(loss=1.0, grads=[torch.randn(2)], steps=3, accumulated=sums)
    )
    assert message == (
        "`accumulated['grad_sum']` = '<tensors holding NaN or infinity>' is not "
        "allowed: it must be finite tensors (Σ over the epoch's steps of gₜ): "
        "check the loop that sums them."
    )


@pytest.fixture(scope="module")
def measured_table():
    """A real step-time table of a tiny run, as the steptime stage keeps it (through JSON)."""
    import tempfile

    from deba_pipeline.engine.loop import Trainer
    from deba_pipeline.timing.steptime import measure

    from helpers import tiny_spec

    with tempfile.TemporaryDirectory() as state:
        table = measure(Trainer(tiny_spec(), state), [51, 64, 96], reference=64, repeats=3, steps=2)
    return json.loads(json.dumps(table))


def _edit_table(table, change):
    edited = json.loads(json.dumps(table))
    change(edited)
    return edited


TABLE_EDITS = {  # a kept table edited by hand and resealed: what the message must say
    "a step time 20% fast": (
        lambda t: t["step_s"].update({"96": t["step_s"]["96"] * 0.8}),
        "its step time at batch 96 is ",
    ),
    "an epoch start 8x an epoch": (
        lambda t: t["epoch_start_s"].update({"64": 8 * 22 * t["step_s"]["64"]}),
        "its epoch start at batch 64 is ",
    ),
    "its rounds removed": (
        lambda t: t.pop("rounds"),
        "it lacks the rounds its step times come from",
    ),
    "a round edited to match": (
        lambda t: t["rounds"]["96"]["fastest_s"].__setitem__(0, "fast"),
        "it lacks the rounds its step times come from, or they are malformed",
    ),
}


def test_a_measured_table_agrees_with_its_own_rounds(measured_table):
    from deba_pipeline.report.modelled import table_problem

    assert table_problem(measured_table, {51, 64, 96}) is None


@pytest.mark.parametrize("case", TABLE_EDITS)
def test_a_kept_table_that_disagrees_with_its_own_rounds_is_not_used(measured_table, case):
    from deba_pipeline.report.modelled import table_problem

    change, expected = TABLE_EDITS[case]
    problem = table_problem(_edit_table(measured_table, change), {51, 64, 96})
    assert problem is not None, problem
    assert problem.startswith(expected), problem
    if "is " in expected:
        assert ", but its own rounds give " in problem
