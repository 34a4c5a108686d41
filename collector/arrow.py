"""`TableColumns` → a pyarrow Table in the exporter tables' column types, built mostly in C.

Why Arrow rather than clickhouse-connect's native column writer: the native writer walks every
map of every row in Python; here each distinct map (attributes repeat across points and requests)
is converted once and the column is made with `take`, and per-metric constant columns are
expanded from their runs with `numpy.repeat`. The engine reads Arrow natively.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from collector.convert import EXEMPLAR_COLUMNS, TableColumns
from vigil.store.columns import arrow_types

ARROW_TYPES: dict[str, pa.DataType] = arrow_types()  # derived from the one column declaration
_DEDUPLICATED = {"Attributes"}  # per-point columns whose values repeat as shared objects


def _arrow_type(name: str) -> pa.DataType:
    return ARROW_TYPES.get(name, pa.string())


def _plain(value: Any, dtype: pa.DataType) -> Any:
    return list(value.items()) if isinstance(value, dict) and pa.types.is_map(dtype) else value


def _distinct(values: list[Any], dtype: pa.DataType) -> tuple[pa.Array, list[int]]:
    """Distinct values (by identity: the converter shares one object per distinct map) and indices."""
    slots: dict[int, int] = {}
    distinct: list[Any] = []
    indices = []
    for value in values:
        key = id(value)
        slot = slots.get(key)
        if slot is None:
            slot = slots[key] = len(distinct)
            distinct.append(_plain(value, dtype))
        indices.append(slot)
    return pa.array(distinct, type=dtype), indices


def _run_column(cols: TableColumns, position: int, dtype: pa.DataType, counts: np.ndarray) -> pa.Array:
    distinct, indices = _distinct([run[position] for run, _ in cols.runs], dtype)
    return distinct.take(pa.array(np.repeat(np.asarray(indices, dtype=np.int32), counts)))


def _exemplar_column(cols: TableColumns, position: int, dtype: pa.DataType) -> pa.Array:
    if not cols.exemplars:
        return pa.array([[]], type=dtype).take(pa.array(np.zeros(cols.rows, dtype=np.int32)))
    values: list[Any] = [[]] * cols.rows
    for row, ex in cols.exemplars:
        values[row] = [_plain(v, dtype.value_type) for v in ex[position]]
    return pa.array(values, type=dtype)


def to_arrow(cols: TableColumns) -> pa.Table:
    counts = np.fromiter((count for _, count in cols.runs), dtype=np.int64, count=len(cols.runs))
    arrays = []
    for name in cols.names:
        dtype = _arrow_type(name)
        if name in cols.point:
            if name in _DEDUPLICATED:
                distinct, indices = _distinct(cols.point[name], dtype)
                arrays.append(distinct.take(pa.array(indices, type=pa.int32())))
            else:
                arrays.append(pa.array(cols.point[name], type=dtype))
        elif name in EXEMPLAR_COLUMNS:
            arrays.append(_exemplar_column(cols, EXEMPLAR_COLUMNS.index(name), dtype))
        else:
            arrays.append(_run_column(cols, cols.metric_columns.index(name), dtype, counts))
    return pa.Table.from_arrays(arrays, names=list(cols.names))
