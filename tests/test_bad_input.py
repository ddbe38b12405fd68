"""Every bad input ends in one clear message (exit 2, no traceback) that names the key, value or
plugin, and nothing computed before is touched."""

import json
import urllib.error

import pytest
from omegaconf import OmegaConf

from deba_pipeline.cli import main
from deba_pipeline.config import merge
from deba_pipeline.core.errors import DebaError
from deba_pipeline.engine import data as data_module
from deba_pipeline.engine import loop
from deba_pipeline.engine.data import Split
from deba_pipeline.execution import one_run
from deba_pipeline.execution.study import run_spec

from helpers import small_params, stage

PROFILE = ("profile", "--arch", "test_resnet")
SENTINEL = {"schema": 1, "note": "computed before the fault"}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working folder holding an earlier result that must survive every failure."""
    monkeypatch.chdir(tmp_path)
    record = tmp_path / "runs" / "train" / "earlier.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps(SENTINEL))
    return tmp_path


def run_cli(project, capsys, params: dict, *argv):
    (project / "params.yaml").write_text(small_params(params))
    argv = argv or ("train", "--arch", "test_resnet")
    code = main(stage(*argv))
    err = capsys.readouterr().err
    assert json.loads((project / "runs" / "train" / "earlier.json").read_text()) == SENTINEL
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"train": {"epohcs": 3}},
            "params.yaml: unknown key `train.epohcs`. Did you mean `train.epochs`?",
        ),
        (
            {"train": {"lr": "fast"}},
            "params.yaml: `train.lr` = 'fast' is not allowed: it must be a number",
        ),
        (
            {"data": {"test_fraction": 0}},
            "`data.test_fraction` = 0.0 is not allowed: it must be a number in (0, 1)",
        ),
        ({"data": {"test_fraction": 1.5}}, "`data.test_fraction` = 1.5 is not allowed"),
        (
            {"train": {"epochs": 10**9}},
            "`train.epochs` = 1000000000 is not allowed: it must be an integer in [2, 10000]",
        ),
        (
            {"study": {"seeds": [2, 2]}},
            "`study.seeds` = [2, 2] is not allowed: it must be a list without repeats (2 appears twice)",
        ),
        (
            {"study": {"archs": ["test_resnet", "test_resnet"]}},
            "`study.archs` = ['test_resnet', 'test_resnet'] is not allowed",
        ),
        (
            {"deba": {"signals": []}},
            "`deba.signals` = [] is not allowed: it must be a non-empty list",
        ),
        (
            {"deba": {"rule_options": {"margin": 2}}},
            "rule 'deba' does not take the option 'margin'",
        ),
        ({"study": {"name": "../x"}}, "`study.name` = '../x' is not allowed"),
        (
            {"data": {"synthetic": {"num_classes": 1}}},
            "`data.synthetic.num_classes` = 1 is not allowed: it must be an integer >= 2",
        ),
        (
            {"train": {"device": "tpu"}},
            "`train.device` = 'tpu' is not allowed: it must be auto, cpu, mps, cuda or cuda:N",
        ),
        (
            {"train": {"precision": "bf16", "device": "cpu"}},
            "`train.precision` = 'bf16' is not allowed on the CPU",
        ),
        (
            {"taxonomy": {"seed_spread": float("nan")}},
            "`taxonomy.seed_spread` = nan is not allowed",
        ),
        (
            {"timing": {"estimate": "mean"}},
            "`timing.estimate` = 'mean' is not allowed: it must be paired or median",
        ),
        ({"tracking": {"dir": " "}}, "`tracking.dir` = ' ' is not allowed"),
        (
            {"execution": {"backend": "slurm"}},
            "`execution.backend` = 'slurm' is not allowed: it must be local or ray",
        ),
        (
            {"execution": {"gpus_per_run": -1}},
            "`execution.gpus_per_run` = -1 is not allowed: it must be auto or a number >= 0",
        ),
        (
            {"execution": {"cpus_per_run": 0}},
            "`execution.cpus_per_run` = 0.0 is not allowed: it must be a number > 0",
        ),
        (
            {"execution": {"cpus_per_run": float("inf")}},
            "`execution.cpus_per_run` = inf is not allowed: it must be a number > 0",
        ),
        (
            {"execution": {"address": "head-node"}},
            "`execution.address` = 'head-node' is not allowed: it must be HOST:PORT, as `ray start --head` prints it",
        ),
        (
            {"execution": {"address": "10.0.0.5:99999"}},
            "`execution.address` = '10.0.0.5:99999' is not allowed",
        ),
        (
            {"study": {"seeds": [-1]}},
            "params.yaml: `study.seeds` = -1 is not allowed: it must be an integer in [0, 2^63 - 1]",
        ),
        (
            {"deba": {"rollback": 1.5}},
            "params.yaml: `deba.rollback` = 1.5 is not allowed: it must be a number in (0, 1)",
        ),
        ({"deba": {"cooldown": -1}}, "params.yaml: `deba.cooldown` = -1 is not allowed"),
        (
            {"study": {"archs": ["resnet_18"]}},
            "params.yaml: `study.archs`: unknown architecture 'resnet_18'",
        ),
        (
            {"study": {"datasets": ["mnist"]}},
            "params.yaml: `study.datasets` = 'mnist' is not allowed: it must be one of digits, synthetic, cifar10, cifar100",
        ),
        (
            {"deba": {"policy": "exponential"}},
            "params.yaml: `deba`: unknown policy 'exponential'. Available policies: multiplicative",
        ),
        ({"deba": {"plugins": ["plugins/nope.py"]}}, "params.yaml: `deba.plugins`: plugin file"),
        (
            {"train": {"model_kwargs": {"test_vit": {"num_classes": 3}}}},
            "`train.model_kwargs.test_vit` = ['num_classes'] is not allowed",
        ),
    ],
)
def test_bad_params(project, capsys, params, expected):
    code, err = run_cli(project, capsys, params)
    assert code == 2
    assert expected in err


def test_an_empty_params_file_is_refused_not_read_as_the_paper_grid(project, capsys):
    (project / "params.yaml").write_text("# nothing yet\n")
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "deba: error: params.yaml is empty: write a study into it with `deba preset "
        "quick` (or `deba preset paper` for the paper's full grid).\n"
    )


def test_an_arch_the_study_does_not_list_is_refused(project, capsys):
    code, err = run_cli(project, capsys, {}, "train", "--arch", "resnet18")
    assert code == 2
    assert (
        "`--arch` = 'resnet18' is not allowed: it must be one of study.archs in "
        "params.yaml: test_resnet" in err
    )
    assert not (project / "runs" / "train" / "resnet18").exists()


def test_a_variants_mapping_replaces_the_papers_variants():
    cfg = merge(OmegaConf.create({"ablate": {"variants": {"only": {"cooldown": 2}}}}))
    assert list(cfg.ablate.variants) == ["only"]
    assert list(merge(OmegaConf.create({"ablate": {"variants": {}}})).ablate.variants) == []


def test_plugin_file_that_does_not_import(project, capsys):
    (project / "plugins").mkdir()
    (project / "plugins" / "broken.py").write_text("raise ImportError('needs scipy')\n")
    code, err = run_cli(project, capsys, {"deba": {"plugins": ["plugins/broken.py"]}})
    assert code == 2
    assert "broken.py' failed to import: ImportError: needs scipy" in err


def test_debug_flag_shows_the_traceback(project, capsys):
    (project / "params.yaml").write_text("trian: {}\n")
    with pytest.raises(DebaError, match="unknown key `trian`"):
        main(["--debug", *stage("train", "--arch", "test_resnet")])


def cifar_params(root, download):
    return {
        "study": {"datasets": ["cifar10"]},
        "ablate": {"dataset": "cifar10"},
        "data": {"root": str(root), "download": download},
        "train": {"epochs": 2, "device": "cpu"},
        "tracking": {"wandb": "disabled"},
    }


def test_cifar_offline_without_files(project, capsys):
    code, err = run_cli(project, capsys, cifar_params(project / "data", False), *PROFILE)
    assert code == 2
    assert "cifar10 is not in" in err
    assert "cifar-10-batches-py and data.download is false" in err
    assert "cifar-10-python.tar.gz" in err
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in err


def test_cifar_download_that_fails(project, capsys, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    code, err = run_cli(project, capsys, cifar_params(project / "data", True), *PROFILE)
    assert code == 2
    assert "could not be downloaded (<urlopen error no network>)" in err
    assert (
        f"place cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/ folder) in {project / 'data'}/"
        in err
    )


def test_cifar_corrupt_files(project, capsys):
    folder = project / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in ("data_batch_1", "batches.meta", "test_batch"):
        (folder / name).write_bytes(b"truncated")
    code, err = run_cli(project, capsys, cifar_params(project / "data", False), *PROFILE)
    assert code == 2
    assert "are corrupt or truncated (checksum mismatch): delete that folder" in err


def test_dataset_smaller_than_one_batch(project, capsys):
    params = {
        "study": {"datasets": ["synthetic"]},
        "ablate": {"dataset": "synthetic"},
        "data": {"synthetic": {"train_size": 40, "test_size": 10, "image_size": 8}},
        "train": {"epochs": 2, "device": "cpu"},
        "tracking": {"wandb": "disabled"},
    }
    code, err = run_cli(project, capsys, params, *PROFILE)
    assert code == 2
    assert "train.batch_size = 64 is larger than the training set (40 samples of synthetic)" in err


def test_label_count_that_does_not_match_the_model(project, monkeypatch):
    real = data_module.load_split

    def five_classes(*args):
        split = real(*args)
        return Split(split.x_train, split.y_train, split.x_test, split.y_test, 5)

    monkeypatch.setattr(loop, "load_split", five_classes)
    cfg = merge(OmegaConf.create({"train": {"epochs": 2, "device": "cpu"}}))
    spec = run_spec(cfg, "test_resnet", "digits", 2, "fixed", "baseline")
    with pytest.raises(DebaError, match="digits has labels up to 9 but the model has 5 outputs"):
        one_run.train(spec, state_dir=project / ".deba", progress=False)
    assert not (project / ".deba" / "checkpoints").exists()


def test_unknown_preset_and_missing_params(project, capsys):
    assert main(["validate", "quick"]) == 2
    assert (
        f"no pipelines/ folder in {project}: run deba from the project root"
        in capsys.readouterr().err
    )
    (project / "pipelines").mkdir()
    (project / "pipelines" / "mine.yaml").write_text("study: {name: mine}\n")
    assert main(["validate", "nonexistent"]) == 2
    assert (
        "unknown preset 'nonexistent': choose one of mine (files in pipelines/)"
        in capsys.readouterr().err
    )
    assert main(stage("train", "--arch", "test_resnet", "--params", "absent.yaml")) == 2
    assert "absent.yaml: no such params file" in capsys.readouterr().err


def test_aggregate_without_records(project, capsys):
    assert main(["aggregate", "--runs", str(project / "empty"), "--out", "out"]) == 2
    assert "no run records under" in capsys.readouterr().err


def test_model_that_cannot_take_the_input_size(project, capsys):
    params = {
        "study": {"archs": ["test_vit"]},
        "train": {"epochs": 2, "device": "cpu"},
        "tracking": {"wandb": "disabled"},
    }
    code, err = run_cli(project, capsys, params, "profile", "--arch", "test_vit")
    assert code == 2
    assert (
        "test_vit cannot take digits inputs of shape (1, 8, 8) (Input height (8) should be divisible by patch size (16).)"
        in err
    )
    assert "set train.image_size.test_vit" in err


def test_one_epoch_study_is_refused_by_validate(project, capsys):
    (project / "params.yaml").write_text(small_params({"train": {"epochs": 1}}))
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "deba: error: params.yaml: `train.epochs` = 1 is not allowed: it must be an "
        "integer in [2, 10000] (the Δ signals and the calibration need a previous epoch).\n"
    )


def test_calibrate_on_profiles_without_a_defined_variation(project, capsys):
    record = {
        "schema": 2,
        "arch": "test_resnet",
        "dataset": "digits",
        "seed": 2,
        "method": "fixed",
        "variant": "profile",
        "final_test_accuracy": 50.0,
        "train_time_s": 1.0,
        "epochs": [
            {
                "epoch": 1,
                "batch_size": 64,
                "epoch_time_s": 1.0,
                "train_loss": 2.0,
                "signals": {"grad_variance": 1e-3, "grad_norm_variation": None},
            }
        ],
    }
    path = project / "runs" / "profile" / "test_resnet" / "digits" / "fixed-profile-seed2.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    code, err = run_cli(project, capsys, {}, "calibrate")
    assert code == 2
    assert err.count("\n") == 1
    assert "cannot calibrate test_resnet/digits: its profile runs have no epoch" in err
    assert not (project / "results" / "thresholds.json").exists()


def test_an_unexpected_exception_is_one_line_too(project, capsys, monkeypatch):
    from deba_pipeline.stages import calibrate

    def broken(*args):
        raise KeyError("epochs")

    monkeypatch.setattr(calibrate, "run", broken)
    code, err = run_cli(project, capsys, {}, "calibrate")
    assert code == 1
    assert err == (
        "deba: error: unexpected KeyError: 'epochs'. This is a bug in deba-pipeline: "
        "rerun with --debug for the traceback and report it.\n"
    )
    with pytest.raises(KeyError):
        main(stage("calibrate", "--debug"))
