"""`vigil drill` counts the pages a receiver got during a fault, starts runbooks with its fault's params, and
keeps the load a fault needs in flight."""

from __future__ import annotations

from typing import Any

from vigil.drill import FAULTS, Api, Drill, Row


class FakeApi(Api):
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.posted: list[tuple[str, Any]] = []

    def call(self, method: str, path: str, token: str | None = None, ok: tuple[int, ...] = (), **kw: Any) -> Any:
        if method == "POST":
            self.posted.append((path, kw.get("json")))
            return {"id": "run-1"}
        return self.answers[path.split("?")[0]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def alert(fp: str, severity: str) -> dict[str, Any]:
    return {"fingerprint": fp, "labels": {"severity": severity}}


def page(receiver: str, *alerts: tuple[str, str]) -> dict[str, Any]:
    return {"receiver": receiver, "firing": [{"alertname": a, "fingerprint": a, "severity": s} for a, s in alerts]}


def test_pages_count_every_delivery_to_a_receiver_that_told_a_page_alert_firing_whatever_its_incident() -> None:
    api = FakeApi(
        {
            "/api/v1/incidents": {"incidents": [{"id": "i2"}, {"id": "i1"}]},
            "/api/v1/incidents/i2": {"alerts": [alert("Other", "page")]},
            "/api/v1/incidents/i1": {"alerts": [alert("InferenceOutage", "page")]},
            "/api/v1/alerts": {"alerts": []},
            "/api/v1/notifications": {
                "notifications": [
                    page("hook/webhook/0", ("InferenceOutage", "page")),
                    page("hook/webhook/0", ("InferenceErrorBudgetBurn", "page")),  # another incident: still a page
                    page("hook/webhook/0", ("InferenceErrorBudgetBurnTicket", "ticket")),  # a ticket is no page
                    page("hook/webhook/0"),  # a resolve
                    page("hook/slack/1", ("InferenceOutage", "page")),  # the same page, to a second integration
                ]
            },
        }
    )
    row = Row("errors")
    clock = FakeClock()
    Drill(api, say=lambda _: None, clock=clock, sleep=clock.sleep).incident_and_pages(row, "InferenceOutage", 0.0)
    assert (row.incident, row.pages) == ("i1", 2)
    assert row.paged == ["InferenceOutage", "InferenceErrorBudgetBurn"]


def test_the_drill_starts_the_kv_runbook_with_what_fits_its_fault() -> None:
    api = FakeApi({"/api/v1/runbooks/kv-cache-saturated": {"target": "workload"}})
    row = Row("kv_pressure", alert="PreemptionStorm", runbook="kv-cache-saturated")
    found = {"labels": {"alertname": "PreemptionStorm", "llm.endpoint": "http://wl"}, "annotations": {}}
    Drill(api, say=lambda _: None).start_run(row, found, 0.0, 1e12)
    assert api.posted == [
        ("/api/v1/runbooks/kv-cache-saturated/runs", {"params": {"max_num_seqs": 1}, "target": "http://wl"})
    ]
    assert FAULTS["kv_pressure"].alerts[0] == "PreemptionStorm"


def test_the_kv_fault_keeps_long_requests_in_flight_until_the_drill_is_done_with_it() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler

    from tests.receivers import serve_on_loopback
    from vigil.drill import LOAD_TOKENS, Load

    bodies: list[bytes] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                bodies.append(body)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server, url = serve_on_loopback(Handler)
    try:
        with Load(url.removesuffix("/hook"), 2) as load:
            while load.sent < 4:
                threading.Event().wait(0.01)
        sent = load.sent
        threading.Event().wait(0.1)
        assert load.sent == sent  # stopped with the block
    finally:
        server.shutdown()
        server.server_close()
    import json

    body = json.loads(bodies[0])
    assert body["max_tokens"] == LOAD_TOKENS and body["ignore_eos"] is True
    assert FAULTS["kv_pressure"].load > 1  # two long requests do not fit what the fault leaves


def test_before_counting_pages_the_drill_waits_for_what_the_fault_set_off_to_settle() -> None:
    import time

    from vigil.drill import NOTIFY_WAIT_S, SETTLE_QUIET_S

    clock = FakeClock()
    wall0 = time.time() - 5
    burn = {"activeAt": wall0 + 2, "firedAt": time.time(), "state": "firing"}  # fired just now: its page may come
    older = {"activeAt": wall0 - 600, "firedAt": wall0 - 600, "state": "firing"}  # before the fault: not its
    calls = []

    class Alerts(FakeApi):
        def call(self, method: str, path: str, token: str | None = None, ok: tuple[int, ...] = (), **kw: Any) -> Any:
            calls.append(clock.now)
            return {"alerts": [older, burn] if clock.now < 20 else [older]}

    Drill(Alerts({}), say=lambda _: None, clock=clock, sleep=clock.sleep).settle(wall0)
    assert clock.now >= 19.5 + SETTLE_QUIET_S  # held while the burn was fresh, then quiet for SETTLE_QUIET_S
    assert clock.now < 20 + SETTLE_QUIET_S + 2 and NOTIFY_WAIT_S > 30  # the SLO route's group_wait


def test_with_no_receiver_configured_the_drill_says_why_nobody_was_paged() -> None:
    said: list[str] = []
    api = FakeApi(
        {
            "/api/v1/drill/target": {"workload": {"reference": True, "url": "http://wl"}, "gpus": None},
            "/api/v1/incidents": {"incidents": []},
            "/api/v1/alerts": {"alerts": []},
            "/api/v1/notifications": {"notifications": [], "receivers": []},
        }
    )
    clock = FakeClock()
    drill = Drill(api, say=said.append, clock=clock, sleep=clock.sleep)
    drill.preflight(["errors"])
    assert any("no receiver is configured" in line and "VIGIL_WEBHOOK_URL" in line for line in said)
    row = Row("errors", detected_s=3.0, verified_s=20.0, resolved_s=21.0)
    drill.incident_and_pages(row, "InferenceOutage", 0.0)
    row.judge()
    assert row.outcome == "recovered, missed goal: 0 pages (no receiver configured)"
