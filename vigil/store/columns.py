"""The exporter tables' columns, declared once: name, ClickHouse type, codec, role and tables.

The OpenTelemetry Collector ClickHouse exporter fixes these names and types (REFERENCE.md §1), so
Grafana and any OTel collector read and write the same rows. Three things derive from this list:
the DDL (`vigil.store.schema`), the converter's column tuples (`collector.convert`) and the Arrow
types of an insert (`collector.arrow`, via `arrow_type`). A column added here reaches all three.

Order matters: each table's DDL lists its columns in this order, and so do the converter's tuples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

GAUGE, SUM, HISTOGRAM, EXP_HISTOGRAM, SUMMARY = (
    "otel_metrics_gauge",
    "otel_metrics_sum",
    "otel_metrics_histogram",
    "otel_metrics_exponential_histogram",
    "otel_metrics_summary",
)
METRIC_TABLES = (GAUGE, SUM, HISTOGRAM, EXP_HISTOGRAM, SUMMARY)

ATTRIBUTE_MAP = "Map(LowCardinality(String), String)"


class Role(StrEnum):
    """How the converter fills a column; it decides which of convert's tuples the column joins."""

    METRIC = "metric"  # constant across one metric's points: resource, scope, name, unit, temporality
    POINT = "point"  # changes from point to point: attributes, times, values
    EXEMPLAR = "exemplar"  # the Exemplars nested columns, filled only for the points that carry some


@dataclass(frozen=True)
class Column:
    """One column of the exporter tables. `fields` makes it a Nested column of (name, type) pairs."""

    name: str
    type: str
    role: Role
    tables: tuple[str, ...] = METRIC_TABLES
    codec: str = "ZSTD(1)"
    fields: tuple[tuple[str, str], ...] = ()
    migration: int = 2  # the schema migration that adds it (2 creates the tables)

    def ddl(self) -> str:
        if not self.fields:
            return f"{self.name} {self.type} CODEC({self.codec})"
        inner = ",\n".join(f"        {name} {type_}" for name, type_ in self.fields)
        return f"{self.name} Nested (\n{inner}\n    ) CODEC({self.codec})"

    def flat(self) -> Iterator[tuple[str, str]]:
        """(name, type) as inserts and `system.columns` see them: a Nested column is one array per field."""
        if not self.fields:
            yield self.name, self.type
            return
        for name, type_ in self.fields:
            yield f"{self.name}.{name}", f"Array({type_})"


_M, _P, _E = Role.METRIC, Role.POINT, Role.EXEMPLAR
_TIME = "Delta, ZSTD(1)"
_HISTOGRAMS = (HISTOGRAM, EXP_HISTOGRAM)
_WITH_COUNT = (HISTOGRAM, EXP_HISTOGRAM, SUMMARY)

EXPORTER_COLUMNS: tuple[Column, ...] = (
    Column("ResourceAttributes", ATTRIBUTE_MAP, _M),
    Column("ResourceSchemaUrl", "String", _M),
    Column("ScopeName", "String", _M),
    Column("ScopeVersion", "String", _M),
    Column("ScopeAttributes", ATTRIBUTE_MAP, _M),
    Column("ScopeDroppedAttrCount", "UInt32", _M),
    Column("ScopeSchemaUrl", "String", _M),
    Column("ServiceName", "LowCardinality(String)", _M),
    Column("MetricName", "String", _M),
    Column("MetricDescription", "String", _M),
    Column("MetricUnit", "String", _M),
    Column("Attributes", ATTRIBUTE_MAP, _P),
    Column("StartTimeUnix", "DateTime64(9)", _P, codec=_TIME),
    Column("TimeUnix", "DateTime64(9)", _P, codec=_TIME),
    Column("Value", "Float64", _P, (GAUGE, SUM)),
    Column("Count", "UInt64", _P, _WITH_COUNT, codec=_TIME),
    Column("Sum", "Float64", _P, _WITH_COUNT),
    Column("BucketCounts", "Array(UInt64)", _P, (HISTOGRAM,)),
    Column("ExplicitBounds", "Array(Float64)", _P, (HISTOGRAM,)),
    Column("Scale", "Int32", _P, (EXP_HISTOGRAM,)),
    Column("ZeroCount", "UInt64", _P, (EXP_HISTOGRAM,)),
    Column("PositiveOffset", "Int32", _P, (EXP_HISTOGRAM,)),
    Column("PositiveBucketCounts", "Array(UInt64)", _P, (EXP_HISTOGRAM,)),
    Column("NegativeOffset", "Int32", _P, (EXP_HISTOGRAM,)),
    Column("NegativeBucketCounts", "Array(UInt64)", _P, (EXP_HISTOGRAM,)),
    Column("ValueAtQuantiles", "Nested", _P, (SUMMARY,), fields=(("Quantile", "Float64"), ("Value", "Float64"))),
    Column(
        "Exemplars",
        "Nested",
        _E,
        (GAUGE, SUM, HISTOGRAM, EXP_HISTOGRAM),
        fields=(
            ("FilteredAttributes", ATTRIBUTE_MAP),
            ("TimeUnix", "DateTime64(9)"),
            ("Value", "Float64"),
            ("SpanId", "String"),
            ("TraceId", "String"),
        ),
    ),
    Column("Flags", "UInt32", _P),
    Column("Min", "Float64", _P, _HISTOGRAMS),
    Column("Max", "Float64", _P, _HISTOGRAMS),
    Column("AggregationTemporality", "Int32", _M, (SUM, HISTOGRAM, EXP_HISTOGRAM)),
    Column("IsMonotonic", "Bool", _M, (SUM,), codec=_TIME),
    # Vigil's own, not the exporter's: seconds since the series' previous point as its writer saw it,
    # 0 when unknown (another writer leaves it 0). A point 60 s or more after its predecessor is alone in
    # its minute, so it is its own 1-minute rollup row (migration 14, `vigil.store.schema_minutes`).
    Column("IntervalSeconds", "UInt32", _P, (GAUGE,), codec="T64, ZSTD(1)", migration=14),
)
INTERVAL = "IntervalSeconds"


def table_columns(table: str) -> tuple[Column, ...]:
    """The columns of one exporter table, in DDL order."""
    if table not in METRIC_TABLES:
        raise KeyError(f"{table!r} is not an exporter table; expected one of {', '.join(METRIC_TABLES)}")
    return tuple(c for c in EXPORTER_COLUMNS if table in c.tables)


def flat_names(table: str, role: Role, *, every_table: bool | None = None) -> tuple[str, ...]:
    """Flat names of `table`'s columns in `role`; `every_table` keeps only shared (True) or only
    kind-specific (False) columns, the split the converter works by."""
    return tuple(
        name
        for column in table_columns(table)
        if column.role is role and (every_table is None or (column.tables == METRIC_TABLES) == every_table)
        for name, _ in column.flat()
    )


def flat_types(table: str) -> dict[str, str]:
    """Flat name → ClickHouse type, as `system.columns` reports them."""
    return {name: type_ for column in table_columns(table) for name, type_ in column.flat()}


_SCALARS: dict[str, pa.DataType] = {
    "String": pa.string(),
    "Bool": pa.bool_(),
    "Int32": pa.int32(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Float64": pa.float64(),
    "DateTime64(9)": pa.timestamp("ns"),
}


def _split_arguments(inner: str) -> list[str]:
    """`LowCardinality(String), String` → the two arguments, splitting only at the top level."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(inner):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    parts.append(inner[start:].strip())
    return parts


def arrow_type(ch_type: str) -> pa.DataType:
    """The Arrow type the engine reads into `ch_type`, for the types the exporter tables use."""
    if ch_type in _SCALARS:
        return _SCALARS[ch_type]
    head, _, rest = ch_type.partition("(")
    args = _split_arguments(rest[:-1]) if rest.endswith(")") else []
    if head == "LowCardinality" and len(args) == 1:
        return arrow_type(args[0])
    if head == "Array" and len(args) == 1:
        return pa.list_(arrow_type(args[0]))
    if head == "Map" and len(args) == 2:
        return pa.map_(arrow_type(args[0]), arrow_type(args[1]))
    raise ValueError(f"no Arrow type for ClickHouse type {ch_type!r}; add it to vigil.store.columns")


def arrow_types() -> dict[str, pa.DataType]:
    """Flat column name → Arrow type, over every exporter table (a name has one type in all of them)."""
    types: dict[str, pa.DataType] = {}
    for table in METRIC_TABLES:
        for name, ch_type in flat_types(table).items():
            types.setdefault(name, arrow_type(ch_type))
    return types
