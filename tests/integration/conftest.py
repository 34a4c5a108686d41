"""Real components: embedded ClickHouse in this process, `vigil up` as a child on loopback."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.local import LocalVigil
from vigil.store import Store, open_store
from vigil.store.schema import INGEST_LEDGER, METRIC_TABLES, ROLLUPS_1H, ROLLUPS_1M, SchemaContext, migrate
from vigil.store.schema_history import GAUGE_HISTORY


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
    for table in (*METRIC_TABLES, *ROLLUPS_1M, *ROLLUPS_1H, INGEST_LEDGER, *GAUGE_HISTORY):
        store.command(f"TRUNCATE TABLE {table}")
    return store


class VigilServer(LocalVigil):
    """A `vigil up` child with the helpers the tests use."""

    def start(self, timeout: float = 60.0) -> VigilServer:
        super().start(timeout)
        return self

    def post(self, body: bytes, content_type: str = "application/x-protobuf", **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/metrics", content=body, headers={"Content-Type": content_type, **headers}, timeout=30
        )

    def metric_value(self, name: str, labels: str = "") -> float:
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith(f"{name}{labels} ") or line.startswith(f"{name}{{{labels}}} "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture
def vigil_server(tmp_path: Path) -> Iterator[VigilServer]:
    server = VigilServer(tmp_path / "data").start()
    yield server
    if server.running():
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
        if server.running():
            server.stop(signal.SIGKILL)
