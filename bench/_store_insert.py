"""Baseline for bench/ingest.py: the store's own columnar insert rate for the same rows.

The rows are the benchmark's requests converted by the collector's converter and built into Arrow
tables once, before the clock starts; only `Store.insert_arrow` (the call the collector's writer
makes) is timed. This is the store's ceiling for these rows with Vigil's schema.
"""

import json
import sys
import time

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from bench.ingest import POINTS, Bodies
from collector.arrow import to_arrow
from collector.convert import Converter, Limits
from collector.pipeline import merge
from vigil.settings import Settings
from vigil.store import open_store
from vigil.store.schema import GAUGE, SchemaContext, migrate

path, total_rows = sys.argv[1], int(sys.argv[2])
batch_rows = Settings().batch_rows
store = open_store(f"chdb://{path}")
migrate(store, SchemaContext())
bodies = Bodies()
converter = Converter(Limits())
per_batch = max(1, batch_rows // POINTS)
batches = []
for _ in range(max(1, total_rows // (per_batch * POINTS))):
    conversions = []
    for _ in range(per_batch):
        request = ExportMetricsServiceRequest()
        request.ParseFromString(bodies.next())
        conversions.append(converter.convert(request, time.time_ns()))
    batches.append(to_arrow(merge(conversions)[GAUGE]))
rows = sum(b.num_rows for b in batches)
started = time.perf_counter()
for i, table in enumerate(batches):
    store.insert_arrow(GAUGE, table, dedup_token=f"baseline-{i}:{GAUGE}")
elapsed = time.perf_counter() - started
stored = store.query_rows("SELECT count() FROM otel_metrics_gauge")[0][0]
store.close()
print(json.dumps({"rows_per_s": rows / elapsed, "rows": rows, "stored": stored, "batch_rows": per_batch * POINTS}))
