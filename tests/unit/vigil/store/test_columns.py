"""The exporter columns, declared once, give the converter and the Arrow writer what they had."""

import pyarrow as pa
import pytest

from collector.arrow import ARROW_TYPES
from collector.convert import EXEMPLAR_COLUMNS, POINT_COLUMNS, SHARED_COLUMNS, column_names
from vigil.store.columns import METRIC_TABLES, SUMMARY, arrow_type, flat_types, table_columns


@pytest.mark.parametrize(
    ("ch_type", "arrow"),
    [
        ("Map(LowCardinality(String), String)", pa.map_(pa.string(), pa.string())),
        ("LowCardinality(String)", pa.string()),
        ("Array(Map(LowCardinality(String), String))", pa.list_(pa.map_(pa.string(), pa.string()))),
        ("Array(DateTime64(9))", pa.list_(pa.timestamp("ns"))),
        ("Bool", pa.bool_()),
        ("UInt32", pa.uint32()),
    ],
)
def test_arrow_types_follow_clickhouse_types(ch_type: str, arrow: pa.DataType) -> None:
    assert arrow_type(ch_type) == arrow


def test_a_type_without_an_arrow_mapping_is_named() -> None:
    with pytest.raises(ValueError, match="Decimal"):
        arrow_type("Decimal(10, 2)")


@pytest.mark.parametrize("table", METRIC_TABLES)
def test_converter_columns_and_arrow_types_cover_each_table_exactly(table: str) -> None:
    names = column_names(table)
    types = flat_types(table)
    assert sorted(names) == sorted(types)  # every column filled, none the table lacks
    assert all(ARROW_TYPES[name] == arrow_type(types[name]) for name in names)
    assert set(SHARED_COLUMNS + POINT_COLUMNS) <= set(names)
    assert set(EXEMPLAR_COLUMNS).isdisjoint(names) == (table == SUMMARY)


def test_unknown_tables_are_named() -> None:
    with pytest.raises(KeyError, match="otel_metrics_nope"):
        table_columns("otel_metrics_nope")
