"""The collector's own Prometheus metrics, in a registry the app owns (not the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "vigil_collector_requests", "OTLP export requests by HTTP status.", ["code"], registry=registry
        )
        self.points_received = Counter(
            "vigil_collector_points_received", "Datapoints received in decodable requests.", registry=registry
        )
        self.points_accepted = Counter(
            "vigil_collector_points_accepted", "Datapoints stored durably.", registry=registry
        )
        self.points_rejected = Counter(
            "vigil_collector_points_rejected", "Datapoints refused, by reason.", ["reason"], registry=registry
        )
        self.series_refused = Counter(
            "vigil_collector_series_limit_refused",
            "Datapoints refused by the per-metric series limit, by metric.",
            ["metric"],
            registry=registry,
        )
        self.duplicate_requests = Counter(
            "vigil_collector_duplicate_requests",
            "Requests recognised as retries of ones already stored (acknowledged, not stored again).",
            registry=registry,
        )
        self.queue_rows = Gauge(
            "vigil_collector_queue_rows", "Rows waiting in memory for their insert.", registry=registry
        )
        self.queue_capacity = Gauge(
            "vigil_collector_queue_capacity_rows", "Rows the queue may hold.", registry=registry
        )
        self.attribute_cache_bytes = Gauge(
            "vigil_collector_attribute_cache_bytes",
            "Bytes the attribute-set cache holds (bounded by VIGIL_ATTRIBUTE_CACHE_BYTES).",
            registry=registry,
        )
        self.insert_seconds = Histogram(
            "vigil_collector_insert_duration_seconds",
            "Time to insert one batch into one table.",
            ["table"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.insert_rows = Histogram(
            "vigil_collector_insert_rows",
            "Rows per insert.",
            ["table"],
            buckets=(100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000),
            registry=registry,
        )
        self.insert_failures = Counter(
            "vigil_collector_insert_failures",
            "Batch inserts that failed and will be retried.",
            registry=registry,
        )
        self.wal_replayed = Counter(
            "vigil_collector_wal_batches_replayed",
            "Batches replayed from the write-ahead log.",
            registry=registry,
        )
        self.requests_set_aside = Counter(
            "vigil_collector_requests_set_aside",
            "Requests whose rows the store refused (a data error): answered 400 and kept beside the WAL as .refused.",
            registry=registry,
        )
