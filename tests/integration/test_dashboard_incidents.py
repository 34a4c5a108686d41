"""The incident pages (/incidents, /incidents/{id}), their note and close forms, and the incident marks
route, with the real alerting service over the real embedded store: a rule file on disk whose alert fires
from inserted metrics and opens an incident, a runbook run in the audit tables, `create_app` serving
alerting and the dashboard. The caller is bound through `vigil.access.authenticate` as the dashboard's
auth binds it (principal and CSRF token on `request.state`), as the alert pages' tests do.
"""

from __future__ import annotations

import html
import re
import time
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from alerting.service import AlertingService
from dashboard.service import DashboardService
from tests.integration.dashboard_app import Caller, as_, bind_caller, rules_app
from vigil.access import Role
from vigil.app import create_app
from vigil.incident_view import MAX_NOTE_CHARS
from vigil.kernel import RunPlan
from vigil.settings import Settings
from vigil.store import Store
from vigil.store.schema import GAUGE, RUNBOOK_EVENTS, RUNBOOK_RUNS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

RUN = uuid.uuid4().hex[:12]
ALERT = f"IncHot{RUN}"
HOST = '<script>alert("inc")</script>'  # a label value holding HTML, as a hostile series could
GPU = f"GPU-{RUN}"
TOKEN = "tok-dashboard-incidents"
CSRF = "csrf-" + RUN
RUN_ID = f"run-{RUN}"
ADMIN_PASSWORD = "incident pages " + RUN
S = 10**9

RULES = f"""
groups:
  - name: incidents-{RUN}
    interval: 1s
    rules:
      - alert: {ALERT}
        expr: {{metric: gpu.temperature, function: max, window: 1m, matchers: {{vigil.test: "{RUN}"}},
                by: [host.name, gpu.uuid]}}
        op: ">"
        threshold: 90
        for: 0s
        labels: {{severity: page}}
        annotations: {{summary: "GPU {{{{ $labels.gpu.uuid }}}} is hot"}}
        runbook: gpu-throttling
"""


def insert_hot_gpu(store: Store) -> float:
    """A hot GPU from 25 s ago to 5 minutes ahead (its rule's 1 m window keeps firing while the tests run)."""
    now = time.time()
    times = [now - 25 + 5 * i for i in range(66)]
    store.insert_columns(
        GAUGE,
        [
            ["gpu.temperature"] * len(times),
            [{"host.name": HOST, "vigil.test": RUN}] * len(times),
            [{"gpu.uuid": GPU}] * len(times),
            [round(t * S) for t in times],
            [95.0] * len(times),
        ],
        ["MetricName", "ResourceAttributes", "Attributes", "TimeUnix", "Value"],
    )
    return now


def insert_run(store: Store, at: float) -> None:
    """A runbook run of the rule's runbook, as the runbook engine's audit trail records one."""

    def ts(s: float) -> datetime:
        return datetime.fromtimestamp(s, UTC)

    cols = ["RunId", "Seq", "At", "Runbook", "TargetKind", "Target", "Params", "DryRun", "StartedBy", "Auto"]
    cols += ["Origin", "State", "Step", "Reason", "Actor"]
    first = (RUN_ID, 1, ts(at), "gpu-throttling", "gpu", GPU, "{}", 0, "olga", 0, "", "running", -1, "", "olga")
    last = (RUN_ID, 2, ts(at + 0.2), *first[3:11], "succeeded", 0, "", "olga")
    store.insert_columns(RUNBOOK_RUNS, list(zip(first, last, strict=True)), cols)
    ecols = ["RunId", "Seq", "At", "StepIndex", "StepName", "StepKind", "Attempt", "Event", "Actor", "Message"]
    ecols.append("Output")
    rows = [
        (RUN_ID, 0, ts(at + 0.05), 0, "cap power", "action", 1, "started", "olga", "", "{}"),
        (RUN_ID, 1, ts(at + 0.1), 0, "cap power", "action", 1, "succeeded", "olga", "", "{}"),
    ]
    store.insert_columns(RUNBOOK_EVENTS, list(zip(*rows, strict=True)), ecols)


def api_auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Caller, str]]:
    insert_hot_gpu(store)
    app = rules_app(store, tmp_path_factory.mktemp("incidents"), (AlertingService, DashboardService), RULES, TOKEN)
    caller = Caller()
    bind_caller(app, caller, TOKEN, CSRF)
    with TestClient(app, follow_redirects=False) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = client.get("/api/v1/incidents", headers=api_auth()).json()["incidents"]
            ours = [i for i in found if i["title"].split(" on ")[0] == ALERT]
            if ours:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the rule never opened an incident")
        insert_run(store, time.time())
        yield client, caller, ours[0]["id"]


def entries(page: str) -> list[tuple[str, str]]:
    """(data-kind, text) of each timeline entry, in page order."""
    found = re.findall(r'<li class="entry [a-z_]+" data-kind="([a-z_]+)">(.*?)</li>', page, re.S)
    return [(kind, re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip()) for kind, body in found]


def test_the_list_shows_the_incident_with_its_alerts_and_a_status_filter(served: Any) -> None:
    client, caller, iid = served
    as_(caller, Role.VIEWER)
    page = client.get("/incidents")
    assert page.status_code == 200
    assert '<table id="incidents">' in page.text
    row = re.search(rf'<tr class="incident open" data-id="{iid}">(.*?)</tr>', page.text, re.S)
    assert row, page.text
    assert f'href="/incidents/{iid}"' in row.group(1) and '<span class="severity page">page</span>' in row.group(1)
    assert "1 (1)" in row.group(1)  # one alert, firing
    assert f'data-id="{iid}"' in client.get("/incidents?status=open").text
    assert f'data-id="{iid}"' not in client.get("/incidents?status=resolved").text
    bad = client.get("/incidents?status=<b>")
    assert bad.status_code == 400 and "status: &#39;&lt;b&gt;&#39;" in bad.text and "<b>" not in bad.text


def test_a_viewer_sees_the_incident_escaped_with_charts_marks_and_the_timeline_and_no_forms(served: Any) -> None:
    client, caller, iid = served
    as_(caller, Role.VIEWER)
    page = client.get(f"/incidents/{iid}")
    assert page.status_code == 200
    body = page.text
    assert HOST not in body and str(escape(HOST)) in body  # the alert's labels, its transitions
    assert '<table id="incident-alerts">' in body and '<tr class="alert firing"' in body
    assert 'href="/runbooks/gpu-throttling"' in body
    kinds = [k for k, _ in entries(body)]
    assert kinds[:3] == ["alert", "alert", "opened"] and "runbook_run" in kinds and "runbook_step" in kinds
    assert f'href="/runs/{RUN_ID}"' in body
    assert '<form class="note"' not in body and '<form class="close"' not in body

    charts = re.findall(
        r'<div class="chart" data-src="([^"]+)" data-kind="line" data-unit="([^"]*)" data-marks="([^"]+)"', body
    )
    assert len(charts) == 5 and {c[2] for c in charts} == {f"/api/v1/incidents/{iid}/marks"}
    temperature = next(html.unescape(src) for src, unit, _ in charts if unit == "Cel")
    assert f"filter=gpu.uuid%3D{GPU}" in temperature and "metric=gpu.temperature" in temperature
    series = client.get(temperature).json()["series"]
    assert series and all(p[1] == 95.0 for s in series for p in s["points"] if p[1] is not None)

    marks = client.get(f"/api/v1/incidents/{iid}/marks").json()["marks"]
    assert (f"{ALERT} firing", "alert") in [(m["label"], m["kind"]) for m in marks]
    assert ("gpu-throttling started by olga", "runbook") in [(m["label"], m["kind"]) for m in marks]
    assert ("cap power succeeded by olga", "runbook") in [(m["label"], m["kind"]) for m in marks]
    assert [m["t"] for m in marks] == sorted(m["t"] for m in marks)


def test_an_operator_adds_a_note_signed_and_escaped(served: Any) -> None:
    client, caller, iid = served
    as_(caller, Role.OPERATOR)
    page = client.get(f"/incidents/{iid}").text
    assert f'<form class="note" method="post" action="/incidents/{iid}/notes">' in page
    assert f'value="{CSRF}"' in page
    text = "fan swapped <img src=x onerror=alert(1)>\r\nwatching"
    r = client.post(f"/incidents/{iid}/notes", data={"text": text, "csrf_token": CSRF})
    assert (r.status_code, r.headers["location"]) == (303, f"/incidents/{iid}?done=noted")
    after = client.get(r.headers["location"]).text
    assert "Note added." in after and "<img src=x" not in after
    (note,) = [t for k, t in entries(after) if k == "note" and "fan swapped" in t]
    assert "operator-1" in note and "&lt;img src=x onerror=alert(1)&gt;" in note
    timeline = client.get(f"/api/v1/incidents/{iid}", headers=api_auth()).json()["timeline"]
    assert [e["text"] for e in timeline if e["kind"] == "note"][
        -1
    ] == "fan swapped <img src=x onerror=alert(1)>\nwatching"


@pytest.mark.parametrize(
    ("text", "says"), [("", "text: a note needs some text"), ("x" * (MAX_NOTE_CHARS + 1), "text: at most")]
)
def test_a_refused_note_answers_the_page_with_the_reason(served: Any, text: str, says: str) -> None:
    client, caller, iid = served
    as_(caller, Role.OPERATOR)
    r = client.post(f"/incidents/{iid}/notes", data={"text": text, "csrf_token": CSRF})
    assert r.status_code == 400 and says in r.text and '<ol id="timeline">' in r.text


def test_the_forms_refuse_a_viewer_an_anonymous_caller_and_a_missing_csrf_token(served: Any) -> None:
    client, caller, iid = served
    for path in (f"/incidents/{iid}/notes", f"/incidents/{iid}/close"):
        form = {"text": "from a viewer", "csrf_token": CSRF}
        as_(caller, Role.VIEWER)
        assert client.post(path, data=form).status_code == 403
        caller.principal = None
        r = client.post(path, data=form)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        as_(caller, Role.OPERATOR)
        assert client.post(path, data={**form, "csrf_token": ""}).status_code == 403
        assert client.post(path, data={**form, "csrf_token": "forged"}).status_code == 403
    caller.principal = None
    assert client.get(f"/api/v1/incidents/{iid}/marks").status_code == 401
    found = client.get(f"/api/v1/incidents/{iid}", headers=api_auth()).json()
    assert found["status"] == "open" and not [e for e in found["timeline"] if e["text"] == "from a viewer"]


def test_an_unknown_or_malformed_id_says_so(served: Any) -> None:
    client, caller, _ = served
    as_(caller, Role.OPERATOR)
    r = client.get("/incidents/ffffffffffffffff")
    assert r.status_code == 404 and "no incident ffffffffffffffff" in r.text
    r = client.get("/incidents/no%20such%20id")
    assert r.status_code == 400 and "id: an incident id" in r.text
    assert client.get("/api/v1/incidents/ffffffffffffffff/marks").status_code == 404
    r = client.post("/incidents/ffffffffffffffff/close", data={"csrf_token": CSRF})
    assert r.status_code == 404 and "no incident" in r.text


def test_an_operator_closes_it_by_hand_and_it_stays_closed(served: Any) -> None:
    client, caller, iid = served
    as_(caller, Role.OPERATOR)
    assert f'<form class="close" method="post" action="/incidents/{iid}/close">' in client.get(f"/incidents/{iid}").text
    assert client.post(f"/incidents/{iid}/notes", data={"text": "closing", "csrf_token": CSRF}).status_code == 303
    r = client.post(f"/incidents/{iid}/close", data={"csrf_token": CSRF})
    assert (r.status_code, r.headers["location"]) == (303, f"/incidents/{iid}?done=closed")
    page = client.get(r.headers["location"]).text
    assert "Incident closed." in page and '<span class="status resolved">' in page
    assert '<span class="closed-by">operator-1</span>' in page and '<form class="close"' not in page
    kinds = [k for k, _ in entries(page)]
    assert kinds[-1] == "closed" and kinds.index("runbook_run") < kinds.index("note") < kinds.index("closed")
    again = client.post(f"/incidents/{iid}/close", data={"csrf_token": CSRF})
    assert again.status_code == 409 and f"incident {iid} was closed already" in again.text
    assert f'data-id="{iid}"' in client.get("/incidents?status=resolved").text
    marks = client.get(f"/api/v1/incidents/{iid}/marks").json()["marks"]
    assert ("incident closed by operator-1", "incident") in [(m["label"], m["kind"]) for m in marks]


def test_with_the_real_auth_a_logged_in_admin_notes_by_form_or_header_and_no_token_is_refused(
    served: Any, store: Store, tmp_path: Path
) -> None:
    """The dashboard's own login and CSRF check (no bound caller); no rules here, so the incident is left as is."""
    _, _, iid = served
    data = tmp_path / "real-auth"
    (data / "rules").mkdir(parents=True)
    settings = Settings(data=data, rules_dir=data / "rules", default_rules=False, admin_password=ADMIN_PASSWORD)
    plan = RunPlan(host="127.0.0.1", port=1, url="http://127.0.0.1:1", data=data)
    app = create_app(settings, store, plan, services=(AlertingService, DashboardService))
    with TestClient(app, follow_redirects=False, client=("127.0.0.1", 5000)) as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
        assert token
        form = {"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token.group(1)}
        assert client.post("/login", data=form).status_code == 303
        page = client.get(f"/incidents/{iid}").text
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
        assert csrf and f'<input type="hidden" name="csrf_token" value="{csrf.group(1)}">' in page
        path = f"/incidents/{iid}/notes"
        assert client.post(path, data={"text": "by form", "csrf_token": csrf.group(1)}).status_code == 303
        assert client.post(path, data={"text": "by header"}, headers={"X-CSRF-Token": csrf.group(1)}).status_code == 303
        assert client.post(path, data={"text": "no token"}).status_code == 403
        notes = [
            (t, by)
            for k, t, by in [(e["kind"], e["text"], e["actor"]) for e in timeline_of(client, iid)]
            if k == "note"
        ]
        assert (
            ("by form", "admin") in notes
            and ("by header", "admin") in notes
            and "no token" not in [t for t, _ in notes]
        )


def timeline_of(client: TestClient, iid: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/v1/incidents/{iid}").json()["timeline"])


def test_without_alerting_the_pages_say_so(store: Store, tmp_path: Path) -> None:
    app = rules_app(store, tmp_path, (DashboardService,), RULES, TOKEN)
    caller = Caller()
    bind_caller(app, caller, TOKEN, CSRF)
    as_(caller, Role.OPERATOR)
    with TestClient(app, follow_redirects=False) as client:
        r = client.get("/incidents")
        assert r.status_code == 200 and "Incidents not configured" in r.text
        r = client.get("/incidents/abc")
        assert r.status_code == 404 and "Incidents not configured" in r.text
        assert client.post("/incidents/abc/notes", data={"text": "x", "csrf_token": CSRF}).status_code == 404
        assert client.post("/incidents/abc/close", data={"csrf_token": CSRF}).status_code == 404
        assert client.get("/api/v1/incidents/abc/marks").status_code == 503
