"""What the HTTP server tells the services while it runs, through ASGI lifespan state.

The server puts an `asyncio.Event` under `SHUTTING_DOWN` in the lifespan state, which the
ASGI server copies into every request's scope; it is set when shutdown begins, so a handler
that is still waiting on its client (a slow upload) can answer 503 at once instead of
holding the drain until its deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

SHUTTING_DOWN = "vigil.shutting_down"
# The attribute of `app.state` the server sets, when shutdown begins, to the `time.monotonic()`
# by which the whole shutdown must end: the app's lifespan gives its services' close what is left.
SHUTDOWN_DEADLINE = "shutdown_deadline"


def shutting_down(scope: Mapping[str, Any]) -> asyncio.Event | None:
    """The request's shutdown signal, or None under a server that gives none (a test client)."""
    signal = (scope.get("state") or {}).get(SHUTTING_DOWN)
    return signal if isinstance(signal, asyncio.Event) else None


def time_left(app_state: object, default: float) -> float:
    """Seconds left until the shutdown deadline the server set on `app.state`, else `default`."""
    deadline = getattr(app_state, SHUTDOWN_DEADLINE, None)
    if not isinstance(deadline, float):
        return default
    return max(0.0, deadline - time.monotonic())
