"""params.yaml is validated by the structured schema before any work starts."""

import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from deba_pipeline.config import Params, load_params, merge
from deba_pipeline.core.errors import ConfigError
from deba_pipeline.execution.preflight import preflight

from helpers import SMALL_STUDY, stage

ROOT = Path(__file__).resolve().parents[1]


def test_schema_defaults_are_the_one_source():
    cfg = merge(OmegaConf.create({}))
    assert cfg == OmegaConf.structured(Params)
    assert cfg.train.lr == 0.01
    assert cfg.deba.growth == 1.5
    assert cfg.deba.rollback == 0.8


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"trian": {}}, "unknown key `trian`. Did you mean `train`?"),
        ({"deba": {"cooldwn": 3}}, "unknown key `deba.cooldwn`. Did you mean `deba.cooldown`?"),
        (
            {"train": {"epochs": "many"}},
            "`train.epochs` = 'many' is not allowed: it must be an integer",
        ),
        (
            {"train": {"epochs": 0}},
            "`train.epochs` = 0 is not allowed: it must be an integer in [2, 10000]",
        ),
        (
            {"deba": {"window": 1}},
            '`deba.window` = 1 is not allowed: it must be an integer >= 2 (epochs) or "full"',
        ),
        (
            {"deba": {"growth": 0.9}},
            "`deba.growth` = 0.9 is not allowed: it must be a finite number > 1",
        ),
        ({"deba": {"theta_stab": -1.0}}, "`deba.theta_stab` = -1.0 is not allowed"),
        ({"deba": {"min_batch": 64, "max_batch": 32}}, "`deba.min_batch` = 64 is not allowed"),
        (
            {"deba": {"thresholds": "magic"}},
            "`deba.thresholds` = 'magic' is not allowed: it must be calibrated | paper | fixed",
        ),
        ({"study": {"datasets": ["imagenet"]}}, "`study.datasets` = 'imagenet' is not allowed"),
        (
            {"ablate": {"variants": {"fast": {"cooldown": -2}}}},
            "`ablate.variants.fast.cooldown` = -2 is not allowed",
        ),
        ({"tracking": {"wandb": "cloud"}}, "`tracking.wandb` = 'cloud' is not allowed"),
        (
            {"deba": {"signal_options": {"grad_cosine": {}}}},
            "`deba.signal_options` = ['grad_cosine'] is not allowed: it must be options of signals listed in deba.signals",
        ),
        (
            {"deba": {"rule_options": [1, 2]}},
            "`deba.rule_options` = [1, 2] is not allowed: it must be a mapping",
        ),
        ({"study": {"seeds": 7}}, "`study.seeds` = 7 is not allowed: it must be a list"),
        ({"train": [1]}, "`train` = [1] is not allowed: it must be a mapping"),
    ],
)
def test_bad_params_name_the_file_and_key(tmp_path, params, message):
    path = tmp_path / "params.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(params)))
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"study": {"archs": ["resnet_18"]}},
            "unknown architecture 'resnet_18': not a timm model name. Did you mean",
        ),
        ({"deba": {"rule": "dbea"}}, "unknown rule 'dbea'. Available rules: deba"),
        ({"deba": {"signals": ["grad_variance", "grad_cosin"]}}, "unknown signal 'grad_cosin'"),
        ({"deba": {"plugins": ["plugins/missing.py"]}}, "does not exist: fix the path"),
        (
            {"ablate": {"dataset": "cifar10"}},
            "`ablate.dataset` = 'cifar10' is not in study.datasets",
        ),
        (
            {"deba": {"rule_options": {"at": [3]}}},
            "`deba`: rule 'deba' does not take the option 'at' (from `rule_options`); it takes no options.",
        ),
        (
            {"ablate": {"variants": {"x": {"policy_options": {"lr_rule": "sqrt"}}}}},
            "`ablate.variants.x`: policy 'multiplicative' does not take the option 'lr_rule'",
        ),
        (
            {"deba": {"plugins": ["elsewhere/grad_cosine.py"]}},
            "'elsewhere/grad_cosine.py' is not in plugins/: the stages that train depend on plugins/",
        ),
        (
            {"train": {"batch_size": 8}},
            "`deba`: `batch_size` = 8 is not allowed: it must be an integer in [min_batch, max_batch] = [16, 2048]",
        ),
        (
            {"deba": {"thresholds": "paper"}},
            "`deba`: deba.thresholds is 'paper' but paper Table 1 has "
            "no thresholds for 'test_resnet'",
        ),
    ],
)
def test_preflight_names_the_problem(params, message):
    cfg = merge(OmegaConf.merge(SMALL_STUDY, params), "params.yaml")
    with pytest.raises(ConfigError, match="params.yaml") as info:
        preflight(cfg, "params.yaml")
    assert message in str(info.value)


def test_cli_prints_one_line_and_no_traceback(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  epohcs: 3\n")
    result = subprocess.run(
        ["deba", *stage("profile", "--arch", "test_resnet")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "deba: error: params.yaml: unknown key `train.epohcs`. Did you mean `train.epochs`?"
    )
    assert "Traceback" not in result.stderr
