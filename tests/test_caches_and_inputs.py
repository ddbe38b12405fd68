"""Caches that verify what they hold, and inputs as a hostile user tries them: every case through the real
commands or the library, asserting the one-line message and that nothing wrong was written or
reused. Classes: 1 caches, 2 image folders, 3 study.methods, 4 Ray settings, 5 the library's
per-step inputs, 6 lost work, 7 wording."""

import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from deba_pipeline import DEBAScheduler
from deba_pipeline.cli import main
from deba_pipeline.core.errors import ConfigError
from deba_pipeline.engine import cache
from deba_pipeline.engine.checkpoint import Checkpointer
from deba_pipeline.execution import one_run

from helpers import small_params, tiny_spec


def refused(tmp_path, monkeypatch, capsys, overrides, *argv):
    """`deba validate` (or `argv`) on SMALL_STUDY with `overrides`: (exit code, stderr)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params(overrides))
    code = main(list(argv) or ["validate", "params.yaml"])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert "This is a bug" not in err, err
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / ".deba" / "finished").exists()
    return code, err


def image_folder(root, classes=("a", "b"), per_class=3, side=8, mode="L", value=None):
    for part in ("train", "test"):
        for label, name in enumerate(classes):
            (root / part / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                fill = value if value is not None else 40 * label + 10 * i
                Image.new(mode, (side, side), fill).save(
                    root / part / name / f"{i}.png", compress_level=0
                )
    return root


# -- 2. image folders ---------------------------------------------------------------------------
def _folder_study(path, name="mine"):
    return {
        "data": {"folders": {name: str(path)}},
        "study": {"datasets": [name]},
        "ablate": {"dataset": name},
    }


@pytest.mark.parametrize("name", ["..", "../../x", "a/b", ".hidden"])
def test_an_image_folder_name_that_would_be_a_path_is_refused_at_validation(
    tmp_path, monkeypatch, capsys, name
):
    code, err = refused(
        tmp_path, monkeypatch, capsys, _folder_study(image_folder(tmp_path / "img"), name)
    )
    assert code == 2
    assert (
        f"`data.folders` = {name!r} is not allowed: it must be a name of "
        f"letters, digits, '_', '-' and '.'" in err
    )


def test_an_image_folder_named_like_a_registered_dataset_is_refused(tmp_path, monkeypatch, capsys):
    overrides = {"data": {"folders": {"digits": str(image_folder(tmp_path / "img"))}}}
    code, err = refused(tmp_path, monkeypatch, capsys, overrides)
    assert code == 2
    assert (
        "`data.folders` = 'digits' is not allowed: it must be a name other "
        "than a registered dataset's" in err
    )


def _break(kind, root):
    if kind == "missing":
        shutil.rmtree(root)
    elif kind == "no test folder":
        shutil.rmtree(root / "test")
    elif kind == "no classes":
        for c in (root / "train").iterdir():
            shutil.rmtree(c)
    elif kind == "empty train class":
        (root / "train" / "c").mkdir()
        (root / "test" / "c").mkdir()
        Image.new("L", (8, 8)).save(root / "test" / "c" / "0.png")
    elif kind == "empty test class":
        for f in (root / "test" / "b").iterdir():
            f.unlink()
    elif kind == "class without test images":
        shutil.rmtree(root / "test" / "b")
    elif kind == "test-only class":
        (root / "test" / "z").mkdir()
        Image.new("L", (8, 8)).save(root / "test" / "z" / "0.png")


FOLDER_FAULTS = {
    "missing": "image folder {root} does not exist: fix data.folders or create it.",
    "no test folder": "image folder {root} has no test/ folder",
    "no classes": "image folder {root}/train has no class folders",
    "empty train class": "image folder {root}/train/c has no PNG or JPEG images",
    "empty test class": "image folder {root}/test/b has no PNG or JPEG images",
    "class without test images": "class 'b' has training images but no {root}/test/b/ folder",
    "test-only class": "class 'z' has test images but no {root}/train/z/ folder",
}


@pytest.mark.parametrize("kind", FOLDER_FAULTS)
def test_a_faulty_image_folder_is_refused_by_validate_before_anything_trains(
    tmp_path, monkeypatch, capsys, kind
):
    root = image_folder(tmp_path / "img")
    _break(kind, root)
    code, err = refused(tmp_path, monkeypatch, capsys, _folder_study(root))
    assert code == 2, err
    assert FOLDER_FAULTS[kind].format(root=root) in err, err
    assert err.count("\n") == 1


def test_sixteen_bit_greyscale_images_keep_their_values(tmp_path):
    """A 16-bit PNG converted to 8 bits saturates to white; read as 16 bits it keeps its range."""
    from deba_pipeline.engine.datasets.folders import load_folder

    root = tmp_path / "img"
    for part in ("train", "test"):
        for label, level in enumerate((1000, 30000)):
            (root / part / str(label)).mkdir(parents=True)
            pixels = np.full((8, 8), level, dtype=np.uint16)
            Image.fromarray(pixels).save(root / part / str(label) / "0.png")
    x_train, y_train, _, _, classes = load_folder(root)
    assert classes == 2
    assert x_train.shape == (2, 1, 8, 8)
    assert x_train[0].flatten().tolist() == pytest.approx([1000 / 65535] * 64, rel=1e-5)
    assert x_train[1].flatten().tolist() == pytest.approx([30000 / 65535] * 64, rel=1e-5)


def test_an_image_replaced_by_another_of_the_same_size_and_time_changes_the_run_key(tmp_path):
    from deba_pipeline.engine.datasets import folders

    root = image_folder(tmp_path / "img", value=200)
    before = folders.fingerprint(str(root))
    target = root / "train" / "a" / "0.png"
    stat = target.stat()
    Image.new("L", (8, 8), 0).save(target, compress_level=0)  # blacked out: same size
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_size == stat.st_size
    assert target.stat().st_mtime_ns == stat.st_mtime_ns
    folders._digest.cache_clear()  # as a new process finds it: contents are read again
    assert folders.fingerprint(str(root)) != before


def test_a_folder_replaced_during_a_stage_changes_the_key_in_the_same_process(tmp_path):
    from deba_pipeline.engine.datasets import folders

    root = image_folder(tmp_path / "img", value=200)
    before = folders.fingerprint(str(root))
    target = root / "train" / "a" / "0.png"
    Image.new("L", (8, 8), 0).save(target, compress_level=0)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    assert folders.fingerprint(str(root)) != before  # no new process needed
    restored = image_folder(tmp_path / "img", value=200)
    os.utime(restored / "train" / "a" / "0.png", ns=(1, 2))
    assert folders.fingerprint(str(restored)) == before  # the old images, the old key


def test_hidden_folders_and_files_are_not_classes_or_images(tmp_path):
    from deba_pipeline.engine.datasets import folders
    from deba_pipeline.engine.datasets.folders import load_folder

    root = image_folder(tmp_path / "img", value=200)
    before = folders.fingerprint(str(root))
    for part in ("train", "test"):
        for hidden in (".ipynb_checkpoints", ".hidden"):
            (root / part / hidden).mkdir()
            Image.new("L", (8, 8), 7).save(root / part / hidden / "0.png")
        Image.new("L", (8, 8), 7).save(root / part / "a" / "._0.png")
    assert load_folder(root)[4] == 2
    assert load_folder(root)[0].shape[0] == 6
    assert folders.fingerprint(str(root)) == before


def test_the_estimate_counts_an_image_folder_by_its_real_size(tmp_path):
    from deba_pipeline.execution.estimate import dataset_shape

    root = image_folder(tmp_path / "img", classes=("a", "b", "c"), per_class=5, side=12)
    from helpers import tiny_cfg

    cfg = tiny_cfg(data={"folders": {"mine": str(root)}})
    assert dataset_shape(cfg, "mine") == (15, 3, 12, 1)


# -- 3. study.methods, 4. Ray settings, 7. wording: refused at validation, one line -------------
METHOD_FAULTS = {
    "null entry": (
        {"x": None},
        "`study.methods.x` = None is not allowed: it must be a mapping of deba overrides",
    ),
    "scalar entry": ({"x": 3}, "`study.methods.x` = 3 is not allowed: it must be a mapping"),
    "list entry": ({"x": [1]}, "`study.methods.x` = [1] is not allowed: it must be a mapping"),
    "plugins in a method": (
        {"x": {"plugins": ["plugins/a.py"]}},
        "`study.methods.x.plugins` is not allowed: plugin files are "
        "study-wide: list them in deba.plugins",
    ),
    "unknown key in a method": (
        {"x": {"rulee": "gns"}},
        "unknown key `study.methods.x.rulee`. Did you mean `study.methods.x.rule`?",
    ),
    "schedule beyond the epochs": (
        {"x": {"rule": "step_schedule", "cooldown": 0, "rule_options": {"at": [2, 9]}}},
        "`study.methods.x.rule_options.at` = [2, 9] is not allowed: it must be epochs before "
        "the last (train.epochs = 4): [9] would never change a batch",
    ),
    "schedule at the last epoch": (
        {"x": {"rule": "step_schedule", "cooldown": 0, "rule_options": {"at": [4]}}},
        "epochs before the last (train.epochs = 4): [4] would never change a batch",
    ),
    "schedule without at": (
        {"x": {"rule": "step_schedule", "cooldown": 0}},
        "`study.methods.x.rule_options.at` = None is not allowed",
    ),
    "schedule blocked by the cooldown": (
        {"x": {"rule": "step_schedule", "rule_options": {"at": [2, 3]}}},
        "would never fire",
    ),
}


@pytest.mark.parametrize("case", METHOD_FAULTS)
def test_a_bad_study_method_is_refused_naming_it(tmp_path, monkeypatch, capsys, case):
    entry, message = METHOD_FAULTS[case]
    code, err = refused(
        tmp_path, monkeypatch, capsys, {"study": {"methods": entry}, "train": {"epochs": 4}}
    )
    assert code == 2, err
    assert message in err, err


def test_a_method_named_by_a_number_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load(small_params({}))
    params["study"]["methods"] = {1: {}}  # YAML reads `1:` as a number
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["validate", "params.yaml"]) == 2
    err = capsys.readouterr().err
    assert "`study.methods` key 1 is not allowed: it must be a name (text)" in err, err
    assert "This is a bug" not in err


SETTING_FAULTS = {
    "address without a port": (
        {"execution": {"address": "head-node"}},
        "`execution.address` = 'head-node' is not allowed: it must be HOST:PORT",
    ),
    "address port out of range": (
        {"execution": {"address": "10.0.0.5:99999"}},
        "`execution.address` = '10.0.0.5:99999' is not allowed",
    ),
    "infinite cpus": (
        {"execution": {"cpus_per_run": math.inf}},
        "`execution.cpus_per_run` = inf is not allowed: it must be a number > 0",
    ),
    "zero cpus": (
        {"execution": {"cpus_per_run": 0}},
        "`execution.cpus_per_run` = 0.0 is not allowed",
    ),
    "null where a value belongs": (
        {"train": {"epochs": None}},
        "`train.epochs` = None is not allowed: it must be an "
        "integer (null is not a value here; leave the key out for its default)",
    ),
    "unknown key": (
        {"train": {"epoch": 3}},
        "unknown key `train.epoch`. Did you mean `train.epochs`?",
    ),
}


@pytest.mark.parametrize("case", SETTING_FAULTS)
def test_a_bad_setting_is_one_line_naming_the_key(tmp_path, monkeypatch, capsys, case):
    overrides, message = SETTING_FAULTS[case]
    code, err = refused(tmp_path, monkeypatch, capsys, overrides)
    assert code == 2, err
    assert message in err, err
    assert err.count("\n") == 1, err


def test_a_params_file_that_is_not_yaml_is_one_line_for_deba_plugins(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("study: [unclosed\n")
    assert main(["plugins", "--params", "bad.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deba: error: bad.yaml: not valid YAML"), err
    assert err.count("\n") == 1, err


def test_aggregate_compare_with_a_file_that_is_not_a_report_is_one_line(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({}))
    (tmp_path / "other.yaml").write_text("study: {name: x}\n")
    (tmp_path / "runs").mkdir()
    code = main(
        [
            "aggregate",
            "--runs",
            "runs",
            "--out",
            "reports",
            "--compare",
            "other.yaml",
            "--steptime",
            "",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "other.yaml" in err
    assert "Traceback" not in err
    assert "bug" not in err
    assert not (tmp_path / "reports").exists()


def test_aggregate_with_a_steptime_folder_that_does_not_exist_says_so(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(small_params({}))
    (tmp_path / "runs").mkdir()
    code = main(
        [
            "aggregate",
            "--runs",
            "runs",
            "--out",
            "reports",
            "--steptime",
            str(tmp_path / "nonexistent"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{tmp_path / 'nonexistent'} does not exist" in err, err
    assert not (tmp_path / "reports").exists()


# -- 5. the library's per-step inputs -----------------------------------------------------------
def _gns():
    return DEBAScheduler(batch_size=64, signals=["gradient_noise_scale"], rule="gns", cooldown=0)


GOOD = {
    "steps": 4,
    "accumulated": {"grad_sq_norm": 10.0, "grad_sum": [torch.full((3,), 2.0)]},
    "dataset_size": 1000,
}
INPUT_FAULTS = {
    "fractional steps": (
        {"steps": 2.5},
        "`steps` = 2.5 is not allowed: it must be an integer in [1, 2^53)",
    ),
    "negative steps": ({"steps": -1}, "`steps` = -1 is not allowed"),
    "zero steps": ({"steps": 0}, "`steps` = 0 is not allowed"),
    "boolean steps": ({"steps": True}, "`steps` = True is not allowed"),
    "accumulated as a list": (
        {"accumulated": [1, 2]},
        "`accumulated` = [1, 2] is not allowed: it must be a mapping",
    ),
    "negative sum of squares": (
        {"accumulated": {**GOOD["accumulated"], "grad_sq_norm": -1.0}},
        "`accumulated['grad_sq_norm']` = -1.0 is not allowed: it must be a finite number >= 0",
    ),
    "sum of squares as text": (
        {"accumulated": {**GOOD["accumulated"], "grad_sq_norm": "10"}},
        "`accumulated['grad_sq_norm']` = '10' is not allowed",
    ),
    "NaN sum of squares": (
        {"accumulated": {**GOOD["accumulated"], "grad_sq_norm": math.nan}},
        "`accumulated['grad_sq_norm']` = nan is not allowed",
    ),
    "gradient sum of the wrong shape": (
        {"accumulated": {**GOOD["accumulated"], "grad_sum": [torch.ones(5)]}},
        "`accumulated['grad_sum']` = '<1 tensors of shapes [(5,)]>' is not allowed: it must be "
        "tensors holding as many numbers as the gradients (3)",
    ),
    "an accumulator nobody offers": (
        {"accumulated": {**GOOD["accumulated"], "grad_cube": 1}},
        "`accumulated` key 'grad_cube' is not allowed",
    ),
    "an accumulator missing": (
        {"accumulated": {"grad_sq_norm": 10.0}},
        "`accumulated` = {'grad_sq_norm'} is not allowed: it must be a mapping holding grad_sum",
    ),
    "a dataset smaller than the epoch": (
        {"dataset_size": 100},
        "`dataset_size` = 100 is not allowed: it must be at "
        "least the epoch's samples (steps × batch = 256)",
    ),
}


@pytest.mark.parametrize("case", INPUT_FAULTS)
def test_a_bad_per_step_input_is_named_and_leaves_the_scheduler_as_it_was(case):
    change, message = INPUT_FAULTS[case]
    scheduler = _gns()
    before = scheduler.state_dict()
    with pytest.raises(ConfigError) as raised:
        scheduler.step(1.0, [torch.ones(3)], **{**GOOD, **change})
    assert message in str(raised.value), str(raised.value)
    assert scheduler.state_dict() == before
    assert _gns().step(1.0, [torch.ones(3)], **GOOD).signals["gradient_noise_scale"] is not None


# -- 1. caches that verify what they hold; 6. lost work -------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny run: (state folder, spec, its record)."""
    state = tmp_path_factory.mktemp("state")
    spec = tiny_spec("fixed", train={"epochs": 2})
    return state, spec, one_run.train(spec, state_dir=state, progress=False)


def _entry(path):
    return json.loads(path.read_text())


def _forge(path, edit):
    """Edit the kept content and write a matching checksum, as a determined hand would."""
    entry = _entry(path)
    edit(entry)
    cache.keep(path, entry["content"], entry["identity"])


TAMPERING = {
    "accuracy edited": lambda p: p.write_text(
        p.read_text().replace('"final_test_accuracy": ', '"final_test_accuracy": 1', 1)
    ),
    "method edited": lambda p: p.write_text(
        p.read_text().replace('"method": "fixed"', '"method": "deba"', 1)
    ),
    "emptied": lambda p: p.write_text("{}"),
    "truncated": lambda p: p.write_text(p.read_text()[:200]),
    "written by an older version": lambda p: p.write_text(json.dumps(_entry(p)["content"])),
    "another run's entry": lambda p: _forge(p, lambda e: e["identity"].update(key="0" * 16)),
    "fewer epochs, checksum redone": lambda p: _forge(
        p, lambda e: e["content"].update(epochs=e["content"]["epochs"][:1])
    ),
    "another architecture, checksum redone": lambda p: _forge(
        p, lambda e: e["content"].update(arch="test_vit")
    ),
    "final accuracy off its last epoch, checksum redone": lambda p: _forge(
        p, lambda e: e["content"].update(final_test_accuracy=100.0)
    ),
    # content that contradicts itself or its run, resealed: the checksum cannot tell
    "training time not its epochs' sum, resealed": lambda p: _forge(
        p, lambda e: e["content"].update(train_time_s=e["content"]["train_time_s"] * 2)
    ),
    "a fixed run whose batch changes, resealed": lambda p: _forge(
        p, lambda e: e["content"]["epochs"][1].update(batch_size=96)
    ),
    "a batch beyond its training set, resealed": lambda p: _forge(
        p, lambda e: [x.update(batch_size=5000) for x in e["content"]["epochs"]]
    ),
    "a negative epoch time, resealed": lambda p: _forge(
        p, lambda e: e["content"]["epochs"][0].update(epoch_time_s=-1.0)
    ),
    "a string loss, resealed": lambda p: _forge(
        p, lambda e: e["content"]["epochs"][0].update(train_loss="0.5")
    ),
    "another world size, resealed": lambda p: _forge(
        p, lambda e: e["content"].update(world_size=2)
    ),
    "a newer schema, resealed": lambda p: _forge(p, lambda e: e["content"].update(schema=99)),
    "per-sample results of another accuracy, resealed": lambda p: _forge(
        p, lambda e: e["content"]["test_hits"].update(bits="A" * 60)
    ),
}


@pytest.mark.parametrize("case", TAMPERING)
def test_a_tampered_finished_run_is_set_aside_and_trained_again(finished, tmp_path, capsys, case):
    state, spec, record = finished
    mine = tmp_path / "state"
    shutil.copytree(state, mine)
    done = Checkpointer(mine, spec).done_path
    TAMPERING[case](done)
    capsys.readouterr()
    again = one_run.train(spec, state_dir=mine, progress=False)
    err = capsys.readouterr().err
    assert f"deba: {done} was not used: " in err, err
    assert "It is set aside as" in err, err
    assert again["final_test_accuracy"] == record["final_test_accuracy"]
    assert again["method"] == "fixed"
    assert len(again["epochs"]) == spec.train.epochs
    assert len(list(done.parent.glob(f"{done.name}.set-aside-*"))) == 1
    assert cache.kept(done, _entry(done)["identity"]) == _entry(done)["content"]  # intact again


def test_an_intact_finished_run_is_reused_without_a_word(finished, capsys):
    state, spec, record = finished
    capsys.readouterr()
    assert one_run.train(spec, state_dir=state, progress=False)["epochs"] == record["epochs"]
    assert "was not used" not in capsys.readouterr().err


def test_a_finished_run_whose_cache_cannot_be_written_keeps_its_record(tmp_path, capsys):
    """The record still reaches the stage; the message names the cache file, not a temp file."""
    spec = tiny_spec("fixed", train={"epochs": 2})
    (tmp_path / "finished").write_text("a file where the cache folder belongs")
    record = one_run.train(spec, state_dir=tmp_path, progress=False)
    err = capsys.readouterr().err
    done = Checkpointer(tmp_path, spec).done_path
    assert len(record["epochs"]) == spec.train.epochs
    assert f"cannot write {done}" in err, err
    assert ".tmp" not in err, err
    assert "its record is kept" in err


def _steptime_stage(monkeypatch, tmp_path):
    from deba_pipeline.stages import steptime as stage

    from helpers import stand_in_table, tiny_cfg

    measured = []

    def fake_table(cfg, arch, dataset, sizes, calm):
        measured.append(arch)
        return stand_in_table(sizes)  # 96: 0.015 s a step

    monkeypatch.setattr(stage, "table", fake_table)
    cfg = tiny_cfg(study={"datasets": ["digits"]})
    cfg.tracking.dir = str(tmp_path / "state")
    return stage, cfg, measured


TABLE_TAMPERING = {
    "a size times 100": lambda p: p.write_text(p.read_text().replace("0.015", "1.5")),
    "a negative time, checksum redone": lambda p: _forge(
        p, lambda e: e["content"]["step_s"].update({"96": -0.015})
    ),
    "a size missing, checksum redone": lambda p: _forge(
        p, lambda e: e["content"]["step_s"].pop("96")
    ),
    "a negative epoch start, checksum redone": lambda p: _forge(
        p, lambda e: e["content"]["epoch_start_s"].update({"64": -0.5})
    ),
    "emptied": lambda p: p.write_text("{}"),
}


@pytest.mark.parametrize("case", TABLE_TAMPERING)
def test_a_tampered_step_time_table_is_set_aside_and_measured_again(
    tmp_path, monkeypatch, capsys, case
):
    stage, cfg, measured = _steptime_stage(monkeypatch, tmp_path)
    records = tmp_path / "runs"
    record = {
        "schema": 2,
        "arch": "test_resnet",
        "dataset": "digits",
        "method": "deba",
        "variant": "baseline",
        "seed": 2,
        "final_test_accuracy": 90.0,
        "train_time_s": 2.0,
        "epochs": [
            {"epoch": e, "batch_size": b, "epoch_time_s": 1.0, "test_accuracy": 90.0}
            for e, b in ((1, 64), (2, 96))
        ],
    }
    (records / "train").mkdir(parents=True)
    (records / "train" / "r.json").write_text(json.dumps(record))
    first = stage.run(cfg, ["test_resnet"], runs=str(records), out=str(tmp_path / "out"))
    kept = next((tmp_path / "state" / "steptime").glob("*.json"))
    TABLE_TAMPERING[case](kept)
    capsys.readouterr()
    again = stage.run(cfg, ["test_resnet"], runs=str(records), out=str(tmp_path / "out"))
    err = capsys.readouterr().err
    assert measured == ["test_resnet", "test_resnet"]
    assert again == first
    assert f"deba: {kept} was not used: " in err, err
    assert json.loads((tmp_path / "out" / "test_resnet.json").read_text()) == first["test_resnet"]


def test_a_measured_table_whose_cache_cannot_be_written_still_reaches_the_stage(
    tmp_path, monkeypatch, capsys
):
    stage, cfg, measured = _steptime_stage(monkeypatch, tmp_path)
    records = tmp_path / "runs" / "train"
    records.mkdir(parents=True)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "steptime").write_text("a file where the cache folder belongs")
    tables = stage.run(cfg, ["test_resnet"], runs=str(records.parent), out=str(tmp_path / "out"))
    err = capsys.readouterr().err
    assert measured == ["test_resnet"]
    assert (
        json.loads((tmp_path / "out" / "test_resnet.json").read_text())
        == tables["test_resnet"]
        != {}
    )
    assert (
        "deba: test_resnet/digits: step times measured; the table is in the stage's output, "
        "but not kept for reuse: cannot write " in err
    ), err
