"""Rows as ClickHouse's TabSeparated writes them, so a value never splits a row or a column.

ClickHouse escapes backslash, tab, line feed, carriage return, NUL, backspace, form feed and
the single quote with a backslash, and writes NULL as `\\N`; a reader of ClickHouse's own
TSV (or `clickhouse-local --input-format TSV`) reads ours back unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

_ESCAPES = str.maketrans(
    {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0", "\b": "\\b", "\f": "\\f", "'": "\\'"}
)
NULL = "\\N"


def field(value: object) -> str:
    if value is None:
        return NULL
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="backslashreplace")
    return str(value).translate(_ESCAPES)


def row(values: Iterable[object]) -> str:
    return "\t".join(field(v) for v in values)
