"""What a record carries for the report to judge it (its class count, so a run at chance is
flagged), and the names a misspelt dataset is offered."""

from deba_pipeline.execution.one_run import train

from helpers import tiny_spec


def test_the_report_flags_a_run_that_ended_at_chance():
    from deba_pipeline.report.text import at_chance, chance_note

    runs = [
        {
            "arch": "a",
            "dataset": "d",
            "method": "fixed",
            "variant": "baseline",
            "seed": 2,
            "num_classes": 3,
            "final_test_accuracy": 38.9,
        },  # 33.3 + 6.7 = 40.0: flagged
        {
            "arch": "a",
            "dataset": "d",
            "method": "deba",
            "variant": "baseline",
            "seed": 2,
            "num_classes": 3,
            "final_test_accuracy": 40.1,
        },
        {
            "arch": "a",
            "dataset": "e",
            "method": "gns",
            "variant": "baseline",
            "seed": 2,
            "num_classes": 10,
            "final_test_accuracy": 18.9,
        },  # 10 + 9 = 19.0: flagged
        {
            "arch": "a",
            "dataset": "e",
            "method": "gns",
            "variant": "baseline",
            "seed": 3,
            "final_test_accuracy": 5.0,
        },
    ]  # no class count: not judged
    assert at_chance(runs) == [
        "a/d/fixed seed 2 (38.9%, chance 33.3%)",
        "a/e/gns seed 2 (18.9%, chance 10.0%)",
    ]
    assert chance_note(runs).startswith(" **At chance** (2 runs ended less than a tenth of the way")


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
    assert "image folders (data.folders of params.yaml):\n  mine" in out
    assert "img" in out
