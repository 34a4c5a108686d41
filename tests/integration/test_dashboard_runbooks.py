"""The runbook pages (/runbooks, /runbooks/{name}, /runs/{id}) and their forms, with the real runbook
service over the real embedded store and the real reference workload on loopback: runbook files on disk
beside the shipped pack, `create_app` serving the dashboard and the runbook service. The caller is bound
through `vigil.access.authenticate` as the dashboard's auth binds it (principal and CSRF token on
`request.state`), as the alert pages' tests do.
"""

from __future__ import annotations

import re
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from markupsafe import escape

from dashboard.service import DashboardService
from runbooks.loader import default_pack, load_file
from runbooks.service import RunbooksService
from tests.integration.dashboard_app import Caller, as_, bind_caller
from tests.integration.workload_server import WorkloadServer
from vigil.access import Role
from vigil.app import create_app
from vigil.kernel import RunPlan, WorkloadPlan
from vigil.settings import Settings
from vigil.store import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

RUN = uuid.uuid4().hex[:8]
TOKEN = "tok-runbook-pages"
CONTROL = "control-runbook-pages"
CSRF = "csrf-" + RUN
HOSTILE = '<img src=x onerror=alert("rb")>'

BOOKS = {
    "page-approve": """
name: page-approve
description: "A note, an approval, a note <b>bold</b>"
target: workload
params:
  who: {type: str, default: world, description: who is greeted}
steps:
  - note: "hello ${who}"
  - name: go on
    approve: "go on for ${who}?"
    timeout: 60s
  - note: "done"
""",
    "page-config": """
name: page-config
description: Set the workload's batch size.
target: workload
params:
  seqs: {type: int, default: 3, min: 1, max: 64}
  fast: {type: bool, default: false}
steps:
  - name: set batch size
    action: set_config
    with: {max_num_seqs: "${seqs}"}
    timeout: 10s
""",
    "page-refused": """
name: page-refused
description: Clear a simulated GPU's fault (no agent runs here, so it is refused).
target: gpu
steps:
  - name: clear
    action: clear_fault
    timeout: 5s
  - note: after
""",
}


def make_app(store: Store, data: Path, workload: WorkloadServer | None, services: tuple[Any, ...]) -> FastAPI:
    books = data / "runbooks"
    books.mkdir(parents=True, exist_ok=True)
    for name, text in BOOKS.items():
        (books / f"{name}.yaml").write_text(text)
    settings = Settings(data=data, runbooks_dir=books, api_tokens=[TOKEN])
    plan = RunPlan(
        host="127.0.0.1", port=1, url="http://127.0.0.1:1", data=data,
        workload=WorkloadPlan(workload.port, workload.url, CONTROL) if workload else None,
    )  # fmt: skip
    return create_app(settings, store, plan, services=services)


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkloadServer]:
    log = tmp_path_factory.mktemp("workload") / "workload.log"
    server = WorkloadServer(log, "--num-blocks", "64", env={"VIGIL_CONTROL_TOKEN": CONTROL}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(
    store: Store, workload: WorkloadServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Caller]]:
    app = make_app(store, tmp_path_factory.mktemp("pages"), workload, (DashboardService, RunbooksService))
    caller = Caller()
    bind_caller(app, caller, TOKEN, CSRF)
    with TestClient(app, follow_redirects=False) as client:
        yield client, caller


def api(client: TestClient, path: str) -> Any:
    r = client.get(f"/api/v1{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    return r.json()


def until(client: TestClient, run_id: str, *states: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = api(client, f"/runs/{run_id}")
        if run["state"] in states:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never {states}: {run}")


def started(r: Any, done: str) -> str:
    """The run id a taken form redirected to."""
    assert r.status_code == 303, r.text
    found = re.fullmatch(rf"/runs/([0-9a-f]+)\?done={done}", r.headers["location"])
    assert found, r.headers["location"]
    return found.group(1)


def start(client: TestClient, name: str, mode: str = "run", **fields: str) -> Any:
    return client.post(f"/runbooks/{name}/{mode}", data={"csrf_token": CSRF, **fields})


def test_the_list_shows_every_runbook_and_the_run_history(served: Any) -> None:
    client, caller = served
    as_(caller, Role.OPERATOR)
    run_id = started(start(client, "page-approve", target=f"list-{RUN}"), "started")
    until(client, run_id, "waiting_approval")
    as_(caller, Role.VIEWER)
    page = client.get("/runbooks")
    assert page.status_code == 200
    body = page.text
    assert '<table id="runbooks">' in body
    for name in [*BOOKS, *(load_file(p).name for p in default_pack())]:
        assert f'<tr class="runbook" data-name="{name}">' in body and f'href="/runbooks/{name}"' in body
    assert "A note, an approval, a note &lt;b&gt;bold&lt;/b&gt;" in body
    assert "who: str = world" in body and "go on" in body
    row = body[body.index(f'data-id="{run_id}"') :].split("</tr>")[0]
    assert f"list-{RUN}" in row and "operator-1" in row and "waiting approval" in row
    assert f'href="/runs/{run_id}"' in row
    as_(caller, Role.OPERATOR)
    assert client.post(f"/runs/{run_id}/cancel", data={"csrf_token": CSRF}).status_code == 303
    until(client, run_id, "cancelled")


def test_every_shipped_runbook_has_a_page_and_an_unknown_one_is_404(served: Any) -> None:
    client, caller = served
    as_(caller, Role.VIEWER)
    for path in default_pack():
        name = load_file(path).name
        page = client.get(f"/runbooks/{name}")
        assert page.status_code == 200 and '<table id="steps">' in page.text and '<tr class="step' in page.text
        assert '<form class="run"' not in page.text  # a viewer sees no form
    missing = client.get("/runbooks/no-such-book")
    assert missing.status_code == 404 and "no runbook &#39;no-such-book&#39;" in missing.text
    assert client.get("/runs/0123abcd").status_code == 404


def test_an_operator_gets_a_typed_form_with_dry_run_and_run_buttons(served: Any) -> None:
    client, caller = served
    as_(caller, Role.OPERATOR)
    body = client.get("/runbooks/page-config?target=somewhere").text
    form = body[body.index('<form class="run"') : body.index("</form>", body.index('<form class="run"'))]
    assert 'action="/runbooks/page-config/run"' in form and f'value="{CSRF}"' in form
    assert 'name="target" value="somewhere"' in form and 'placeholder="the reference workload"' in form
    assert 'name="seqs" type="number" value="3"' in form and 'step="1" min="1" max="64"' in form
    assert '<select name="fast">' in form and '<option value="false" selected>' in form
    assert '<button type="submit" class="dry-run" formaction="/runbooks/page-config/dry-run">' in form
    assert '<button type="submit" class="run">' in form


def test_a_dry_run_changes_nothing_and_shows_what_each_step_would_do(served: Any, workload: WorkloadServer) -> None:
    client, caller = served
    as_(caller, Role.OPERATOR)
    before = workload.control("GET", "config", CONTROL).json()["max_num_seqs"]
    seqs = 2 if before != 2 else 5
    run_id = started(start(client, "page-config", "dry-run", seqs=str(seqs)), "dry-run")
    assert workload.control("GET", "config", CONTROL).json()["max_num_seqs"] == before
    run = api(client, f"/runs/{run_id}")
    assert run["dry_run"] and run["state"] == "succeeded" and run["target"] == f"{workload.url}/metrics"
    assert [e["event"] for e in run["log"]] == ["planned"]
    page = client.get(f"/runs/{run_id}?done=dry-run").text
    assert "nothing was changed" in page and 'class="banner dry-run"' in page
    assert f"would set_config(max_num_seqs={seqs})" in page
    assert 'data-state="succeeded"' in page and "hx-trigger" not in page
    assert '<form class="retry"' not in page and '<form class="cancel"' not in page
    # the same form for real does change it: the dry run held nothing back
    real = started(start(client, "page-config", seqs=str(seqs)), "started")
    assert until(client, real, "succeeded", "failed")["state"] == "succeeded"
    assert workload.control("GET", "config", CONTROL).json()["max_num_seqs"] == seqs
    workload.control("PATCH", "config", CONTROL, json={"max_num_seqs": before})


def test_a_run_waits_for_approval_and_records_the_approver_escaped_throughout(served: Any) -> None:
    client, caller = served
    as_(caller, Role.OPERATOR)
    run_id = started(start(client, "page-approve", target=HOSTILE, who=HOSTILE), "started")
    until(client, run_id, "waiting_approval")
    page = client.get(f"/runs/{run_id}?done=started").text
    assert "Run started." in page and 'id="run-state"' in page and 'data-state="waiting_approval"' in page
    assert HOSTILE not in page and f"hello {escape(HOSTILE)}" in page and f"go on for {escape(HOSTILE)}?" in page
    assert f'<td class="target">{escape(HOSTILE)}</td>' in page and f"who={escape(HOSTILE)}" in page
    assert f'<form class="approve" method="post" action="/runs/{run_id}/approve">' in page
    assert '<tr class="step succeeded"' in page and '<tr class="step waiting"' in page
    live = client.get(f"/fragments/runs/{run_id}").text
    assert f'hx-get="/fragments/runs/{run_id}" hx-trigger="every 2s" hx-swap="outerHTML"' in live
    assert "<html" not in live and 'class="approve"' in live

    as_(caller, Role.VIEWER)
    assert '<form class="approve"' not in client.get(f"/runs/{run_id}").text
    assert client.post(f"/runs/{run_id}/approve", data={"csrf_token": CSRF}).status_code == 403
    as_(caller, Role.OPERATOR)
    assert client.post(f"/runs/{run_id}/approve", data={}).status_code == 403
    assert client.post(f"/runs/{run_id}/approve", data={"csrf_token": "forged"}).status_code == 403
    assert api(client, f"/runs/{run_id}")["state"] == "waiting_approval"

    r = client.post(f"/runs/{run_id}/approve", data={"csrf_token": CSRF})
    assert (r.status_code, r.headers["location"]) == (303, f"/runs/{run_id}?done=approved")
    run = until(client, run_id, "succeeded")
    assert run["approvals"][0]["by"] == "operator-1"
    page = client.get(f"/runs/{run_id}").text
    assert 'data-state="succeeded"' in page and "hx-trigger" not in page
    assert 'approved by <strong class="approver">operator-1</strong>' in page
    assert '<form class="approve"' not in page
    again = client.post(f"/runs/{run_id}/approve", data={"csrf_token": CSRF})
    assert again.status_code == 409 and "not waiting for an approval" in again.text


def test_a_failed_run_is_retried_from_its_step_and_a_waiting_one_cancelled(served: Any) -> None:
    client, caller = served
    as_(caller, Role.OPERATOR)
    run_id = started(start(client, "page-refused", target="GPU-page"), "started")
    until(client, run_id, "failed")
    page = client.get(f"/runs/{run_id}").text
    assert '<tr class="step refused"' in page and "no GPU agent runs under this Vigil" in page
    assert f'<form class="retry" method="post" action="/runs/{run_id}/retry">' in page
    r = client.post(f"/runs/{run_id}/retry", data={"csrf_token": CSRF})
    assert (r.status_code, r.headers["location"]) == (303, f"/runs/{run_id}?done=retried")
    run = until(client, run_id, "failed")
    assert [e["event"] for e in run["log"]] == ["started", "refused", "started", "refused"]
    assert "Retried from the step" in client.get(f"/runs/{run_id}?done=retried").text

    waiting = started(start(client, "page-approve", target=f"cancel-{RUN}"), "started")
    until(client, waiting, "waiting_approval")
    r = client.post(f"/runs/{waiting}/cancel", data={"csrf_token": CSRF})
    assert (r.status_code, r.headers["location"]) == (303, f"/runs/{waiting}?done=cancelled")
    assert until(client, waiting, "cancelled")["reason"] == "cancelled by operator-1"


@pytest.mark.parametrize(
    ("name", "fields", "status", "says"),
    [
        ("page-config", {"seqs": "many"}, 400, "parameter seqs: expected int, got &#39;many&#39;"),
        ("page-config", {"seqs": "999"}, 400, "above its maximum 64"),
        ("page-refused", {}, 400, "give its target"),
        ("no-such-book", {}, 404, "no runbook &#39;no-such-book&#39;"),
    ],
)
def test_a_refused_run_form_is_answered_with_the_page_and_the_reason(
    served: Any, name: str, fields: dict[str, str], status: int, says: str
) -> None:
    client, caller = served
    as_(caller, Role.OPERATOR)
    r = start(client, name, **fields)
    assert r.status_code == status and says in r.text
    if status == 400:
        assert '<form class="run"' in r.text
        for value in fields.values():
            assert f'value="{value}"' in r.text  # what was typed is kept


def test_one_run_per_runbook_and_target_is_a_409_page(served: Any) -> None:
    client, caller = served
    as_(caller, Role.OPERATOR)
    first = started(start(client, "page-approve", target=f"once-{RUN}"), "started")
    second = start(client, "page-approve", target=f"once-{RUN}")
    assert second.status_code == 409 and "one run per runbook and target" in second.text
    client.post(f"/runs/{first}/cancel", data={"csrf_token": CSRF})
    until(client, first, "cancelled")


def test_anonymous_callers_are_sent_to_log_in_and_viewers_cannot_start(served: Any) -> None:
    client, caller = served
    caller.principal = None
    for path in ("/runbooks", "/runbooks/page-config", "/runs/x"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"] == f"/login?next={path}"
    assert client.get("/fragments/runs/x").status_code == 401  # htmx keeps what it shows
    r = start(client, "page-config")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    as_(caller, Role.VIEWER)
    before = len(api(client, "/runs?runbook=page-config")["runs"])
    for mode in ("run", "dry-run"):
        assert start(client, "page-config", mode).status_code == 403
    assert len(api(client, "/runs?runbook=page-config")["runs"]) == before


def test_without_the_runbook_service_the_pages_say_so(store: Store, tmp_path: Path) -> None:
    app = make_app(store, tmp_path, None, (DashboardService,))
    caller = Caller()
    bind_caller(app, caller, TOKEN, CSRF)
    as_(caller, Role.OPERATOR)
    with TestClient(app, follow_redirects=False) as client:
        r = client.get("/runbooks")
        assert r.status_code == 200 and "Runbooks not configured" in r.text
        for path in ("/runbooks/page-config", "/runs/abc"):
            r = client.get(path)
            assert r.status_code == 404 and "Runbooks not configured" in r.text
        assert start(client, "page-config").status_code == 404
        assert client.post("/runs/abc/approve", data={"csrf_token": CSRF}).status_code == 404
