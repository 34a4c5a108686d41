"""`vigil drill` counts the pages of the followed alert's incident, and starts runbooks with its fault's params."""

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


def alert(fp: str, severity: str) -> dict[str, Any]:
    return {"fingerprint": fp, "labels": {"severity": severity}}


def test_pages_count_notifications_of_any_page_alert_of_the_incident_not_tickets_nor_others() -> None:
    api = FakeApi(
        {
            "/api/v1/incidents": {"incidents": [{"id": "i2"}, {"id": "i1"}]},
            "/api/v1/incidents/i2": {"alerts": [alert("other", "page")]},
            "/api/v1/incidents/i1": {"alerts": [alert("outage", "page"), alert("burn", "page"), alert("t", "ticket")]},
            "/api/v1/notifications": {
                "notifications": [
                    {"firing": [{"fingerprint": "outage"}]},
                    {"firing": [{"fingerprint": "burn"}]},  # a second page for the same incident
                    {"firing": [{"fingerprint": "t"}]},  # a ticket is not a page
                    {"firing": [{"fingerprint": "other"}]},  # another incident's
                    {"firing": []},  # a resolve
                ]
            },
        }
    )
    row = Row("errors")
    Drill(api, say=lambda _: None).incident_and_pages(row, "outage", 0.0)
    assert (row.incident, row.pages) == ("i1", 2)


def test_the_drill_starts_the_kv_runbook_with_what_fits_its_fault() -> None:
    api = FakeApi({"/api/v1/runbooks/kv-cache-saturated": {"target": "workload"}})
    row = Row("kv_pressure", alert="PreemptionStorm", runbook="kv-cache-saturated")
    found = {"labels": {"alertname": "PreemptionStorm", "llm.endpoint": "http://wl"}, "annotations": {}}
    Drill(api, say=lambda _: None).start_run(row, found, 0.0, 1e12)
    assert api.posted == [
        ("/api/v1/runbooks/kv-cache-saturated/runs", {"params": {"max_num_seqs": 1}, "target": "http://wl"})
    ]
    assert FAULTS["kv_pressure"].alerts[0] == "PreemptionStorm"
