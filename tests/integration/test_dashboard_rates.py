"""`GET /api/v1/series` for counters and histograms (kind=rate, quantile, ratio) and the inference page's
charts, against the real embedded store, with a fixed viewer bound as the caller and a pinned clock."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dashboard.context import service_context
from dashboard.service import DashboardService
from vigil.access import Principal, Role, authenticate
from vigil.app import create_app
from vigil.kernel import RunPlan
from vigil.settings import Settings
from vigil.store import Store
from vigil.store.columns import HISTOGRAM, SUM
from vigil.store.schema_history import GAUGE_HISTORY

NOW = (int(time.time()) // 3600) * 3600
ENGINES = (
    {"llm.engine": "vllm", "llm.endpoint": "http://a:8000"},
    {"llm.engine": "tgi", "llm.endpoint": "http://b:80"},
)
BOUNDS = [0.05, 0.1, 0.5]


def _load(store: Store) -> None:
    """Ten minutes of one scrape every 10 s per engine: 100 tokens, 3 requests (one in error on vllm),
    one preemption a minute, and 10 TTFT observations per scrape, half of them under 50 ms."""
    sums: list[tuple[str, dict[str, str], float, float]] = []
    hists: list[tuple[dict[str, str], float, list[int]]] = []
    for attrs in ENGINES:
        for i in range(61):
            t = NOW - 600 + 10 * i - 5
            sums.append(("llm.tokens.generated", attrs, t, 100.0 * i))
            sums.append(("llm.preemptions", attrs, t, float(i // 6)))
            errors = i if attrs["llm.engine"] == "vllm" else 0
            sums.append(("llm.requests.finished", {**attrs, "outcome": "stop"}, t, 3.0 * i - errors))
            if attrs["llm.engine"] == "vllm":
                sums.append(("llm.requests.finished", {**attrs, "outcome": "error"}, t, float(errors)))
            hists.append((attrs, t, [5 * i, 0, 5 * i, 0]))
    store.insert_columns(
        SUM,
        [
            [r[0] for r in sums],
            [{} for _ in sums],
            [r[1] for r in sums],
            [round(r[2] * 1e9) for r in sums],
            [r[3] for r in sums],
        ],
        ["MetricName", "ResourceAttributes", "Attributes", "TimeUnix", "Value"],
    )
    store.insert_columns(
        HISTOGRAM,
        [
            ["llm.time_to_first_token" for _ in hists],
            [{} for _ in hists],
            [h[0] for h in hists],
            [round(h[1] * 1e9) for h in hists],
            [sum(h[2]) for h in hists],
            [0.0 for _ in hists],
            [h[2] for h in hists],
            [BOUNDS for _ in hists],
        ],
        [
            "MetricName",
            "ResourceAttributes",
            "Attributes",
            "TimeUnix",
            "Count",
            "Sum",
            "BucketCounts",
            "ExplicitBounds",
        ],
    )


@pytest.fixture(scope="module")
def client(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from tests.integration.conftest import METRIC_TABLES, ROLLUPS_1H, ROLLUPS_1M

    for table in (*METRIC_TABLES, *ROLLUPS_1M, *ROLLUPS_1H, *GAUGE_HISTORY):
        store.command(f"TRUNCATE TABLE {table}")
    _load(store)
    data = tmp_path_factory.mktemp("rates")
    plan = RunPlan(host="127.0.0.1", port=1, url="http://127.0.0.1:1", data=Path(data))
    app = create_app(Settings(data=data), store, plan, services=(DashboardService,))
    app.dependency_overrides[authenticate] = lambda: Principal("viewer", Role.VIEWER, "token")
    ctx = app.state.providers.bound[service_context].value
    object.__setattr__(ctx, "clock", lambda: NOW * 10**9)
    with TestClient(app) as c:
        yield c


def by_engine(body: dict) -> dict[str, list[list[float]]]:
    return {s["labels"]["llm.engine"]: s["points"] for s in body["series"]}


def series(client: TestClient, query: str) -> dict:
    r = client.get(f"/api/v1/series?{query}")
    assert r.status_code == 200, r.text
    return r.json()


def test_rates_per_engine(client: TestClient) -> None:
    body = series(client, "metric=llm.tokens.generated&kind=rate&range=15m&step=60&group_by=llm.engine")
    assert body["step"] == 60 and body["source"] == "1m"  # a whole-minute step: the minute rollup answers
    got = by_engine(body)
    assert set(got) == {"vllm", "tgi"}
    assert len(got["vllm"]) == 10 and all(v == pytest.approx(10.0) for _, v in got["vllm"])  # 100 per 10 s
    pre = by_engine(series(client, "metric=llm.preemptions&kind=rate&range=15m&step=60&group_by=llm.engine"))
    assert all(v == pytest.approx(1 / 60) for _, v in pre["tgi"])


def test_quantiles_per_engine(client: TestClient) -> None:
    # Each scrape adds 5 observations under 0.05 and 5 in (0.1, 0.5]: the median is the 0.05 bound
    # reached exactly, p75 halfway into (0.1, 0.5].
    p50 = by_engine(
        series(client, "metric=llm.time_to_first_token&kind=quantile&q=0.5&range=15m&step=60&group_by=llm.engine")
    )
    assert all(v == pytest.approx(0.05) for _, v in p50["vllm"])
    p75 = by_engine(
        series(client, "metric=llm.time_to_first_token&kind=quantile&q=0.75&range=15m&step=60&group_by=llm.engine")
    )
    assert all(v == pytest.approx(0.3) for _, v in p75["tgi"])


def test_error_ratio_per_engine(client: TestClient) -> None:
    got = by_engine(
        series(
            client,
            "metric=llm.requests.finished&kind=ratio&filter=outcome=error&range=15m&step=60&group_by=llm.engine",
        )
    )
    assert all(v == pytest.approx(1 / 3) for _, v in got["vllm"]) and all(v == 0.0 for _, v in got["tgi"])
    # The denominator's filter is its own: errors of vllm over all requests of both engines.
    (one,) = series(
        client,
        "metric=llm.requests.finished&kind=ratio&filter=outcome=error&ratio_to=llm.requests.finished"
        "&ratio_filter=outcome=stop&range=15m&step=60",
    )["series"]
    assert one["labels"] == {} and all(v == pytest.approx(1 / 5) for _, v in one["points"])


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("metric=llm.tokens.generated&kind=delta", "kind"),
        ("metric=llm.time_to_first_token&kind=quantile", "q"),
        ("metric=llm.time_to_first_token&kind=quantile&q=1.5", "q"),
        ("metric=llm.time_to_first_token&kind=quantile&q=p99", "q"),
        ("metric=llm.tokens.generated&kind=rate&q=0.5", "q"),
        ("metric=llm.tokens.generated&kind=rate&aggregate=max", "aggregate"),
        ("metric=llm.tokens.generated&kind=rate&ratio_to=llm.requests.finished", "ratio_to"),
        ("metric=llm.tokens.generated&ratio_filter=outcome=error", "ratio_filter"),
        ("metric=llm.requests.finished&kind=ratio&ratio_filter=outcome", "ratio_filter"),
        ("metric=llm.requests.finished&kind=ratio&ratio_to=", "ratio_to"),
        ("metric=llm.requests.finished&kind=ratio&ratio_to=llm.requests.running", "ratio_to"),
        ("metric=llm.requests.running&kind=rate", "kind"),  # a gauge has no rate
        ("metric=llm.tokens.generated&kind=quantile&q=0.5", "kind"),  # a counter has no buckets
        ("metric=&kind=rate", "metric"),
        ("metric=llm.tokens.generated&kind=rate&step=x", "step"),
    ],
)
def test_bad_parameters_answer_400_naming_them(client: TestClient, query: str, param: str) -> None:
    r = client.get(f"/api/v1/series?{query}")
    assert r.status_code == 400
    assert r.json()["detail"].startswith(f"{param}:"), r.json()


def test_gauges_answer_as_before(client: TestClient) -> None:
    assert series(client, "metric=llm.tokens.generated")["series"] == []  # a counter read as a gauge: no rows
    assert series(client, "metric=custom.thing&kind=rate")["series"] == []  # names outside the catalogue pass


def test_inference_page_charts_every_figure_and_each_chart_answers(client: TestClient) -> None:
    page = client.get("/inference?range=15m")
    assert page.status_code == 200
    charts = dict(re.findall(r'<figcaption>([^<]+)</figcaption>\s*<div class="chart" data-src="([^"]+)"', page.text))
    for title in ("TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "Tokens generated /s", "Requests finished /s"):
        assert title in charts
    assert {"Error rate", "Preemptions /s", "Running requests", "Waiting requests", "KV-cache usage"} <= set(charts)
    answered = {}
    for title, src in charts.items():
        r = client.get(html.unescape(src))
        assert r.status_code == 200, (title, r.text)
        answered[title] = r.json()
    gauges = {"Running requests", "Waiting requests", "KV-cache usage"}
    assert {answered[t]["step"] for t in charts if t not in gauges} == {30}  # a few scrapes per point
    assert {s["labels"]["llm.engine"] for s in answered["TTFT p99"]["series"]} == {"vllm", "tgi"}
    assert answered["Error rate"]["series"] and answered["Tokens generated /s"]["series"]
    assert answered["ITL p50"]["series"] == []  # no ITL in the store: an empty chart, not an error
