"""The /alerts and /slos pages and the budget-burn chart's JSON, with the real alerting service over the
real embedded store: a rule file and an SLO file on disk, metrics inserted, `create_app` serving both
services. The caller is bound through `vigil.access.authenticate` as the dashboard's auth binds it (it
leaves the principal and the CSRF token on `request.state`), so these tests hold before and after the
auth lands; one test keeps the service's own CSRF binding to show a form post without a token fails.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from alerting.service import AlertingService
from dashboard import alerts as dashboard_alerts
from dashboard.service import DashboardService
from tests.integration.dashboard_app import Caller, as_, bind_caller, rules_app
from vigil.access import Role
from vigil.store import Store
from vigil.store.schema import GAUGE, SUM

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

RUN = uuid.uuid4().hex[:12]
HOST = '<script>alert("x")</script>'  # a label value holding HTML, as a hostile series could
TOKEN = "tok-dashboard-alerts"
CSRF = "csrf-" + RUN
S = 10**9
HOUR = 3600

RULES = f"""
groups:
  - name: dashboard-{RUN}
    interval: 1s
    rules:
      - alert: HotGpu
        expr: {{metric: gpu.temperature, function: max, window: 1m, matchers: {{vigil.test: "{RUN}"}}, by: [host.name]}}
        op: ">"
        threshold: 90
        for: 0s
        labels: {{severity: page}}
        annotations: {{summary: "GPU on {{{{ $labels.host.name }}}} is hot", runbook_url: "javascript:alert(1)"}}
        runbook: gpu-throttling
---
version: prometheus/v1
service: svc-{RUN}
slos:
  - name: availability
    objective: 99
    period: 3d
    sli:
      events:
        error_query: {{metric: llm.requests.finished, matchers: {{outcome: error, vigil.test: "{RUN}"}}}}
        total_query: {{metric: llm.requests.finished, matchers: {{vigil.test: "{RUN}"}}}}
    alerting: {{name: BudgetBurn}}
"""


def insert_metrics(store: Store, edge: float) -> None:
    """A hot GPU now; and four hours of requests ending at the hour `edge`, with errors in the last two:
    100 good requests and, from `edge - 2h`, 1 error per 10 s sample."""
    now = time.time()
    store.insert_columns(
        GAUGE,
        [
            ["gpu.temperature"] * 5,
            [{"host.name": HOST, "vigil.test": RUN}] * 5,
            [round((now - 25 + 5 * i) * S) for i in range(5)],
            [95.0] * 5,
        ],
        ["MetricName", "ResourceAttributes", "TimeUnix", "Value"],
    )
    times = [edge - 4 * HOUR + 10 * i for i in range(4 * 360)]
    errors_from = edge - 2 * HOUR
    rows = [("ok", t, 100.0 * i) for i, t in enumerate(times)]
    rows += [("error", t, max(0.0, (t - errors_from) / 10)) for t in times]
    for i in range(0, len(rows), 500):
        part = rows[i : i + 500]
        store.insert_columns(
            SUM,
            [
                ["llm.requests.finished"] * len(part),
                [{"vigil.test": RUN}] * len(part),
                [{"outcome": r[0]} for r in part],
                [round(r[1] * S) for r in part],
                [r[2] for r in part],
            ],
            ["MetricName", "ResourceAttributes", "Attributes", "TimeUnix", "Value"],
        )


@pytest.fixture(scope="module")
def edge(store: Store) -> float:
    edge = float(int(time.time()) // HOUR * HOUR)
    insert_metrics(store, edge)
    return edge


@pytest.fixture(scope="module")
def served(store: Store, edge: float, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Caller]]:
    app = rules_app(store, tmp_path_factory.mktemp("dash"), (AlertingService, DashboardService), RULES, TOKEN)
    caller = Caller()
    bind_caller(app, caller, TOKEN, CSRF)
    with TestClient(app, follow_redirects=False) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = client.get("/api/v1/alerts?history=1", headers=api_auth()).json()
            if any(a["state"] == "firing" for a in body["alerts"]) and body["history"]:  # fired, and stored
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the rule never fired")
        yield client, caller


def api_auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def silence_form(**over: Any) -> dict[str, Any]:
    matchers = ["alertname=HotGpu", f"host.name={HOST}", "severity=page"]
    return {
        "matcher": matchers,
        "duration": "4h",
        "custom": "",
        "comment": "swapping the fan",
        "csrf_token": CSRF,
    } | over


def test_a_viewer_sees_the_firing_alert_escaped_with_its_runbook_and_no_forms(served: Any) -> None:
    client, caller = served
    as_(caller, Role.VIEWER)
    page = client.get("/alerts")
    assert page.status_code == 200
    body = page.text
    assert '<table id="alerts">' in body and '<tr class="alert firing"' in body
    assert HOST not in body and str(escape(HOST)) in body  # in the labels, the summary, history
    assert "GPU on &lt;script&gt;" in body
    assert 'href="/runbooks/gpu-throttling"' in body and "javascript:" not in body
    assert '<form class="silence"' not in body and 'class="expire"' not in body
    assert '<table id="history">' in body and "inactive → pending" in body and "pending → firing" in body


def test_an_operator_silences_an_alert_from_the_page_and_the_api_lists_it(served: Any) -> None:
    client, caller = served
    as_(caller, Role.OPERATOR)
    page = client.get("/alerts").text
    assert '<form class="silence" method="post" action="/alerts/silence">' in page
    assert 'name="duration"' in page and 'name="comment"' in page and '<button type="submit" class="silence">' in page
    assert f'value="host.name={escape(HOST)}" checked' in page  # matchers prefilled from the labels
    before = time.time()
    r = client.post("/alerts/silence", data=silence_form())
    assert (r.status_code, r.headers["location"]) == (303, "/alerts?done=silenced")
    (listed,) = [
        s for s in client.get("/api/v1/silences", headers=api_auth()).json() if s["comment"] == "swapping the fan"
    ]
    assert listed["createdBy"] == "operator-1" and listed["status"] == {"state": "active"}
    assert {(m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in listed["matchers"]} == {
        ("alertname", "HotGpu", False, True),
        ("host.name", HOST, False, True),
        ("severity", "page", False, True),
    }
    ends = time.mktime(time.strptime(listed["endsAt"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before + 4 * HOUR - 5 < ends < time.time() + 4 * HOUR + 5
    after = client.get("/alerts?done=silenced").text
    assert "Silence created." in after and f'data-id="{listed["id"]}"' in after
    r = client.post(f"/alerts/silences/{listed['id']}/expire", data={"csrf_token": CSRF})
    assert (r.status_code, r.headers["location"]) == (303, "/alerts?done=expired")
    active = client.get("/api/v1/silences", headers=api_auth()).json()
    assert listed["id"] not in [s["id"] for s in active]


@pytest.mark.parametrize(
    ("over", "says"),
    [
        ({"duration": "custom", "custom": "soon"}, "custom: &#39;soon&#39; is not a duration"),
        ({"duration": "forever"}, "duration: &#39;forever&#39;"),
        ({"comment": ""}, "comment:"),
        ({"matcher": []}, "matcher: tick at least one label"),
        ({"matcher": ["nolabel"]}, "matcher.0:"),
        ({"matcher": ["9bad=x"]}, "matchers.0.name:"),
    ],
)
def test_a_bad_silence_form_is_answered_with_the_page_and_the_reason(
    served: Any, over: dict[str, Any], says: str
) -> None:
    client, caller = served
    as_(caller, Role.OPERATOR)
    r = client.post("/alerts/silence", data=silence_form(**over))
    assert r.status_code == 400 and says in r.text and '<table id="alerts">' in r.text


def test_a_custom_duration_is_taken(served: Any) -> None:
    client, caller = served
    as_(caller, Role.OPERATOR)
    r = client.post("/alerts/silence", data=silence_form(duration="custom", custom="90m", comment="custom-90m"))
    assert r.status_code == 303
    (listed,) = [s for s in client.get("/api/v1/silences", headers=api_auth()).json() if s["comment"] == "custom-90m"]
    client.post(f"/alerts/silences/{listed['id']}/expire", data={"csrf_token": CSRF})


def test_expiring_an_unknown_silence_says_so(served: Any) -> None:
    client, caller = served
    as_(caller, Role.OPERATOR)
    r = client.post("/alerts/silences/nope/expire", data={"csrf_token": CSRF})
    assert r.status_code == 404 and "no silence &#39;nope&#39;" in r.text


def test_the_forms_refuse_a_viewer_an_anonymous_caller_and_a_missing_csrf_token(served: Any) -> None:
    client, caller = served
    for path in ("/alerts/silence", "/alerts/silences/x/expire"):
        as_(caller, Role.VIEWER)
        assert client.post(path, data=silence_form()).status_code == 403
        caller.principal = None
        r = client.post(path, data=silence_form())
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        as_(caller, Role.OPERATOR)
        assert client.post(path, data=silence_form(csrf_token="")).status_code == 403
        assert client.post(path, data=silence_form(csrf_token="forged")).status_code == 403
    assert not [s for s in client.get("/api/v1/silences", headers=api_auth()).json() if s["createdBy"] == "viewer-1"]


def test_without_a_csrf_token_the_services_own_check_refuses(store: Store, edge: float, tmp_path: Path) -> None:
    app = rules_app(store, tmp_path, (AlertingService, DashboardService), RULES, TOKEN)
    caller = Caller()
    bind_caller(app, caller, TOKEN, CSRF, own_csrf_check=True)
    with TestClient(app, follow_redirects=False) as client:
        as_(caller, Role.ADMIN)
        r = client.post("/alerts/silence", data=silence_form(csrf_token=""))
        assert r.status_code == 403


def test_the_slo_page_shows_objective_budget_burn_rates_and_a_chart(served: Any, edge: float) -> None:
    client, caller = served
    as_(caller, Role.VIEWER)
    page = client.get("/slos")
    assert page.status_code == 200
    body = page.text
    assert f"svc-{RUN} · availability" in body and "99 % over 3 days" in body
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert f"<th>{window}</th>" in body
    src = f"/api/v1/slos/svc-{RUN}%3Aavailability/budget?range=86400"
    assert f'<div class="chart" data-src="{src}" data-kind="line" data-unit="%"' in body
    chart = client.get(src)
    assert chart.status_code == 200
    data = chart.json()
    assert (data["step"], data["source"]) == (HOUR, "1h")
    ((series),) = data["series"]
    assert series["labels"] == {"slo": f"svc-{RUN}:availability"}
    assert len(series["points"]) in (24, 25)  # hourly over a day, and now


def test_the_budget_series_falls_as_the_errors_come(served: Any, edge: float) -> None:
    client, caller = served
    as_(caller, Role.VIEWER)
    url = f"/api/v1/slos/svc-{RUN}:availability/budget?start={edge - 3 * HOUR}&end={edge}&step={HOUR}"
    points = dict((t, v) for t, v in client.get(url).json()["series"][0]["points"])
    # by hand: 100 good requests per 10 s from edge - 4h; 1 error per 10 s from edge - 2h; budget 1 %
    assert points[edge - 3 * HOUR] == 100.0 and points[edge - 2 * HOUR] == 100.0
    assert points[edge - HOUR] == pytest.approx(100 * (1 - 360 / (360 * 300 + 360) / 0.01), abs=0.5)
    assert points[edge] == pytest.approx(100 * (1 - 720 / (4 * 360 * 100 + 720) / 0.01), abs=0.5)


@pytest.mark.parametrize(
    ("query", "status"),
    [("", 200), ("?step=60&range=864000", 400), ("?start=10&end=5", 400), ("?range=0", 422)],
)
def test_budget_requests_are_checked(served: Any, query: str, status: int) -> None:
    client, caller = served
    as_(caller, Role.VIEWER)
    assert client.get(f"/api/v1/slos/svc-{RUN}:availability/budget{query}").status_code == status


def test_the_budget_api_wants_a_viewer_and_a_known_slo(served: Any) -> None:
    client, caller = served
    caller.principal = None
    r = client.get(f"/api/v1/slos/svc-{RUN}:availability/budget")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    as_(caller, Role.VIEWER)
    r = client.get("/api/v1/slos/nope/budget")
    assert r.status_code == 404 and "no SLO 'nope'" in r.json()["detail"]
    caller.principal = None
    r = client.get("/slos")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/slos"


def test_without_alerting_both_pages_say_so(store: Store, tmp_path: Path) -> None:
    app = rules_app(store, tmp_path, (DashboardService,), RULES, TOKEN)
    caller = Caller()
    bind_caller(app, caller, TOKEN, CSRF)
    as_(caller, Role.OPERATOR)
    with TestClient(app, follow_redirects=False) as client:
        for path in ("/alerts", "/slos"):
            r = client.get(path)
            assert r.status_code == 200 and "Alerting not configured" in r.text
        assert client.get("/api/v1/slos/x/budget").status_code == 404
        assert client.post("/alerts/silence", data=silence_form()).status_code == 404


def test_an_alert_storm_is_cut_to_a_bounded_page(served: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, caller = served
    as_(caller, Role.VIEWER)
    monkeypatch.setattr(dashboard_alerts, "ALERTS_SHOWN", 0)
    body = client.get("/alerts").text
    assert '<tr class="alert' not in body and "0 are shown, firing first and oldest first" in body
