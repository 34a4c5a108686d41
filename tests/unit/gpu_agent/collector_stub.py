"""A loopback OTLP/HTTP endpoint that answers from a script and records what arrives.

Only for the exporter's own tests (status codes on demand); the integration tests use a real
`vigil up`.
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)


@dataclass
class Received:
    key: str
    authorization: str
    encoding: str
    request: ExportMetricsServiceRequest
    status: int

    def values(self, metric: str) -> list[float]:
        return [
            p.as_double if p.HasField("as_double") else float(p.as_int)
            for rm in self.request.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == metric
            for p in m.gauge.data_points
        ]


class CollectorStub:
    def __init__(self, port: int = 0) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []  # answers to give first, in order
        self.rejected_points = 0  # partial success to report on each 200
        self.delay_s = 0.0
        self.received: list[Received] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if stub.delay_s:
                    time.sleep(stub.delay_s)
                with stub._lock:
                    status, headers = stub.script.pop(0) if stub.script else (200, {})
                    request = ExportMetricsServiceRequest()
                    request.ParseFromString(gzip.decompress(body))
                    stub.received.append(
                        Received(
                            self.headers.get("Idempotency-Key", ""),
                            self.headers.get("Authorization", ""),
                            self.headers.get("Content-Encoding", ""),
                            request,
                            status,
                        )
                    )
                answer = ExportMetricsServiceResponse()
                if status == 200 and stub.rejected_points:
                    answer.partial_success.rejected_data_points = stub.rejected_points
                    answer.partial_success.error_message = "1 data points rejected: timestamp_out_of_range=1"
                data = answer.SerializeToString()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def delivered(self) -> list[Received]:
        """Requests answered 200, in arrival order."""
        with self._lock:
            return [r for r in self.received if r.status == 200]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
