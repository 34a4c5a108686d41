"""What the JSON APIs share: a request body read within a bound, and typed refusals answered with the
status their view module's `REFUSAL_STATUS` gives them (`vigil.incident_view`, `vigil.runbook_view`), so
the API and the dashboard's pages, which may not import one another, answer a refusal alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

Statuses = Sequence[tuple[type[Exception], int]]


def status_of(exc: Exception, statuses: Statuses) -> int:
    """The status of the first kind in `statuses` that `exc` is; 500 if none (a kind missing from the table)."""
    return next((code for kind, code in statuses if isinstance(exc, kind)), 500)


def kinds(statuses: Statuses) -> tuple[type[Exception], ...]:
    return tuple(kind for kind, _ in statuses)


async def answer(statuses: Statuses, call: Callable[..., Any], *args: Any) -> Any:
    """`call(*args)` off the event loop (views block on the store); a refusal in `statuses` leaves as
    HTTPException with its status and message."""
    try:
        return await run_in_threadpool(call, *args)
    except kinds(statuses) as exc:
        raise HTTPException(status_of(exc, statuses), str(exc)) from None


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 past `max_bytes`: by its declared length before anything is read, else
    as soon as the stream passes the bound."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, f"body over {max_bytes} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            raise HTTPException(413, f"body over {max_bytes} bytes")
    return bytes(raw)
