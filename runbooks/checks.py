"""Checks read the store through its windowed read layer (`vigil.store.window`), as alert rules do."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from runbooks.model import CheckExpr
from vigil.store import Store
from vigil.store.schema import SchemaContext
from vigil.store.window import WindowQuery, WindowValue, window_values

QueryFn = Callable[[Store, WindowQuery, float, SchemaContext], Sequence[WindowValue]]


class StoreCheck:
    """`CheckFn` over the store: reads the check's window ending now, then judges it."""

    def __init__(
        self, store: Store, schema: SchemaContext, clock: Callable[[], float], query: QueryFn = window_values
    ) -> None:
        self._store, self._schema, self._clock, self._query = store, schema, clock, query

    def __call__(self, check: CheckExpr) -> tuple[bool, list[dict[str, Any]]]:
        now = self._clock()
        main, ratio = check.queries()
        values = self._query(self._store, main, now, self._schema)
        totals = self._query(self._store, ratio, now, self._schema) if ratio is not None else None
        return check.judge(values, totals)
