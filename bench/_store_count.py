"""Rows in the gauge table of a stopped embedded store (a separate process: one engine per process)."""

import sys

from vigil.store import open_store

store = open_store(f"chdb://{sys.argv[1]}")
try:
    print(store.query_rows("SELECT count() FROM otel_metrics_gauge")[0][0])
finally:
    store.close()
