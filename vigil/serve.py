"""How `vigil up` serves HTTP: uvicorn, with a connection limit, a header timeout and a bounded drain.

uvicorn alone holds every connection it accepts until the client sends a request, and holds a
connection that trickles its headers a byte at a time for ever; 20,000 idle connections took
every file descriptor, and then the store's own sockets failed. Here a connection past
`max_connections` is answered 503 and closed at once, one that has not sent a whole request
head within `header_timeout_s` of going idle is closed, and the descriptor limit is raised to
its hard limit with the connection limit kept well below it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import resource
import signal
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import h11
import uvicorn
from prometheus_client import CollectorRegistry, Counter, Gauge
from uvicorn.protocols.http.h11_impl import H11Protocol

from vigil import lifecycle
from vigil.logs import event, limit_repeats
from vigil.settings import Settings

log = logging.getLogger(__name__)

# The part of the shutdown timeout the HTTP drain may use; the services' close gets the rest. The
# collector keeps storing while requests drain, so most of its queue is flushed in this part.
HTTP_DRAIN_SHARE = 0.75
# Descriptors kept for the store, the WAL, the children and the log: the connection limit
# never goes past half the descriptor limit.
FD_SHARE_FOR_CONNECTIONS = 0.5
_CANCELLED_ANSWER_GRACE_S = 0.5


def _raw_response(status: int, reason: str, message: str, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 answer, written before any request was read, then the connection closes.

    The body is a google.rpc.Status in JSON, as every refusal of the collector is.
    """
    body = json.dumps({"code": 14 if status == 503 else 4, "message": message}).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            event(log, "fd_limit_unchanged", level=logging.WARNING, soft=soft, hard=hard, error=exc)
    return soft


def connection_limit(requested: int, fd_limit: int) -> int:
    return max(1, min(requested, int(fd_limit * FD_SHARE_FOR_CONNECTIONS)))


@dataclass
class ConnectionGuard:
    """The limits every connection's protocol reads, and what they refused."""

    max_connections: int
    header_timeout_s: float
    refused: int = 0
    evicted: int = 0
    header_timeouts: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)

    def register(self, registry: CollectorRegistry, open_connections: Any) -> None:
        gauge = Gauge("vigil_http_connections", "Open HTTP connections.", registry=registry)
        gauge.set_function(lambda: len(open_connections))
        Gauge("vigil_http_connections_limit", "Most open HTTP connections.", registry=registry).set(
            self.max_connections
        )
        self.metrics["refused"] = Counter(
            "vigil_http_connections_refused", "Connections answered 503 at the connection limit.", registry=registry
        )
        self.metrics["evicted"] = Counter(
            "vigil_http_connections_evicted",
            "Idle connections closed at the connection limit to make room for a new one.",
            registry=registry,
        )
        self.metrics["header_timeouts"] = Counter(
            "vigil_http_header_timeouts",
            "Connections closed for not sending a request head in time.",
            registry=registry,
        )

    def count(self, what: str) -> None:
        setattr(self, what, getattr(self, what) + 1)
        counter = self.metrics.get(what)
        if counter is not None:
            counter.inc()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection limit and a deadline for each request head.

    At the limit the connection idle the longest is closed to make room; only when every
    connection has a request in flight is the newcomer answered 503.

    The deadline runs from the moment the connection is idle (opened, or its last answer sent)
    until the app is handling a request; the app's handler bounds the body's read itself.
    """

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._idle_since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._idle_since = self.loop.time()
        if len(self.connections) >= self.guard.max_connections and not self._evict_oldest_idle():
            self._refused = True
            self.transport = transport
            self.guard.count("refused")
            event(log, "connection_refused", level=logging.WARNING, limit=self.guard.max_connections)
            message = f"too many open connections (limit {self.guard.max_connections}); retry later"
            transport.write(_raw_response(503, "Service Unavailable", message, retry_after=1))
            transport.close()
            return
        super().connection_made(transport)
        self._sync_header_timer()

    def _evict_oldest_idle(self) -> bool:
        """Close the connection idle the longest (no request in flight) to make room; False if all are busy.

        Idle keep-alive connections are the server's to close at any time (RFC 9112 §9.6), and
        closing the oldest first means a flood of idle or half-sent connections cannot keep a
        newcomer (a health check, a real client) out: only requests in flight hold their place.
        """
        idle = [
            c
            for c in self.connections
            if isinstance(c, GuardedH11Protocol) and not c._busy() and not c.transport.is_closing()
        ]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c._idle_since)
        self.guard.count("evicted")
        oldest._cancel_header_timer()
        oldest.transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        self._sync_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._idle_since = self.loop.time()
        self._sync_header_timer()

    def _busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _sync_header_timer(self) -> None:
        if self._busy() or self.transport.is_closing():
            self._cancel_header_timer()
        elif self._header_timer is None:
            self._header_timer = self.loop.call_later(self.guard.header_timeout_s, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._busy() or self.transport.is_closing():
            return
        self.guard.count("header_timeouts")
        event(log, "header_timeout", level=logging.WARNING, timeout_s=self.guard.header_timeout_s)
        if self.conn.our_state is h11.IDLE:
            message = f"no request arrived within {self.guard.header_timeout_s:g} s"
            self.transport.write(_raw_response(408, "Request Timeout", message))
        self.transport.close()


def protocol_class(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    return type("VigilH11Protocol", (GuardedH11Protocol,), {"guard": guard})


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose shutdown fits in one timeout and tells handlers it has begun.

    uvicorn waits `timeout_graceful_shutdown` for requests, cancels the rest (their clients get
    a plain 500), and only then starts the app's own shutdown, which has its own timeout. Here
    the request drain takes at most `HTTP_DRAIN_SHARE` of the timeout and the app's shutdown is
    handed the deadline of the whole (`app.state.shutdown_deadline`, see `lifecycle.time_left`); handlers see
    the shutdown signal at once, so a slow upload is answered 503 with Retry-After rather than
    holding the drain.
    """

    def __init__(self, config: uvicorn.Config, shutdown_timeout_s: float, app_state: object = None) -> None:
        super().__init__(config)
        self.shutdown_timeout_s = shutdown_timeout_s
        self.app_state = app_state
        self.shutting_down = asyncio.Event()

    async def startup(self, sockets: list[Any] | None = None) -> None:
        self.lifespan.state[lifecycle.SHUTTING_DOWN] = self.shutting_down
        await super().startup(sockets)
        # What starting built (modules, the app, every service's state: a few hundred thousand objects)
        # lives as long as the process. Frozen, it leaves the collector's generations, so a full
        # collection walks only what came after: on the 256-GPU history store a full collection in the
        # middle of a request took 30-76 ms before, and held every thread's Python for that long.
        gc.collect()
        gc.freeze()

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        started = time.monotonic()
        deadline = started + self.shutdown_timeout_s
        if self.app_state is not None:
            setattr(self.app_state, lifecycle.SHUTDOWN_DEADLINE, deadline)
        self.shutting_down.set()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        drain_deadline = started + self.shutdown_timeout_s * HTTP_DRAIN_SHARE
        while (self.server_state.connections or self.server_state.tasks) and not self.force_exit:
            if time.monotonic() >= drain_deadline:
                break
            await asyncio.sleep(0.05)
        tasks = list(self.server_state.tasks)
        if tasks:
            # each cancelled ingest handler answers 503 itself (the shutdown signal is set)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=_CANCELLED_ANSWER_GRACE_S)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.close()
        event(
            log,
            "http_drained",
            seconds=round(time.monotonic() - started, 3),
            cancelled=len(tasks),
            left_s=round(deadline - time.monotonic(), 3),
        )
        if not self.force_exit:
            await self.lifespan.shutdown()
        event(log, "shutdown_done", seconds=round(time.monotonic() - started, 3), timeout_s=self.shutdown_timeout_s)


def serve(app: Any, settings: Settings, registry: CollectorRegistry | None = None) -> bool:
    """Serve `app` until SIGTERM or SIGINT; return whether it started. Blocks."""
    limit_repeats(settings.log_repeat_limit, settings.log_repeat_interval_s)
    fd_limit = raise_fd_limit()
    guard = ConnectionGuard(connection_limit(settings.max_connections, fd_limit), settings.header_timeout_s)
    if guard.max_connections < settings.max_connections:
        event(
            log,
            "connection_limit_lowered",
            level=logging.WARNING,
            requested=settings.max_connections,
            limit=guard.max_connections,
            fd_limit=fd_limit,
        )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_class(guard),
        log_config=None,
        access_log=False,
    )
    server = DrainingServer(config, settings.shutdown_timeout_s, getattr(app, "state", None))
    if registry is not None:
        guard.register(registry, server.server_state.connections)
    event(log, "http_limits", max_connections=guard.max_connections, fd_limit=fd_limit)
    # uvicorn drains on SIGTERM, restores the previous handler, then re-raises the signal; a
    # no-op handler here lets the caller close children and the store, and exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    return server.started
