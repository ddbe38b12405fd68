"""A table's rows: Markdown shows the text, CSV carries the numbers behind it (docs/pipeline.md
"Reading the report")."""

from __future__ import annotations

from deba_pipeline.report.table_formats import Shown, to_csv, to_markdown
from deba_pipeline.report.tables import mean_ci, mean_pm


def test_an_interval_is_text_in_markdown_and_three_numbers_in_csv():
    rows = [
        {"Cell": "a", "ΔAcc": mean_ci(0.5, (-0.25, 1.25), sign=True), "Acc": mean_pm(97.5, 0.31)},
        {"Cell": "b", "ΔAcc": "–", "Acc": mean_pm(None, None)},
        {"Cell": "c", "ΔAcc": mean_ci(-1.0, None, sign=True), "Acc": "not run"},
    ]
    assert rows[0]["ΔAcc"] == "+0.50 [-0.25, +1.25]"  # still the text it shows
    assert to_csv(rows) == (
        "Cell,ΔAcc,ΔAcc low,ΔAcc high,Acc,Acc std\r\n"
        "a,0.5,-0.25,1.25,97.5,0.31\r\n"
        "b,,,,,\r\n"
        "c,-1.0,,,not run,\r\n"
    )  # one seed: no interval; text stays
    assert "| a | +0.50 [-0.25, +1.25] | 97.50 ± 0.31 |" in to_markdown(rows)


def test_a_cell_rounds_its_numbers_to_four_decimals_in_csv():
    rows = [{"x": Shown("1.2", {"": 1.234567})}]
    assert to_csv(rows) == "x\r\n1.2346\r\n"
