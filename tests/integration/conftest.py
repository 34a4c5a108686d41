"""Real components: embedded ClickHouse in this process, `vigil up` as a child on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from vigil.store import Store, open_store
from vigil.store.schema import INGEST_LEDGER, METRIC_TABLES, ROLLUP_1H, ROLLUP_1M, SchemaContext, migrate

ROOT = Path(__file__).parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One embedded store per test session: chdb allows one engine path per process."""
    path = tmp_path_factory.mktemp("store") / "clickhouse"
    s = open_store(f"chdb://{path}")
    migrate(s, SchemaContext())
    yield s
    s.close()


@pytest.fixture
def clean_store(store: Store) -> Store:
    for table in (*METRIC_TABLES, ROLLUP_1M, ROLLUP_1H, INGEST_LEDGER):
        store.command(f"TRUNCATE TABLE {table}")
    return store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VigilServer:
    """`vigil up --no-agent --no-workload` in a child process on a free loopback port."""

    def __init__(self, data: Path, env: dict[str, str] | None = None) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.log = data.parent / f"{data.name}-vigil.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> VigilServer:
        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "vigil.cli",
                    "up",
                    "--no-agent",
                    "--no-workload",
                    "--data",
                    str(self.data),
                    "--port",
                    str(self.port),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vigil up exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"vigil up did not become healthy:\n{self.log.read_text()}")

    def healthy(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200

    def post(self, body: bytes, content_type: str = "application/x-protobuf", **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/metrics", content=body, headers={"Content-Type": content_type, **headers}, timeout=30
        )

    def metric_value(self, name: str, labels: str = "") -> float:
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith(f"{name}{labels} ") or line.startswith(f"{name}{{{labels}}} "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> float:
        """Signal the server and wait; returns seconds it took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout)
        return time.monotonic() - started

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        """Read the embedded store from a fresh process (the server must be stopped)."""
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.integration.read_store",
                str(self.data / "clickhouse"),
                sql,
                json.dumps(params or {}),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if out.returncode:
            raise RuntimeError(out.stderr)
        return json.loads(out.stdout)


@pytest.fixture
def vigil_server(tmp_path: Path) -> Iterator[VigilServer]:
    server = VigilServer(tmp_path / "data").start()
    yield server
    if server.proc and server.proc.poll() is None:
        server.stop(signal.SIGKILL)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    servers: list[VigilServer] = []

    def make(env: dict[str, str] | None = None, data: Path | None = None) -> VigilServer:
        server = VigilServer(data or tmp_path / f"data{len(servers)}", env)
        servers.append(server)
        return server

    yield make
    for server in servers:
        if server.proc and server.proc.poll() is None:
            server.stop(signal.SIGKILL)
