"""A table's rows written out: Markdown for reading, and CSV with the numbers behind each cell
in columns of their own."""

from __future__ import annotations

import csv
import io


class Shown(str):
    """A table cell: its text, as Markdown shows it, and the numbers behind it, as a CSV column
    each ({suffix of the column's name: value}), so a reader of the CSV never parses text."""

    numbers: dict

    def __new__(cls, text: str, numbers: dict):
        cell = super().__new__(cls, text)
        cell.numbers = numbers
        return cell


def _cell(value) -> str:
    """A Markdown table cell: a literal | would end the cell, so it is escaped."""
    return str(value).replace("|", "\\|")


def to_markdown(rows) -> str:
    if not rows:
        return "_No runs for this table._\n"
    header = list(rows[0])
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(r.get(h, "")) for h in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows) -> str:
    """The rows as CSV: a column of `Shown` cells becomes a column per number behind them (an
    interval's mean, low and high), rounded to 4 decimals, empty where there is none."""
    if not rows:
        return ""
    columns = {}
    for name in rows[0]:
        suffixes = [
            suffix
            for row in rows
            if isinstance(row.get(name), Shown)
            for suffix in row[name].numbers
        ]
        columns[name] = list(dict.fromkeys(suffixes)) or None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(
        [name + suffix for name, suffixes in columns.items() for suffix in (suffixes or [""])]
    )
    for row in rows:
        writer.writerow(
            [
                _number(row.get(name), suffix) if suffixes else row.get(name, "")
                for name, suffixes in columns.items()
                for suffix in (suffixes or [""])
            ]
        )
    return buffer.getvalue()


def _number(cell, suffix: str):
    if not isinstance(cell, Shown):  # text in a column of numbers: kept, in the first column
        return "" if suffix or cell in (None, "–") else cell
    value = cell.numbers.get(suffix)
    return "" if value is None else round(value, 4)
