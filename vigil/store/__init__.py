"""The store: one clickhouse-connect client built from one URL, its schema and its queries."""

from vigil.store.client import (
    QueryRefused,
    QueryResult,
    QueryTimedOut,
    QueryTooLarge,
    ReadLimits,
    Store,
    StoreError,
    StoreLockedError,
    StoreQueryError,
    make_client,
    open_store,
)
from vigil.store.faults import store_unavailable

__all__ = [
    "QueryRefused",
    "QueryResult",
    "QueryTimedOut",
    "QueryTooLarge",
    "ReadLimits",
    "Store",
    "StoreError",
    "StoreLockedError",
    "StoreQueryError",
    "make_client",
    "open_store",
    "store_unavailable",
]
