"""CSV cells a spreadsheet shows as text and never runs as a formula (OWASP "CSV injection").

A label such as `team` is whatever an agent or a user sent; opened in a spreadsheet, a cell that
starts with `=`, `+`, `-`, `@`, a tab or a carriage return may be read as a formula. Such a text cell
gets a leading `'`, which spreadsheets take as "this is text" and do not show. Numbers stay numbers:
an int or a float, or a text that is exactly a decimal number (`-3`, `1.5e-3`), is written as it is,
so a negative value is still summable and a reader parsing the file gets the same figures back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def cell(value: object) -> object:
    """`value` as the csv module should write it: unchanged unless it is text that could run."""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return value
    if value is None:
        return value
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def row(values: Iterable[object]) -> list[object]:
    return [cell(v) for v in values]
