"""What the HTTP server tells the services while it runs, through ASGI lifespan state.

The server puts an `asyncio.Event` under `SHUTTING_DOWN` in the lifespan state, which the
ASGI server copies into every request's scope; it is set when shutdown begins, so a handler
that is still waiting on its client (a slow upload) can answer 503 at once instead of
holding the drain until its deadline. The services' close reads `SHUTDOWN_DEADLINE`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

SHUTTING_DOWN = "vigil.shutting_down"
# `time.monotonic()` by which the whole shutdown must end, set when it begins: the app's own
# shutdown (the collector draining its queue) should take no longer than what is left.
SHUTDOWN_DEADLINE = "vigil.shutdown_deadline"


def shutting_down(scope: Mapping[str, Any]) -> asyncio.Event | None:
    """The request's shutdown signal, or None under a server that gives none (a test client)."""
    signal = (scope.get("state") or {}).get(SHUTTING_DOWN)
    return signal if isinstance(signal, asyncio.Event) else None
