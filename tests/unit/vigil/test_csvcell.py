"""CSV downloads never hand a spreadsheet a formula: text that could run gets a leading `'`,
numbers (and text that is exactly a number) are written as they are."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import pytest

from dashboard.history import _download
from vigil.csvcell import FORMULA_STARTS, cell, row
from vigil.query_client import print_result
from vigil.store import QueryResult

HOSTILE = ['=HYPERLINK("http://x","y")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\r=1"]


@pytest.mark.parametrize("text", HOSTILE)
def test_text_that_could_run_is_quoted(text: str) -> None:
    assert text.startswith(FORMULA_STARTS)
    assert cell(text) == "'" + text


@pytest.mark.parametrize("value", [-3, -2.5, 0, 7, 1e-9, -1e300, "-3", "+4.5", "-1.5e-3", ".5"])
def test_numbers_stay_numbers(value: object) -> None:
    assert cell(value) == value


def test_ordinary_text_and_none_unchanged() -> None:
    assert row(["search", "a=b", "x-y", None, True]) == ["search", "a=b", "x-y", None, "True"]


def _read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_history_download_guards_labels_and_keeps_numbers() -> None:
    query = SimpleNamespace(group_by="team", start=0, end=3600)
    table = (["team", "allocated_h", "busy_h"], [["=cmd|'/C calc'!A0", 1.5, -0.25], ["search", 2.0, 0.5]])
    r = _download("gpu-hours", "csv", lambda _: table, SimpleNamespace(query=query))  # type: ignore[arg-type]
    rows = _read(r.body.decode())
    assert rows[1] == ["'=cmd|'/C calc'!A0", "1.5", "-0.25"]
    assert rows[2] == ["search", "2.0", "0.5"]


def test_vigil_query_csv_guards_cells() -> None:
    out = io.StringIO()
    print_result(QueryResult(("team", "value", "@col"), [("-x", -1.25, 3), ("+SUM(1)", 2, None)]), "csv", out)
    assert _read(out.getvalue()) == [["team", "value", "'@col"], ["'-x", "-1.25", "3"], ["'+SUM(1)", "2", ""]]
