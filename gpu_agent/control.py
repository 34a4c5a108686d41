"""The agent's small local HTTP endpoint (`--control HOST:PORT`).

- `GET /healthz`: 200 while cycles run on time, 503 when sampling has stalled (so a liveness probe
  catches a hung agent instead of trusting stale values), with spool and export state;
- `GET /probe`: the probe report as JSON;
- `GET /faults`, `POST /faults` (JSON: `{"kind": "xid", "gpu": 1, "code": 48}`; kinds xid, thermal,
  ecc, fall-off-bus), `DELETE /faults`: fault injection, for the simulated backend only (409 on
  real GPUs).

A thread of the standard library's HTTP server: no framework, so the agent stays small.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gpu_agent.model import Fault, FaultKind
from vigil.logs import event

log = logging.getLogger(__name__)


class ControlServer:
    def __init__(
        self,
        address: tuple[str, int],
        health: Callable[[], tuple[bool, dict[str, Any]]],
        probe: Callable[[], dict[str, Any]],
        backend: Any,
    ) -> None:
        self._health, self._probe, self._backend = health, probe, backend
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # access logs stay out of the agent's log
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                status, body = server.get(self.path)
                self._answer(status, body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(min(length, 65536)) if length else b""
                status, body = server.post(self.path, raw)
                self._answer(status, body)

            def do_DELETE(self) -> None:
                status, body = server.delete(self.path)
                self._answer(status, body)

        self.httpd = ThreadingHTTPServer(address, Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="control", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        host = str(host)
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- routes

    def get(self, path: str) -> tuple[int, Any]:
        route = path.split("?", 1)[0].rstrip("/")
        if route == "/healthz":
            ok, body = self._health()
            return (200 if ok else 503), body
        if route == "/probe":
            return 200, self._probe()
        if route == "/faults":
            return 200, {"faults": self._backend.faults() if self._simulated else []}
        return 404, {"error": f"no route {route!r}: try /healthz, /probe or /faults"}

    @property
    def _simulated(self) -> bool:
        return bool(getattr(self._backend, "simulated", False))

    def post(self, path: str, raw: bytes) -> tuple[int, Any]:
        if path.split("?", 1)[0].rstrip("/") != "/faults":
            return 404, {"error": "POST /faults only"}
        if not self._simulated:
            return 409, {"error": "faults can be injected into the simulated backend only (--simulate N)"}
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            kind = FaultKind(str(body.pop("kind", "")))
            fault = Fault.from_mapping(kind, body)
            self._backend.inject(fault)
        except (ValueError, TypeError) as exc:
            kinds = ", ".join(k.value for k in FaultKind)
            return 400, {"error": f'{exc} (kinds: {kinds}; e.g. {{"kind": "xid", "gpu": 1, "code": 48}})'}
        event(log, "fault_requested", **fault.as_dict())
        return 201, {"fault": fault.as_dict()}

    def delete(self, path: str) -> tuple[int, Any]:
        if path.split("?", 1)[0].rstrip("/") != "/faults":
            return 404, {"error": "DELETE /faults only"}
        if not self._simulated:
            return 409, {"error": "faults exist in the simulated backend only"}
        self._backend.clear_faults()
        event(log, "faults_cleared")
        return 200, {"faults": []}
