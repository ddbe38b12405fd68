"""Issue 15: datasets as plugins, image folders, the streaming path, a model of one's own."""

import json
import subprocess

import pytest
import torch
from omegaconf import OmegaConf

from deba_pipeline.core.errors import DebaError
from deba_pipeline.engine.data import DeviceData, StreamingData, load_split
from deba_pipeline.execution.one_run import train

from helpers import tiny_cfg, tiny_spec, without_times


def digits_folder(root, per_class=None, test_classes=range(10)):
    """The bundled digits as PNG files: train/<digit>/*.png and test/<digit>/*.png."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for i, (image, label) in enumerate(zip(bunch.images, bunch.target)):
        part = "test" if i % 5 == 0 else "train"
        if part == "test" and label not in test_classes:
            continue
        folder = root / part / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        if per_class is None or len(list(folder.iterdir())) < per_class:
            Image.fromarray((image * 15).astype("uint8"), mode="L").save(folder / f"{i}.png")
    return root


def test_streaming_gives_the_same_batches_in_the_same_order_whatever_the_size():
    cfg = tiny_cfg()
    split = load_split("digits", 2, cfg.data)
    held = DeviceData(split, torch.device("cpu"), seed=2)
    streamed = StreamingData(split, torch.device("cpu"), seed=2, workers=2)
    loader = streamed.loader
    for size in (64, 96, 50, 64):  # the batch size changes between epochs
        a, b = list(held.train_batches(size)), list(streamed.train_batches(size))
        assert len(a) == len(b) == split.x_train.shape[0] // size
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert streamed.loader is loader
    assert loader.persistent_workers


def test_a_run_forced_down_the_streaming_path_matches_the_device_path(tmp_path):
    deba = {"cooldown": 0, "theta_conf": 10.0, "theta_stab": 10.0}  # grows every epoch
    held = train(tiny_spec(deba=deba), state_dir=tmp_path / "a", progress=False)
    streamed = train(
        tiny_spec(deba=deba, data={"placement": "stream", "workers": 1}),
        state_dir=tmp_path / "b",
        progress=False,
    )
    assert held["data_path"] == "device"
    assert streamed["data_path"] == "stream"
    assert [e["batch_size"] for e in streamed["epochs"]] == [64, 64, 96, 144]

    def same(record):
        kept = without_times(record).items()
        return {k: v for k, v in kept if k not in ("key", "config", "data_path")}

    assert same(streamed) == same(held)


def test_an_image_folder_reads_like_torchvisions_imagefolder(tmp_path):
    x_train, y_train, x_test, y_test, classes = __import__(
        "deba_pipeline.engine.datasets.folders", fromlist=["load_folder"]
    ).load_folder(digits_folder(tmp_path / "d"))
    assert classes == 10
    assert x_train.shape[1:] == (1, 8, 8)
    assert x_test.shape[1:] == (1, 8, 8)
    assert len(y_train) + len(y_test) == 1797
    assert set(y_test.tolist()) == set(range(10))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda r: (r / "train").mkdir(parents=True) or (r / "test").mkdir(),
            "image folder {r}/train has no class folders: put each class's PNG or JPEG images in "
            "{r}/train/<class>/.",
        ),
        (
            lambda r: digits_folder(r, per_class=2, test_classes=range(9)),
            "image folder {r}: class '9' has training images but no {r}/test/9/ folder: every class "
            "needs test images.",
        ),
        (
            lambda r: (
                digits_folder(r, per_class=2) and (r / "train" / "3" / "bad.png").write_text("x")
            ),
            "cannot read image {r}/train/3/bad.png (UnidentifiedImageError): delete or replace it.",
        ),
        (
            lambda r: (
                digits_folder(r, per_class=2)
                and __import__("PIL.Image")
                .Image.new("L", (16, 16))
                .save(r / "train" / "4" / "big.png")
            ),
            "images in {r} have different sizes (e.g. 8×8 and 16×16) and train.image_size names no "
            "side for this architecture: set train.image_size.<arch> (e.g. 32)",
        ),
    ],
)
def test_a_bad_image_folder_is_one_clear_message(tmp_path, make, message):
    from deba_pipeline.engine.datasets.folders import load_folder

    root = tmp_path / "mine"
    make(root)
    with pytest.raises(DebaError) as info:
        load_folder(root)
    assert str(info.value).startswith(message.format(r=root))


def test_mixed_sizes_with_an_image_size_and_a_folder_too_large(tmp_path, monkeypatch):
    from PIL import Image

    from deba_pipeline.engine.datasets import folders

    root = digits_folder(tmp_path / "mine", per_class=2)
    Image.new("L", (16, 16)).save(root / "train" / "4" / "big.png")
    assert folders.load_folder(root, image_size=12)[0].shape[1:] == (1, 12, 12)
    monkeypatch.setattr(folders.os, "sysconf", lambda key: 1 if key == "SC_AVPHYS_PAGES" else 4096)
    with pytest.raises(
        DebaError,
        match=f"image folder {root} decodes to 0.0 GiB of float32 "
        f"images but this machine has 0.0 GiB of memory free",
    ):
        folders.load_folder(root, image_size=12)


def test_plugins_lists_datasets_and_the_projects_models(tmp_path, monkeypatch, capsys):
    import shutil

    from deba_pipeline.cli import main

    from helpers import ROOT

    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "plugins", tmp_path / "plugins")
    (tmp_path / "params.yaml").write_text("deba:\n  plugins: [plugins/tiny_mlp.py]\n")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "datasets:\n  cifar10 " in out
    assert "  digits " in out
    assert f"tiny_mlp                 file {tmp_path / 'plugins' / 'tiny_mlp.py'}" in out


@pytest.mark.slow
def test_my_images_and_my_model_on_two_processes_through_dvc_repro(tmp_path):
    """The micro preset on an image folder of the digits, with a model from a plugin file, each
    run on two processes (torchrun, gloo): one `dvc repro` for issue 15's and docs/cluster.md's
    end-to-end checks, to keep the suite inside its time."""
    from helpers import copy_project

    workspace = copy_project(tmp_path / "clone", brief_timing=True)
    digits_folder(workspace / "images")
    params = OmegaConf.load(workspace / "params.yaml")
    params.data.folders = {"mydigits": "images"}
    params.study.datasets = ["mydigits"]
    params.ablate.dataset = "mydigits"
    params.study.archs = ["tiny_mlp"]
    params.deba.plugins = ["plugins/tiny_mlp.py"]
    params.train.processes = 2
    OmegaConf.save(params, workspace / "params.yaml")
    result = subprocess.run(
        ["dvc", "repro"], cwd=workspace, capture_output=True, text=True, timeout=500
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in (workspace / "runs").rglob("*.json")]
    assert len(records) == 7
    assert {(r["arch"], r["dataset"], r["data_path"], r["world_size"]) for r in records} == {
        ("tiny_mlp", "mydigits", "device", 2)
    }
    assert all(e["batch_size"] % 2 == 0 for r in records for e in r["epochs"])
    report = (workspace / "reports" / "REPORT.md").read_text()
    assert "datasets: mydigits" in report
    assert "tiny_mlp" in report
