"""Typed ingest errors. The router maps each to its HTTP status in one place."""

from __future__ import annotations


class IngestError(Exception):
    status = 400
    retry_after: float | None = None


class MalformedPayload(IngestError):
    status = 400


class PayloadTooLarge(IngestError):
    status = 413


class UnsupportedMediaType(IngestError):
    status = 415


class Unauthorized(IngestError):
    status = 401


class QueueFull(IngestError):
    """The in-memory queue is at its bound: the client should retry later."""

    status = 429

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(IngestError):
    """The insert failed or the collector is stopping; nothing was acknowledged."""

    status = 503

    def __init__(self, message: str, retry_after: float = 2.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestTimeout(IngestError):
    """The client sent its body too slowly; nothing was read into the queue."""

    status = 408


class InternalError(IngestError):
    """A fault of ours, not of the request: answered like every refusal, with a Status body."""

    status = 500


class IdempotencyConflict(IngestError):
    """An Idempotency-Key already used for a different body: answering 200 would drop this body."""

    status = 422


class RequestRefusedByStore(IngestError):
    """The store refused this request's rows (a data error), so it was set aside rather than retried."""

    status = 400
