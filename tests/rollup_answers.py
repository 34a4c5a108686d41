"""What the rollup tests compare: per series (`gpu.index`) and bucket, avg, min, max, last and count from
raw rows, and the same from a rollup or the minutes view through `vigil.store.read.AGGREGATE_SQL`."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.store import Store
from vigil.store.read import AGGREGATE_SQL
from vigil.store.schema import GAUGE

AGGREGATES = ("avg", "min", "max", "last", "count")


def raw(store: Store, bucket_fn: str) -> list[tuple[Any, ...]]:
    return store.query_rows(
        f"""SELECT Attributes['gpu.index'] AS gpu, toDateTime({bucket_fn}(TimeUnix)) AS b, avg(Value), min(Value),
               max(Value), argMax(Value, TimeUnix), toFloat64(count())
        FROM {GAUGE} WHERE MetricName = 'gpu.utilization' GROUP BY gpu, b ORDER BY gpu, b"""
    )


def rolled(store: Store, table: str, columns: str | None = None, bucket: str = "TimeBucket") -> list[tuple[Any, ...]]:
    columns = columns or ", ".join(AGGREGATE_SQL[a][1] for a in AGGREGATES)
    return store.query_rows(
        f"""SELECT Attributes['gpu.index'] AS gpu, {bucket} AS b, {columns}
        FROM {table} WHERE MetricName = 'gpu.utilization' GROUP BY gpu, b ORDER BY gpu, b"""
    )


def same(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> None:
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert g[:2] == w[:2]
        assert g[2] == pytest.approx(w[2], rel=1e-12)  # avg: a sum divided, within float error
        assert g[3:] == w[3:]  # min, max, last, count: exact


def insert(store: Store, rows: list[tuple[str, int, float, int]], block: int) -> None:
    """(gpu.index, time in ns, value, IntervalSeconds) rows in blocks: the rollups merge many inserts' rows."""
    for i in range(0, len(rows), block):
        part = rows[i : i + block]
        store.insert_columns(
            GAUGE,
            [
                ["gpu.utilization"] * len(part),
                [{"service.name": "t", "team": "ml"}] * len(part),
                [{"gpu.index": g} for g, _, _, _ in part],
                [t for _, t, _, _ in part],
                [v for _, _, v, _ in part],
                [n for _, _, _, n in part],
            ],
            ["MetricName", "ResourceAttributes", "Attributes", "TimeUnix", "Value", "IntervalSeconds"],
        )


def close(a: Any, b: Any) -> None:
    """Equal within floating-point error, through lists, tuples, dicts and dataclasses: answers read from
    another table or in another order sum their floats in another order."""
    if isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-9)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            close(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            close(a[k], b[k])
    elif hasattr(a, "__dataclass_fields__"):
        close(vars(a), vars(b))
    else:
        assert a == b
