"""One batch into the store: every table, then the ledger; split on a data error so only bad requests fail.

A batch is several inserts (one per metric table, then the ledger). When one fails:

- the store is unavailable (`vigil.store.store_unavailable`): the error propagates, the
  batch stays in the WAL and is retried whole, with the same tokens;
- otherwise it is a data error: the batch is halved and each half inserted on its own, down to
  single requests. Tables the whole batch already reached are not inserted again by the halves
  (no duplicate rows), and each half's tokens derive from its place in the split
  (`<batch>.0.1:<table>`), so a replay after a crash repeats the same split and deduplicates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from collector.arrow import to_arrow
from collector.convert import Conversion, TableColumns
from collector.metrics import CollectorMetrics
from collector.wal import WalEntry
from vigil.store import Store, store_unavailable
from vigil.store.schema import INGEST_LEDGER, METRIC_TABLES

LEDGER_COLUMNS = ("Key", "BatchId", "Points", "CommittedAt", "BodySha256")


@dataclass(frozen=True)
class Refusal:
    index: int  # position of the request in the batch
    error: Exception


def merge(conversions: Sequence[Conversion]) -> dict[str, TableColumns]:
    tables: dict[str, TableColumns] = {}
    for conversion in conversions:
        for table, cols in conversion.tables.items():
            if not cols.rows:
                continue
            if table not in tables:
                tables[table] = TableColumns(table)
            tables[table].extend(cols)
    return tables


class BatchWriter:
    def __init__(self, store: Store, metrics: CollectorMetrics) -> None:
        self.store = store
        self.metrics = metrics

    def write(self, token: str, entries: Sequence[WalEntry], conversions: Sequence[Conversion]) -> list[Refusal]:
        """Store what can be stored; return the requests the store refused. Raises when it is unavailable."""
        return self._write(token, list(entries), list(conversions), frozenset())

    def _write(
        self, token: str, entries: list[WalEntry], conversions: list[Conversion], done: frozenset[str]
    ) -> list[Refusal]:
        reached: set[str] = set(done)
        try:
            self._insert(token, entries, conversions, reached)
            return []
        except Exception as exc:
            if store_unavailable(exc):
                raise
            if len(entries) == 1:
                return [Refusal(0, exc)]
            mid = len(entries) // 2
            done_now = frozenset(reached)
            left = self._write(f"{token}.0", entries[:mid], conversions[:mid], done_now)
            right = self._write(f"{token}.1", entries[mid:], conversions[mid:], done_now)
            return left + [Refusal(r.index + mid, r.error) for r in right]

    def _insert(self, token: str, entries: list[WalEntry], conversions: list[Conversion], reached: set[str]) -> None:
        tables = merge(conversions)
        # Every Arrow table is built before the first insert: a conversion error then stores nothing.
        arrow = {t: to_arrow(cols) for t, cols in tables.items() if t not in reached}
        for table in METRIC_TABLES:
            data = arrow.get(table)
            if data is None:
                continue
            started = time.perf_counter()
            self.store.insert_arrow(table, data, dedup_token=f"{token}:{table}")
            self.metrics.insert_seconds.labels(table).observe(time.perf_counter() - started)
            self.metrics.insert_rows.labels(table).observe(tables[table].rows)
            reached.add(table)
        now = datetime.now(UTC)
        n = len(entries)
        ledger = [
            [e.key for e in entries],
            [token] * n,
            [c.accepted for c in conversions],
            [now] * n,
            [e.digest for e in entries],
        ]
        self.store.insert_columns(INGEST_LEDGER, ledger, LEDGER_COLUMNS, dedup_token=f"{token}:ledger")
