"""The history API and page over real HTTP on loopback, on the real embedded store: the answer's
shape, 400s that name the parameter, downloads equal to the API's numbers, escaped labels, auth."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator

import httpx
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import vigil.access
from dashboard import history
from dashboard.context import service_context
from tests.integration.usage_fleet import DAY, DAYS, HOUR, NASTY, expected, fleet, insert
from tests.local import free_port, serving
from vigil.access import Principal, Role
from vigil.kernel import RunPlan, ServiceContext
from vigil.settings import Settings
from vigil.store import Store
from vigil.store.read import NONE_LABEL
from vigil.store.schema import GAUGE, ROLLUP_1H, ROLLUP_1M
from vigil.store.schema_history import GAUGE_HISTORY

WHO: dict[str, Principal | None] = {"now": Principal("t", Role.VIEWER, "token")}


@pytest.fixture(scope="module")
def api(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, int, list]]:
    """The history router served by uvicorn in a thread, with the fleet loaded into the store."""
    for table in (GAUGE, ROLLUP_1M, ROLLUP_1H, *GAUGE_HISTORY):
        store.command(f"TRUNCATE TABLE {table}")
    base = (int(time.time()) // DAY - DAYS - 1) * DAY
    points = fleet(base)
    insert(store, points)
    port = free_port()
    plan = RunPlan("127.0.0.1", port, f"http://127.0.0.1:{port}", tmp_path_factory.mktemp("data"))
    ctx = ServiceContext(Settings(), store, CollectorRegistry(), plan)
    app = FastAPI()
    app.include_router(history.router)
    app.dependency_overrides[service_context] = lambda: ctx
    app.dependency_overrides[vigil.access.authenticate] = lambda: WHO["now"]
    with serving(app, port) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, base, points


def params(base: int, **extra: str | int) -> dict[str, str | int]:
    return {"start": base, "end": base + DAYS * DAY, "step": HOUR, "group_by": "team", **extra}


def test_utilization_answers_the_contract_and_the_rules(api: tuple[httpx.Client, int, list]) -> None:
    client, base, points = api
    r = client.get("/api/v1/utilization", params=params(base))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"series", "step", "source"}
    assert body["step"] == HOUR and body["source"] == "1h"
    want = expected(points, "team", HOUR)["series"]
    got = {s["labels"]["team"]: s["points"] for s in body["series"]}
    assert all(set(s) == {"labels", "points"} and list(s["labels"]) == ["team"] for s in body["series"])
    assert got.keys() == want.keys() and NONE_LABEL in got and NASTY in got  # type: ignore[union-attr]
    for g, pts in want.items():  # type: ignore[union-attr]
        assert [t for t, _ in got[g]] == [t for t, _ in pts]
        assert [v for _, v in got[g]] == pytest.approx([v for _, v in pts], rel=1e-9)
    # a step the minute rollup answers picks it
    assert client.get("/api/v1/utilization", params=params(base, step=60)).json()["source"] == "1m"


def test_gpu_hours_and_downloads_agree(api: tuple[httpx.Client, int, list]) -> None:
    client, base, points = api
    body = client.get("/api/v1/utilization/gpu-hours", params=params(base)).json()
    assert body["step"] == HOUR and body["idle_threshold"] == 5.0
    rows = {g["labels"]["team"]: g for g in body["groups"]}
    for g, (allocated, busy, idle, gpus) in expected(points, "team", HOUR)["hours"].items():  # type: ignore[union-attr]
        assert (rows[g]["allocated_h"], rows[g]["idle_h"], rows[g]["gpus"]) == (
            pytest.approx(allocated),
            pytest.approx(idle),
            gpus,
        )
        assert rows[g]["busy_h"] == pytest.approx(busy, rel=1e-9)

    r = client.get("/api/v1/utilization/gpu-hours.csv", params=params(base))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith("attachment;")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["team"] for row in table} == set(rows)
    for row in table:
        for col in ("allocated_h", "busy_h", "idle_h", "utilization"):
            assert float(row[col]) == rows[row["team"]][col]  # repr round-trips: exactly the API's numbers
        assert int(row["gpus"]) == rows[row["team"]]["gpus"]

    r = client.get("/api/v1/utilization/gpu-hours.parquet", params=params(base))
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    parquet = pq.read_table(io.BytesIO(r.content)).to_pylist()
    assert {row["team"]: {k: v for k, v in row.items() if k != "team"} for row in parquet} == {
        g: {k: v for k, v in row.items() if k != "labels"} for g, row in rows.items()
    }


def test_series_downloads_equal_the_series(api: tuple[httpx.Client, int, list]) -> None:
    client, base, _ = api
    series = client.get("/api/v1/utilization", params=params(base)).json()["series"]
    want = sorted((s["labels"]["team"], t, v) for s in series for t, v in s["points"])
    text = client.get("/api/v1/utilization.csv", params=params(base)).text
    got_csv = sorted((r["team"], int(r["time"]), float(r["value"])) for r in csv.DictReader(io.StringIO(text)))
    assert got_csv == want
    content = client.get("/api/v1/utilization.parquet", params=params(base)).content
    got_pq = sorted((r["team"], r["time"], r["value"]) for r in pq.read_table(io.BytesIO(content)).to_pylist())
    assert got_pq == want


def test_top_gpus(api: tuple[httpx.Client, int, list]) -> None:
    client, base, points = api
    idle = client.get("/api/v1/utilization/top", params=params(base, order="idle", n=3)).json()
    hot = client.get("/api/v1/utilization/top", params=params(base, order="hot", n=3)).json()
    means = {}
    for p in points:
        s, n = means.get(p.uuid, (0.0, 0))
        means[p.uuid] = (s + p.value, n + 1)
    ranked = sorted((s / n, u) for u, (s, n) in means.items())
    assert [g["uuid"] for g in idle["gpus"]] == [u for _, u in ranked[:3]]
    assert [g["uuid"] for g in hot["gpus"]] == [u for _, u in reversed(ranked)][:3]
    assert idle["order"] == "idle" and set(idle["gpus"][0]) >= {"uuid", "host", "labels", "avg_utilization", "hours"}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"step": "abc"}, "step"),
        ({"step": 0}, "step"),
        ({"start": "yesterday"}, "start"),
        ({"end": "1"}, "end"),
        ({"filter": "team"}, "filter"),
        ({"idle_threshold": "200"}, "idle_threshold"),
        ({"n": "0"}, "n"),
        ({"order": "random"}, "order"),
        ({"group_by": ""}, "group_by"),
        ({"measure": "max"}, "measure"),
    ],
)
def test_bad_parameters_are_400s_naming_them(api: tuple[httpx.Client, int, list], extra: dict, named: str) -> None:
    client, base, _ = api
    path = "/api/v1/utilization/top" if "order" in extra else "/api/v1/utilization"
    r = client.get(path, params=params(base, **extra))
    assert r.status_code == 400, r.text
    assert named in r.json()["detail"]


def test_a_huge_range_at_a_tiny_step_is_bounded(api: tuple[httpx.Client, int, list]) -> None:
    client, base, _ = api
    r = client.get("/api/v1/utilization", params=params(base, start=base - 700 * DAY, step=1))
    assert r.status_code == 200
    body = r.json()
    assert body["source"] == "1h" and (700 + DAYS) * DAY / body["step"] <= 11_000


def test_the_page_escapes_labels_and_links_its_downloads(api: tuple[httpx.Client, int, list]) -> None:
    client, base, _ = api
    r = client.get("/history", params={"start": base, "end": base + DAYS * DAY, "filter": "team=" + NASTY})
    assert r.status_code == 200, r.text
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert 'data-kind="stacked"' in r.text and "/api/v1/utilization/gpu-hours.csv?" in r.text
    assert "/api/v1/utilization.parquet?" in r.text
    bad = client.get("/history", params={"start": "nonsense"})
    assert bad.status_code == 400 and "start:" in bad.text


def test_anonymous_callers_are_refused(api: tuple[httpx.Client, int, list]) -> None:
    client, base, _ = api
    WHO["now"] = None
    try:
        assert client.get("/api/v1/utilization", params=params(base)).status_code == 401
        assert client.get("/api/v1/utilization/gpu-hours.csv", params=params(base)).status_code == 401
        page = client.get("/history", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=/history")
    finally:
        WHO["now"] = Principal("t", Role.VIEWER, "token")


def test_the_page_says_when_the_gpus_it_shows_are_simulated(api: tuple[httpx.Client, int, list]) -> None:
    client, base, _ = api
    shown = client.get("/history", params=params(base))
    assert shown.status_code == 200 and "Simulated data" in shown.text  # the fleet's GPUs carry vigil.simulated
    none = client.get("/history", params=params(base, filter="team=nobody"))
    assert none.status_code == 200 and "Simulated data" not in none.text
