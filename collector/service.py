"""The collector as one object: limits, converter, pipeline and metrics, built from settings."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from collector import decode
from collector.convert import Conversion, Converter, Limits, SeriesLimiter
from collector.errors import MalformedPayload, Unauthorized
from collector.metrics import CollectorMetrics
from collector.pipeline import IngestPipeline, Outcome
from collector.wal import WalEntry, WriteAheadLog
from vigil.settings import Settings
from vigil.store import Store
from vigil.tokens import BearerTokens, TokenRefused

SERIES_WINDOW_S = 3600.0
MAX_KEY_LENGTH = 255
DIGEST_KEY_PREFIX = "sha256:"  # the key of a request sent without one


class TokenCheck:
    """The ingest tokens (`VIGIL_INGEST_TOKENS`); each also scopes the idempotency keys sent with it."""

    def __init__(self, tokens: list[str]) -> None:
        self._tokens = BearerTokens(tokens)

    @property
    def enabled(self) -> bool:
        return self._tokens.enabled

    def check(self, authorization: str | None) -> str:
        """The token's scope for idempotency keys (a short digest), or "" when no tokens are configured."""
        if not self._tokens.enabled:
            return ""
        try:
            return self._tokens.verify(authorization).hex()[:16]
        except TokenRefused as exc:
            raise Unauthorized(f"{exc}: send Authorization: Bearer <one of VIGIL_INGEST_TOKENS>") from None


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_attributes=settings.max_attributes,
        max_key_length=settings.max_attribute_key_length,
        max_value_length=settings.max_attribute_value_length,
        max_series_per_metric=settings.max_series_per_metric,
        max_age_ns=settings.max_point_age_hours * 3600 * 10**9,
        max_future_ns=settings.max_point_future_minutes * 60 * 10**9,
        max_name_length=settings.max_metric_name_length,
        max_description_length=settings.max_metric_description_length,
        max_unit_length=settings.max_metric_unit_length,
        max_scope_field_length=settings.max_scope_field_length,
        max_exemplars=settings.max_exemplars_per_point,
        max_buckets=settings.max_histogram_buckets,
        max_quantiles=settings.max_summary_quantiles,
        max_metric_names=settings.max_metric_names,
        max_series_total=settings.max_series_total,
        attribute_cache_bytes=settings.attribute_cache_bytes,
    )


class Collector:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: CollectorRegistry,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = CollectorMetrics(registry)
        self.tokens = TokenCheck(settings.ingest_tokens)
        limits = limits_from(settings)
        self.limiter = SeriesLimiter(limits.max_series_per_metric, limits.max_metric_names, limits.max_series_total)
        self.converter = Converter(limits, self.limiter)
        self.metrics.attribute_cache_bytes.set_function(lambda: self.converter.attributes.bytes)
        self._convert_lock = threading.Lock()  # the attribute cache and series limiter are shared
        # Parsing runs outside that lock, so without this every threadpool worker could hold a parsed
        # 16 MB body at once: four such bodies of empty messages took the process from 0.6 to 2.6 GB.
        self._decoders = threading.BoundedSemaphore(settings.ingest_decoders)
        self._next_roll = time.monotonic() + SERIES_WINDOW_S
        self.pipeline = IngestPipeline(
            store,
            self.convert_entry,
            WriteAheadLog(Path(settings.data) / "wal"),
            self.metrics,
            batch_rows=settings.batch_rows,
            batch_wait_s=settings.batch_wait_ms / 1000,
            queue_rows=settings.queue_rows,
            writers=settings.insert_writers,
            remembered_keys_bytes=settings.idempotency_cache_bytes,
            stuck_after_s=settings.wal_stuck_after_s,
        )

    def start(self) -> None:
        self.pipeline.start()

    def close(self, timeout_s: float | None = None) -> None:
        """Store what is queued within `timeout_s` (default the shutdown timeout), then stop."""
        self.pipeline.close(timeout=self.settings.shutdown_timeout_s if timeout_s is None else timeout_s)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """False when the write-ahead log does not drain (see `IngestPipeline.health`); never blocks."""
        return self.pipeline.health()

    def _convert(self, raw: bytes, media: str, now_ns: int) -> Conversion:
        request = decode.parse(raw, media)
        with self._convert_lock:
            if time.monotonic() >= self._next_roll:
                self.limiter.roll()
                self._next_roll = time.monotonic() + SERIES_WINDOW_S
            return self.converter.convert(request, now_ns)

    def convert_entry(self, entry: WalEntry) -> Conversion:
        """A body as received (the WAL's replay path) → validated columns, against the clock it first met."""
        raw = decode.decompress(
            entry.body, entry.encoding, self.settings.max_body_bytes, self.settings.max_gzip_members
        )
        return self._convert(raw, entry.media, entry.accepted_ns or self.clock())

    def ingest(
        self,
        body: bytes,
        content_type: str | None,
        content_encoding: str | None,
        idempotency_key: str | None,
        token_scope: str = "",
    ) -> tuple[Conversion, Future[Outcome] | None]:
        """Decode, validate and queue one request; the future resolves once its rows are durable.

        Without an `Idempotency-Key`, the key is the SHA-256 of the decompressed body, so a
        byte-identical retry is recognised whatever its compression. Keys are scoped by
        `token_scope` (from `TokenCheck.check`), so two tenants' keys never meet; the body's
        digest travels with the key, so a key reused for another body is refused (422).
        """
        media = decode.media_type(content_type)
        encoding = (content_encoding or "identity").strip().lower()
        with self._decoders:
            return self._ingest(body, media, encoding, idempotency_key, token_scope)

    def _ingest(
        self, body: bytes, media: str, encoding: str, idempotency_key: str | None, token_scope: str
    ) -> tuple[Conversion, Future[Outcome] | None]:
        raw = decode.decompress(body, encoding, self.settings.max_body_bytes, self.settings.max_gzip_members)
        if idempotency_key and len(idempotency_key) > MAX_KEY_LENGTH:
            raise MalformedPayload(f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters")
        digest = hashlib.sha256(raw).hexdigest()
        key = (idempotency_key or "").strip() or DIGEST_KEY_PREFIX + digest  # blank = absent
        if key.startswith(DIGEST_KEY_PREFIX) and key != DIGEST_KEY_PREFIX + digest:
            # the keys of keyless requests: a client naming another body's digest would have that
            # body refused (422) when it later arrives without a key
            raise MalformedPayload(
                f"Idempotency-Key may start with {DIGEST_KEY_PREFIX!r} only as the SHA-256 of the body; "
                "choose another key"
            )
        if token_scope:
            key = f"{token_scope}/{key}"
        accepted_ns = self.clock()
        conversion = self._convert(raw, media, accepted_ns)
        self.metrics.points_received.inc(conversion.received)
        for reason, n in conversion.rejected.items():
            self.metrics.points_rejected.labels(reason).inc(n)
        for metric, n in conversion.series_refused.items():
            self.metrics.series_refused.labels(metric).inc(n)
        if not conversion.accepted:
            return conversion, None
        entry = WalEntry(key, media, encoding, body, accepted_ns=accepted_ns, digest=digest)
        return conversion, self.pipeline.submit(entry, conversion)
