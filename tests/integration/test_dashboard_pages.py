"""The fleet, GPU, node and inference pages and the JSON API against the real embedded store.

The app is `create_app` with the dashboard alone, a fixed viewer bound as the caller (the auth has its
own tests), and a clock pinned to the data, so what the pages show is exactly what the store holds.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dashboard.context import service_context
from dashboard.service import DashboardService
from vigil.access import Principal, Role, authenticate
from vigil.app import create_app
from vigil.kernel import RunPlan
from vigil.settings import Settings
from vigil.store import Store
from vigil.store.columns import GAUGE, SUM
from vigil.store.schema_history import GAUGE_HISTORY
from vigil.views import alerts_view

NOW = (int(time.time()) // 60) * 60  # a minute edge, so rollup buckets line up with the raw points
NASTY_HOST = "<script>alert(1)</script>\"'&"
NASTY_TEAM = "<img src=x onerror=alert(2)>'\""
# (uuid, host, index, model, team, cluster, simulated)
GPUS = [
    ("GPU-a", "node-1", "0", "H100", "ml", "east", "true"),
    ("GPU-b", "node-1", "1", "H100", "ml", "east", "true"),
    ("GPU-c", "node-2", "0", "A100", "infra", "west", "false"),
    ("GPU-x", NASTY_HOST, "0", "L4", NASTY_TEAM, "east", "false"),
]
MIG = ("MIG-a1", "MIG-a2")  # two instances of GPU-a


class FakeAlerts:
    def __init__(self) -> None:
        self.transitions: list[dict[str, Any]] = []

    def history(self, limit: int) -> list[dict[str, Any]]:
        return self.transitions[:limit]


def _identity(uuid: str) -> tuple[dict[str, str], dict[str, str]]:
    _, host, index, model, team, cluster, simulated = next(g for g in GPUS if g[0] == uuid)
    resource = {"host.name": host, "team": team, "k8s.cluster.name": cluster, "vigil.simulated": simulated}
    return resource, {"gpu.uuid": uuid, "gpu.index": index, "gpu.model": model}


def _load(store: Store) -> None:
    rows: list[tuple[str, dict[str, str], dict[str, str], int, float]] = []
    for i, (uuid, *_rest) in enumerate(GPUS):
        resource, attrs = _identity(uuid)
        for t in range(NOW - 3 * 3600, NOW + 1, 60):  # 3 h at one point a minute, the last at NOW
            rows.append(("gpu.utilization", resource, attrs, t, 10.0 * (i + 1)))
        for metric, value in (
            ("gpu.temperature", 60.0 + i),
            ("gpu.power.draw", 300.0),
            ("gpu.memory.used", 2.0 * 2**30),
            ("gpu.memory.total", 80.0 * 2**30),
            ("gpu.up", 1.0),
            ("gpu.clock_event_reasons", 0x40 if uuid == "GPU-c" else 0x1),
        ):
            rows.append((metric, resource, attrs, NOW - 5, value))
    resource, attrs = _identity("GPU-a")
    for mig in MIG:
        rows.append(
            ("gpu.memory.used", resource, {**attrs, "gpu.mig.uuid": mig, "gpu.mig.profile": "3g.40gb"}, NOW - 5, 1e9)
        )
    store.insert_columns(
        GAUGE,
        [
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] * 10**9 for r in rows],
            [r[4] for r in rows],
        ],
        ["MetricName", "ResourceAttributes", "Attributes", "TimeUnix", "Value"],
    )
    # XIDs: GPU-b's counter for 48 ran at 2 before the hour and reached 5 in it (3 in the window); GPU-c's
    # 79 first appeared inside the window at 1; GPU-a's 13 was 4 before and stayed 4 (none in the window).
    xid_rows = [
        ("GPU-b", "48", NOW - 5000, 2.0),
        ("GPU-b", "48", NOW - 1800, 4.0),
        ("GPU-b", "48", NOW - 60, 5.0),
        ("GPU-c", "79", NOW - 600, 1.0),
        ("GPU-a", "13", NOW - 5000, 4.0),
        ("GPU-a", "13", NOW - 60, 4.0),
    ]
    cols: list[list[Any]] = [[], [], [], [], [], [], []]
    for uuid, code, t, value in xid_rows:
        resource, attrs = _identity(uuid)
        for col, v in zip(
            cols, ("gpu.xid.errors", resource, {**attrs, "xid": code}, t * 10**9, value, 2, True), strict=True
        ):
            col.append(v)
    store.insert_columns(
        SUM,
        cols,
        [
            "MetricName",
            "ResourceAttributes",
            "Attributes",
            "TimeUnix",
            "Value",
            "AggregationTemporality",
            "IsMonotonic",
        ],
    )


@pytest.fixture(scope="module")
def alerts() -> FakeAlerts:
    return FakeAlerts()


@pytest.fixture(scope="module")
def client(store: Store, tmp_path_factory: pytest.TempPathFactory, alerts: FakeAlerts) -> Iterator[TestClient]:
    from tests.integration.conftest import METRIC_TABLES, ROLLUPS_1H, ROLLUPS_1M

    for table in (*METRIC_TABLES, *ROLLUPS_1M, *ROLLUPS_1H, *GAUGE_HISTORY):
        store.command(f"TRUNCATE TABLE {table}")
    _load(store)
    data = tmp_path_factory.mktemp("dash")
    plan = RunPlan(host="127.0.0.1", port=1, url="http://127.0.0.1:1", data=Path(data))
    app = create_app(Settings(data=data), store, plan, services=(DashboardService,))
    app.dependency_overrides[authenticate] = lambda: Principal("viewer", Role.VIEWER, "token")
    app.dependency_overrides[alerts_view] = lambda: alerts
    ctx = app.state.providers.bound[service_context].value  # create_app builds it: pin its clock to the data
    object.__setattr__(ctx, "clock", lambda: NOW * 10**9)
    with TestClient(app) as c:
        yield c


def test_api_gpus_lists_exactly_the_gpus_in_the_store_with_mig_under_their_parent(client: TestClient) -> None:
    body = client.get("/api/v1/gpus").json()
    assert [g["gpu.uuid"] for g in body["gpus"]] == ["GPU-x", "GPU-a", "GPU-b", "GPU-c"]  # by host, then index
    by_uuid = {g["gpu.uuid"]: g for g in body["gpus"]}
    assert sorted(m["gpu.mig.uuid"] for m in by_uuid["GPU-a"]["mig"]) == list(MIG)
    assert all(not g["mig"] for u, g in by_uuid.items() if u != "GPU-a")
    a = by_uuid["GPU-a"]
    assert (a["host.name"], a["gpu.model"], a["team"], a["k8s.cluster.name"]) == ("node-1", "H100", "ml", "east")
    assert a["vigil.simulated"] is True and by_uuid["GPU-c"]["vigil.simulated"] is False
    assert a["values"]["gpu.utilization"] == 10.0
    assert body["simulated"] is True


def test_xid_counts_over_the_window_with_meaning_and_action(client: TestClient) -> None:
    by_uuid = {g["gpu.uuid"]: g for g in client.get("/api/v1/gpus").json()["gpus"]}
    assert by_uuid["GPU-b"]["xids"] == [
        {"code": 48, "count": 3, "meaning": "double-bit ECC error", "action": "drain, reset GPU"}
    ]
    assert [(x["code"], x["count"]) for x in by_uuid["GPU-c"]["xids"]] == [(79, 1)]
    assert by_uuid["GPU-a"]["xids"] == []  # a counter that did not move in the window
    assert by_uuid["GPU-b"]["health"] == "action" and by_uuid["GPU-c"]["health"] == "action"
    # over 6 h GPU-b's counter has no point before the window: all 5 count
    wide = {g["gpu.uuid"]: g for g in client.get("/api/v1/gpus?range=6h").json()["gpus"]}
    assert [(x["code"], x["count"]) for x in wide["GPU-b"]["xids"]] == [(48, 5)]
    assert [(x["code"], x["count"]) for x in wide["GPU-a"]["xids"]] == [(13, 4)]


def test_filters_pick_gpus_by_team_cluster_and_model(client: TestClient) -> None:
    def uuids(query: str) -> list[str]:
        return [g["gpu.uuid"] for g in client.get(f"/api/v1/gpus?{query}").json()["gpus"]]

    assert uuids("team=ml") == ["GPU-a", "GPU-b"]
    assert uuids("k8s.cluster.name=west") == ["GPU-c"]
    assert uuids("gpu.model=H100&team=infra") == []
    page = client.get("/?gpu.model=A100")
    assert re.findall(r'<tr class="gpu[^"]*" data-uuid="([^"]+)"', page.text) == ["GPU-c"]


def test_nodes_fold_their_gpus(client: TestClient) -> None:
    nodes = {n["host.name"]: n for n in client.get("/api/v1/nodes").json()["nodes"]}
    assert set(nodes) == {"node-1", "node-2", NASTY_HOST}
    assert nodes["node-1"]["gpus"] == 2 and nodes["node-1"]["utilization"] == pytest.approx(15.0)
    assert nodes["node-1"]["xids"] == 3 and nodes["node-2"]["unhealthy"] == 1


def test_fleet_page_shows_exactly_the_stored_gpus_escaped_with_banner_and_chart(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    rows = re.findall(r'<tr class="gpu[^"]*" data-uuid="([^"]+)"', html)
    assert rows == ["GPU-x", "GPU-a", "GPU-b", "GPU-c"]
    assert re.findall(r'<tr class="mig[^"]*" data-uuid="([^"]+)"', html) == list(MIG)
    assert "Simulated data" in html
    assert 'class="chart"' in html and "data-src=" in html
    assert 'title="GPU-a"' in html  # the uuid in the GPU link's tooltip
    assert 'title="XID 48: double-bit ECC error. Action: drain, reset GPU"' in html
    # label values are escaped in text and in attributes; no raw tag from the data reaches the page
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<script" not in re.sub(r'<script src="/static/[^"]+"></script>', "", html)
    assert ' style="' not in html and "<style" not in html  # CSP: no inline style either
    fragment = client.get("/fragments/fleet?team=ml").text
    assert re.findall(r'<tr class="gpu[^"]*" data-uuid="([^"]+)"', fragment) == ["GPU-a", "GPU-b"]


def test_fleet_charts_read_the_minute_rollup_from_an_hour_up(client: TestClient) -> None:
    def sources(range_: str) -> list[str]:
        page = client.get(f"/?range={range_}").text
        return [html.unescape(s) for s in re.findall(r'class="chart" data-src="([^"]+)"', page)]

    hour, quarter, day = sources("1h"), sources("15m"), sources("24h")
    assert len(hour) == 2 and all("step=60" in s for s in hour)
    assert not any("step=" in s for s in quarter + day)  # 15 m stays raw; a day's default step is coarser
    for src in hour:
        body = client.get(src).json()
        assert body["source"] == "1m" and body["step"] == 60 and body["series"]


def test_gpu_and_node_pages(client: TestClient) -> None:
    page = client.get("/gpus/GPU-b?range=6h")
    assert page.status_code == 200
    assert page.text.count('class="chart"') >= 6
    assert "/api/v1/marks?gpu=GPU-b&amp;range=6h" in page.text
    assert client.get("/gpus/GPU-nope").status_code == 404
    node = client.get("/nodes/node-1")
    assert node.status_code == 200
    assert re.findall(r'<tr class="gpu[^"]*" data-uuid="([^"]+)"', node.text) == ["GPU-a", "GPU-b"]
    nasty = client.get("/nodes/" + NASTY_HOST.replace("&", "%26").replace("'", "%27").replace('"', "%22"))
    assert nasty.status_code == 200 and "<script>alert(1)" not in nasty.text
    assert client.get("/gpus/GPU-a?range=2h").status_code == 400


@pytest.mark.parametrize(
    ("range_", "source"), [("15m", "raw"), ("1h", "raw"), ("6h", "1m"), ("7d", "1m"), ("30d", "1h")]
)
def test_series_source_follows_the_range(client: TestClient, range_: str, source: str) -> None:
    body = client.get(f"/api/v1/series?metric=gpu.utilization&range={range_}&filter=gpu.uuid=GPU-a").json()
    assert body["source"] == source
    if source != "1h":  # the hour rollup of the current hour may be partial; the others hold every point
        (series,) = body["series"]
        assert series["labels"]["gpu.uuid"] == "GPU-a"
        assert {v for _, v in series["points"]} == {10.0}


def test_series_groups_and_filters(client: TestClient) -> None:
    body = client.get(
        "/api/v1/series?metric=gpu.utilization&range=1h&group_by=team&filter=k8s.cluster.name=east"
    ).json()
    assert {s["labels"]["team"]: s["points"][-1][1] for s in body["series"]} == {"ml": 15.0, NASTY_TEAM: 40.0}
    start, end = NOW - 600, NOW
    body = client.get(
        f"/api/v1/series?metric=gpu.utilization&start={start}&end={end}&step=60&group_by=host.name"
    ).json()
    assert body["step"] == 60 and all(start <= t < end for s in body["series"] for t, _ in s["points"])


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("metric=", "metric"),
        ("metric=gpu.utilization&range=2h", "range"),
        ("metric=gpu.utilization&start=yesterday", "start"),
        ("metric=gpu.utilization&start=100&end=50", "end"),
        ("metric=gpu.utilization&step=-5", "step"),
        ("metric=gpu.utilization&filter=team", "filter"),
        ("metric=gpu.utilization&aggregate=median", "aggregate"),
    ],
)
def test_bad_series_parameters_answer_400_naming_the_parameter(client: TestClient, query: str, param: str) -> None:
    r = client.get(f"/api/v1/series?{query}")
    assert r.status_code == 400
    assert r.json()["detail"].startswith(f"{param}:")


def test_marks_give_xid_events_and_alerts(client: TestClient, alerts: FakeAlerts) -> None:
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(NOW - 300, UTC).isoformat().replace("+00:00", "Z")
    alerts.transitions[:] = [
        {"at": at, "rule": "GpuHot", "labels": {"gpu.uuid": "GPU-b"}, "to": "firing", "from": "pending"},
        {"at": at, "rule": "Other", "labels": {"gpu.uuid": "GPU-c"}, "to": "firing", "from": "pending"},
    ]
    body = client.get("/api/v1/marks?gpu=GPU-b&range=1h").json()
    assert [(m["t"], m["kind"]) for m in body["marks"]] == [
        (NOW - 1800, "xid"),
        (NOW - 300, "alert"),
        (NOW - 60, "xid"),
    ]
    assert body["marks"][0]["label"] == "XID 48 x2: double-bit ECC error"
    assert client.get("/api/v1/marks?range=1h").status_code == 400
    host = client.get("/api/v1/marks?host=node-2&range=1h").json()["marks"]
    assert [(m["t"], m["label"]) for m in host] == [(NOW - 600, "XID 79: GPU fell off the bus")]


def test_placeholders_and_docs(client: TestClient) -> None:
    assert "Runbooks not configured" in client.get("/runbooks").text  # no runbook service in this app
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/docs.js" in docs.text and 'id="swagger-ui"' in docs.text
    assert client.get("/openapi.json").json()["paths"]["/api/v1/gpus"]


def test_the_openapi_description_is_behind_the_login(store: Store, tmp_path: Path) -> None:
    plan = RunPlan(host="127.0.0.1", port=1, url="http://127.0.0.1:1", data=tmp_path)
    app = create_app(Settings(data=tmp_path), store, plan, services=(DashboardService,))
    with TestClient(app) as anonymous:
        r = anonymous.get("/openapi.json")
    assert r.status_code == 401, r.text


def test_inference_page_without_engines_says_so(client: TestClient) -> None:
    page = client.get("/inference")
    assert page.status_code == 200 and "No inference engine has reported" in page.text
