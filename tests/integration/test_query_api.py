"""`POST /api/v1/query` and `vigil query` over real HTTP on loopback, against the session's embedded store.

The router is served by uvicorn in a thread with a bearer-token `authenticate` bound (the dashboard's
auth binds the real one in `vigil up`), so the CLI's API path runs as a child process against it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry

from dashboard import query as query_api
from dashboard.context import service_context
from tests.local import ROOT, LocalVigil, free_port, serving
from vigil.access import Principal, Role, authenticate
from vigil.kernel import RunPlan, ServiceContext
from vigil.query_client import PORT_FILE
from vigil.settings import Settings
from vigil.store import Store
from vigil.store.columns import GAUGE
from vigil.store.schema_history import GAUGE_HISTORY

TOKEN = "test-query-token"
LIMITS = {"query_max_rows": 50, "query_max_bytes": 20_000, "query_timeout_s": 0.5}


def _who(request: Request) -> Principal | None:
    if request.headers.get("authorization") == f"Bearer {TOKEN}":
        return Principal("t", Role.VIEWER, "token")
    return None


@pytest.fixture(scope="module")
def api(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(data=tmp_path_factory.mktemp("query-api"), **LIMITS)
    port = free_port()
    plan = RunPlan(host="127.0.0.1", port=port, url=f"http://127.0.0.1:{port}", data=settings.data)
    ctx = ServiceContext(settings=settings, store=store, registry=CollectorRegistry(), plan=plan)
    app = FastAPI()
    app.include_router(query_api.router)
    app.dependency_overrides[service_context] = lambda: ctx
    app.dependency_overrides[authenticate] = _who
    with serving(app, port) as url:
        yield url


def post(url: str, body: object, token: str | None = TOKEN, **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/api/v1/query", json=body, headers=headers, timeout=30, **kw)


def test_a_read_answers_columns_and_rows_with_bound_parameters(api: str) -> None:
    r = post(api, {"sql": "SELECT {n:UInt8} + 1 AS m, {s:String} AS s, [1, 2] AS a", "params": {"n": 2, "s": "x"}})
    assert r.status_code == 200, r.text
    assert r.json() == {"columns": ["m", "s", "a"], "rows": [[3, "x", [1, 2]]]}


def test_anonymous_is_refused(api: str) -> None:
    r = post(api, {"sql": "SELECT 1"}, token=None)
    assert r.status_code == 401


@pytest.mark.parametrize(
    "sql",
    [
        f"INSERT INTO {GAUGE} (MetricName) VALUES ('x')",
        "CREATE TABLE vigil_query_test (a Int32) ENGINE = Memory",
        f"ALTER TABLE {GAUGE} DELETE WHERE 1",
        "SET readonly = 0",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT number FROM numbers(1000) SETTINGS max_result_rows = 0",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    ],
)
def test_writes_and_setting_changes_are_refused_by_the_store(api: str, store: Store, sql: str) -> None:
    r = post(api, {"sql": sql})
    assert r.status_code == 403, r.text
    assert "read-only" in r.json()["detail"]
    assert store.query_rows("EXISTS TABLE vigil_query_test") == [(0,)]


def test_several_statements_are_refused_even_when_each_reads(api: str, store: Store) -> None:
    for sql in ("SELECT 1; SELECT 2", "CREATE TABLE vigil_query_test (a Int32) ENGINE = Memory; SELECT 1"):
        r = post(api, {"sql": sql})
        assert r.status_code == 403 and "one statement" in r.json()["detail"], r.text
    assert store.query_rows("EXISTS TABLE vigil_query_test") == [(0,)]


def test_into_outfile_is_refused_and_writes_no_file(api: str, tmp_path: Path) -> None:
    target = tmp_path / "out.tsv"
    r = post(api, {"sql": f"SELECT 1 INTO OUTFILE '{target}'"})
    assert r.status_code == 403 and "INTO OUTFILE" in r.json()["detail"]
    assert not target.exists()


def test_too_many_rows_or_bytes_are_cut_with_413(api: str) -> None:
    rows = post(api, {"sql": "SELECT number FROM numbers(100000)"})
    assert rows.status_code == 413 and "VIGIL_QUERY_MAX_ROWS" in rows.json()["detail"]
    # one block under the row limit but past the byte limit: caught on the encoded answer
    wide = post(api, {"sql": "SELECT repeat('x', 1000) FROM numbers(40)"})
    assert wide.status_code == 413 and "VIGIL_QUERY_MAX_BYTES" in wide.json()["detail"]


def test_a_query_past_the_time_limit_is_stopped(api: str) -> None:
    started = time.monotonic()
    r = post(api, {"sql": "SELECT sleep(2)"})
    assert r.status_code == 400 and "VIGIL_QUERY_TIMEOUT_S" in r.json()["detail"], r.text
    assert time.monotonic() - started < 2.0  # stopped at the limit, not run to its end


def test_a_store_still_writes_after_refused_queries(api: str, store: Store) -> None:
    post(api, {"sql": f"INSERT INTO {GAUGE} (MetricName) VALUES ('x')"})
    store.insert_columns(GAUGE, [["t.query_api_after"], [time.time_ns()]], ["MetricName", "TimeUnix"])
    assert store.query_rows(f"SELECT count() FROM {GAUGE} WHERE MetricName = 't.query_api_after'") == [(1,)]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"sql": ""}, 400, "sql"),
        ({"sql": "SELECT 1", "format": "csv"}, 400, "format"),
        ({"sql": "SELECT 1", "params": [1]}, 400, "params"),
        ({"sql": "SELECT {a:String}", "params": {"a": {"b": 1}}}, 400, "params.a"),
        ({"sql": "SELECT 1", "limit": 3}, 400, "unknown field"),
        ({"sql": "SELEC 1"}, 400, "Syntax error"),
        ({"sql": "SELECT 1 FROM no_such_table"}, 400, "no_such_table"),
    ],
)
def test_bad_requests_name_what_is_wrong(api: str, body: object, status: int, words: str) -> None:
    r = post(api, body)
    assert r.status_code == status and words in r.json()["detail"], r.text


def test_the_body_is_bounded(api: str) -> None:
    big = post(api, {"sql": "SELECT '" + "x" * (query_api.MAX_BODY_BYTES + 10) + "'"})
    assert big.status_code == 413
    not_json = httpx.post(f"{api}/api/v1/query", content=b"{", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["detail"]


def vigil_query(
    *args: str, token: str | None = TOKEN, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    environ = {**os.environ, **(env or {})}
    environ.pop("VIGIL_API_TOKEN", None)
    if token:
        environ["VIGIL_API_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "vigil.cli", "query", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


SQL = "SELECT number AS n, concat('v,', toString(number)) AS s FROM numbers(2)"


def test_cli_through_the_api_prints_a_table_json_and_csv(api: str) -> None:
    table = vigil_query("--url", api, SQL)
    assert table.returncode == 0, table.stderr
    assert "through the API" in table.stderr
    assert table.stdout.splitlines() == ["n\ts", "0\tv,0", "1\tv,1"]
    as_json = vigil_query("--url", api, "--json", SQL)
    assert json.loads(as_json.stdout) == [[0, "v,0"], [1, "v,1"]]
    as_csv = vigil_query("--url", api, "--csv", SQL)
    assert as_csv.stdout.splitlines() == ["n,s", '0,"v,0"', '1,"v,1"']
    bound = vigil_query("--url", api, "--json", "SELECT {n:UInt8} + 1, {s:String}", "--param", "n=2", "--param", "s=x")
    assert json.loads(bound.stdout) == [[3, "x"]], bound.stderr


def test_cli_says_why_the_api_refused(api: str) -> None:
    write = vigil_query("--url", api, f"INSERT INTO {GAUGE} (MetricName) VALUES ('x')")
    assert write.returncode == 1 and "403" in write.stderr and "read-only" in write.stderr
    anonymous = vigil_query("--url", api, "SELECT 1", token=None)
    assert anonymous.returncode == 1 and "VIGIL_API_TOKEN" in anonymous.stderr


def test_cli_goes_through_the_api_while_vigil_holds_the_store(api: str, store: Store) -> None:
    """The session's store is open in this process, so its lock is held: the CLI must not open it."""
    data = Path(store.url.removeprefix("chdb://")).parent
    port = api.rsplit(":", 1)[1]
    held = vigil_query("--data", str(data), "--json", "SELECT 41 + 1", env={"VIGIL_PORT": port})
    assert held.returncode == 0, held.stderr
    assert "through the API of the running Vigil" in held.stderr and f"pid {os.getpid()}" in held.stderr
    assert json.loads(held.stdout) == [[42]]


def test_cli_finds_the_port_of_the_vigil_up_that_holds_the_store(tmp_path: Path) -> None:
    """`vigil up --port P` records P beside its store while it runs: `vigil query --data` asks P, not
    VIGIL_PORT, and the record goes when Vigil stops."""
    data = tmp_path / "data"
    server = LocalVigil(data, env={"VIGIL_API_TOKENS": TOKEN})
    server.start()
    try:
        assert (data / PORT_FILE).read_text().strip() == str(server.port)
        held = vigil_query("--data", str(data), "--json", "SELECT 41 + 1", env={"VIGIL_PORT": str(free_port())})
        assert held.returncode == 0, held.stderr
        assert f"through the API of the running Vigil at {server.url}" in held.stderr
        assert json.loads(held.stdout) == [[42]]
    finally:
        server.stop(signal.SIGTERM)
    assert not (data / PORT_FILE).exists()
    direct = vigil_query("--data", str(data), "--json", "SELECT 41 + 1")
    assert "directly on the store" in direct.stderr and json.loads(direct.stdout) == [[42]]


def test_cli_uses_the_store_directly_when_vigil_is_stopped(tmp_path: Path) -> None:
    direct = vigil_query("--data", str(tmp_path), "--csv", "SELECT 1 AS one")
    assert direct.returncode == 0, direct.stderr
    assert "directly on the store" in direct.stderr
    assert direct.stdout.splitlines() == ["one", "1"]


@pytest.fixture(scope="module")
def fleet_history(store: Store) -> int:
    """Two days of a small fleet, ending at the current hour's start; returns that end."""
    pytest.importorskip("vigil.store.usage")
    from vigil import backfill

    for table in (GAUGE, "vigil_metrics_gauge_1m_v2", "vigil_metrics_gauge_1h_v2", *GAUGE_HISTORY):
        store.command(f"TRUNCATE TABLE {table}")
    end = int(time.time()) // 3600 * 3600
    spec = backfill.FleetSpec(gpus=16, teams=2, days=2, step=300, seed=5, metrics=("gpu.utilization",))
    backfill.write(store, backfill.Fleet(spec, end))
    return end


def test_reports_through_the_api_and_the_cli_equal_the_direct_answer(
    api: str, store: Store, fleet_history: int
) -> None:
    from vigil.reports import ReportAsk, run_report
    from vigil.store.schema import SchemaContext

    headers = {"Authorization": f"Bearer {TOKEN}"}
    for name in ("gpu-hours", "idle", "top-idle"):
        r = httpx.get(f"{api}/api/v1/reports/{name}", params={"days": 2}, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        direct = run_report(store, ReportAsk(name, body["start"], body["end"]), SchemaContext(), time.time())
        assert body["columns"] == list(direct.column_names)
        assert body["rows"] == [list(row) for row in direct.result_rows]
    hours = httpx.get(f"{api}/api/v1/reports/gpu-hours", params={"days": 2}, headers=headers, timeout=30).json()
    assert hours["columns"][:3] == ["team", "gpus", "allocated_h"]
    assert sum(row[1] for row in hours["rows"]) == 16
    assert sum(row[2] for row in hours["rows"]) == pytest.approx(16 * 47)  # the range ends an hour after the data
    cli = vigil_query("--url", api, "--report", "gpu-hours", "--days", "2", "--csv")
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines()[0] == ",".join(hours["columns"])
    assert len(cli.stdout.splitlines()) == 1 + len(hours["rows"])


def test_a_bad_report_request_is_named(api: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    unknown = httpx.get(f"{api}/api/v1/reports/cost", headers=headers, timeout=10)
    assert unknown.status_code == 404 and "gpu-hours" in unknown.json()["detail"]
    for params, words in (({"days": "x"}, "days"), ({"days": 0}, "days"), ({"limit": 3}, "unknown parameter")):
        r = httpx.get(f"{api}/api/v1/reports/idle", params=params, headers=headers, timeout=10)
        assert r.status_code == 400 and words in r.json()["detail"], r.text
