"""The collector as one object: limits, converter, pipeline and metrics, built from settings."""

from __future__ import annotations

import hashlib
import hmac
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

SERIES_WINDOW_S = 3600.0
MAX_KEY_LENGTH = 255


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenCheck:
    """Bearer tokens held only as SHA-256 digests, compared in constant time."""

    def __init__(self, tokens: list[str]) -> None:
        self._digests = [token_digest(t) for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, authorization: str | None) -> None:
        if not self._digests:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token: send Authorization: Bearer <token>")
        offered = token_digest(token.strip())
        ok = False
        for digest in self._digests:  # no early exit: every digest is compared
            ok |= hmac.compare_digest(offered, digest)
        if not ok:
            raise Unauthorized("bearer token not recognised")


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_attributes=settings.max_attributes,
        max_key_length=settings.max_attribute_key_length,
        max_value_length=settings.max_attribute_value_length,
        max_series_per_metric=settings.max_series_per_metric,
        max_age_ns=settings.max_point_age_hours * 3600 * 10**9,
        max_future_ns=settings.max_point_future_minutes * 60 * 10**9,
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
        self.limiter = SeriesLimiter(limits.max_series_per_metric)
        self.converter = Converter(limits, self.limiter)
        self._convert_lock = threading.Lock()  # the attribute cache and series limiter are shared
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
        )

    def start(self) -> None:
        self.pipeline.start()

    def close(self) -> None:
        self.pipeline.close(timeout=self.settings.shutdown_timeout_s)

    def _convert(self, raw: bytes, media: str) -> Conversion:
        request = decode.parse(raw, media)
        with self._convert_lock:
            if time.monotonic() >= self._next_roll:
                self.limiter.roll()
                self._next_roll = time.monotonic() + SERIES_WINDOW_S
            return self.converter.convert(request, self.clock())

    def convert_entry(self, entry: WalEntry) -> Conversion:
        """A body as received (the WAL's replay path) → validated columns."""
        return self._convert(decode.decompress(entry.body, entry.encoding, self.settings.max_body_bytes), entry.media)

    def ingest(
        self, body: bytes, content_type: str | None, content_encoding: str | None, idempotency_key: str | None
    ) -> tuple[Conversion, Future[Outcome] | None]:
        """Decode, validate and queue one request; the future resolves once its rows are durable.

        Without an `Idempotency-Key`, the key is the SHA-256 of the decompressed body, so a
        byte-identical retry is recognised whatever its compression.
        """
        media = decode.media_type(content_type)
        encoding = (content_encoding or "identity").strip().lower()
        raw = decode.decompress(body, encoding, self.settings.max_body_bytes)
        if idempotency_key and len(idempotency_key) > MAX_KEY_LENGTH:
            raise MalformedPayload(f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters")
        key = (idempotency_key or "").strip() or "sha256:" + hashlib.sha256(raw).hexdigest()  # blank = absent
        conversion = self._convert(raw, media)
        self.metrics.points_received.inc(conversion.received)
        for reason, n in conversion.rejected.items():
            self.metrics.points_rejected.labels(reason).inc(n)
        for metric, n in conversion.series_refused.items():
            self.metrics.series_refused.labels(metric).inc(n)
        if not conversion.accepted:
            return conversion, None
        return conversion, self.pipeline.submit(WalEntry(key, media, encoding, body), conversion)

    def health(self) -> tuple[bool, dict[str, Any]]:
        return True, {"queue_rows": self.pipeline.queued_rows}
