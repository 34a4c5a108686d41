"""The store: one clickhouse-connect client built from one URL, its schema and its queries."""

from vigil.store.client import Store, StoreError, StoreLockedError, make_client, open_store

__all__ = ["Store", "StoreError", "StoreLockedError", "make_client", "open_store"]
