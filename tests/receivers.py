"""A webhook receiver on loopback that keeps what it was sent, for the end-to-end alerting tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

MAX_BODY = 1024 * 1024


def serve_on_loopback(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """Serve `handler` on a free loopback port from a daemon thread; return the server and its /hook URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hook"


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() when it arrived
    path: str
    body: Any


class WebhookReceiver:
    """Answers every POST 200 and records it; `alerts()` flattens Alertmanager v4 payloads per alert."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with receiver._lock:
                    receiver.received.append(Received(time.monotonic(), self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server, self.url = serve_on_loopback(Handler)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def payloads(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def alerts(self, alertname: str | None = None) -> list[tuple[float, dict[str, Any], dict[str, Any]]]:
        """(arrival, payload, alert) for each alert of each v4 payload, optionally only one alertname's."""
        out = []
        for r in self.payloads():
            if not isinstance(r.body, dict):
                continue
            for a in r.body.get("alerts", []):
                if alertname is None or a.get("labels", {}).get("alertname") == alertname:
                    out.append((r.at, r.body, a))
        return out

    def wait_for(self, check: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.1)
        return check()
