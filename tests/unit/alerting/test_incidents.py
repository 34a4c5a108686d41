"""The incident book (open, join, resolve, close by hand, replay, reconcile) and the timeline, without I/O."""

from __future__ import annotations

from dataclasses import replace
from itertools import count

import pytest

from alerting.config import RouteConfig
from alerting.incident_store import Run, RunStep
from alerting.incident_timeline import Scope, members_of, run_belongs, timeline
from alerting.incident_tracker import Incidents
from alerting.incidents import IncidentBook, IncidentEvent, Kind, route_grouping, worst
from alerting.matchers import Matcher
from alerting.model import Alert, AlertState, Silence
from alerting.notify.route import Route
from alerting.state import Transition
from vigil.incident_view import IncidentResolved, IncidentsUnavailable, UnknownIncident


def alert(name: str = "HighErrors", host: str = "a", severity: str = "ticket", at: float = 100.0) -> Alert:
    labels = {"alertname": name, "host": host, "severity": severity}
    return Alert(labels, {}, AlertState.FIRING, 1.0, active_at=at - 10, fired_at=at, runbook="shed-load")


def gone(a: Alert, at: float) -> Alert:
    return replace(a, state=AlertState.INACTIVE, resolved_at=at)


def book(group_by: tuple[str, ...] | None = ("alertname",)) -> IncidentBook:
    ids = count(1)
    route = None if group_by is None else Route.build(RouteConfig(group_by=group_by))
    return IncidentBook(route_grouping(route), lambda: f"i{next(ids)}")


def kinds(events: list[IncidentEvent]) -> list[tuple[str, str]]:
    return [(e.incident, str(e.kind)) for e in events]


def test_a_firing_alert_opens_an_incident_and_one_of_its_group_joins_it() -> None:
    b = book()
    a, c = alert(host="a"), alert(host="c", severity="page")
    assert kinds(b.observe([a], 100)) == [("i1", "opened"), ("i1", "alert")]
    assert kinds(b.observe([a, c], 110)) == [("i1", "alert")]  # a is a member already: nothing new
    (incident,) = b.open_incidents()
    assert incident.title == "HighErrors" and incident.group_labels == {"alertname": "HighErrors"}
    assert incident.severity == "page"  # the worst of its alerts
    assert incident.members[a.fingerprint].active_at == 90  # since its condition held, not since it fired


def test_another_group_opens_another_incident_and_pending_alerts_open_none() -> None:
    b = book(group_by=("alertname", "host"))
    pending = replace(alert(host="z"), state=AlertState.PENDING, fired_at=None)
    events = b.observe([alert(host="a"), alert(host="b"), pending], 100)
    assert kinds(events) == [("i1", "opened"), ("i1", "alert"), ("i2", "opened"), ("i2", "alert")]
    assert {i.title for i in b.open_incidents()} == {"HighErrors on host=a", "HighErrors on host=b"}


def test_it_resolves_when_all_its_alerts_resolve_and_a_later_firing_opens_a_new_one() -> None:
    b = book()
    a, c = alert(host="a"), alert(host="c")
    b.observe([a, c], 100)
    assert kinds(b.observe([c, gone(a, 120)], 120)) == [("i1", "alert_resolved")]
    events = b.observe([gone(c, 130)], 130)
    assert kinds(events) == [("i1", "alert_resolved"), ("i1", "resolved")]
    assert events[-1].at == 130 and b.open_incidents() == [] and b.incidents == {}
    assert kinds(b.observe([alert(host="a", at=200)], 200)) == [("i2", "opened"), ("i2", "alert")]


def test_closed_by_hand_it_stays_closed_while_its_alerts_fire_and_they_leave_it_as_they_resolve() -> None:
    b = book()
    a = alert()
    b.observe([a], 100)
    closing = b.plan_close("i1", "olga", 105)
    assert b.open_incidents()[0].status == "open"  # planned, not applied: the caller stores it first
    b.apply(closing)
    assert (closing.kind, closing.actor) == (Kind.CLOSED, "olga")
    assert b.observe([a], 110) == []  # still firing: no new incident
    with pytest.raises(IncidentResolved):
        b.plan_close("i1", "olga", 111)
    newcomer = alert(host="n")
    assert kinds(b.observe([newcomer], 112)) == [("i2", "opened"), ("i2", "alert")]  # its group has none open
    assert kinds(b.observe([gone(a, 120)], 120)) == [("i1", "alert_resolved")]  # no second ending
    assert "i1" not in b.incidents
    with pytest.raises(UnknownIncident):
        b.plan_close("i9", "olga", 1)


def test_replaying_the_events_rebuilds_the_same_book_and_reconcile_lets_go_of_alerts_gone() -> None:
    b = book()
    a, c = alert(host="a"), alert(name="Other", host="c")
    written = b.observe([a, c], 100)
    closing = b.plan_close("i2", "olga", 101)
    b.apply(closing)
    written.append(closing)

    again = book()
    for ev in written:
        again.apply(ev)
    assert [(i.id, i.status) for i in again.incidents.values()] == [("i1", "open"), ("i2", "resolved")]
    assert again.observe([a, c], 110) == []  # both still owned

    events = again.reconcile([a.fingerprint], 200)  # c's rule is gone since the restart
    assert kinds(events) == [("i2", "alert_resolved")] and events[0].text == "not firing after a restart"
    events = again.reconcile([], 201)
    assert kinds(events) == [("i1", "alert_resolved"), ("i1", "resolved")]
    assert again.incidents == {}


def test_severity_ranks_known_words_over_unknown_ones() -> None:
    assert worst(["ticket", "page", "info"]) == "page"
    assert worst(["odd", "warning"]) == "warning"
    assert worst(["", ""]) == ""


def test_the_timeline_is_in_time_order_with_authors_and_only_what_belongs() -> None:
    b = book()
    a = alert(at=100)
    events = b.observe([a], 100)
    events.append(IncidentEvent("i1", 105, Kind.NOTE, actor="olga", text="looking"))
    events.append(IncidentEvent("i1", 140, Kind.CLOSED, actor="sam", text="closed by hand"))
    members, firing = members_of(events)
    assert firing == {a.fingerprint}
    scope = Scope(members, 90, 140)
    moves = [
        Transition(50, a.fingerprint, "HighErrors", a.labels, "inactive", "pending", 1),  # an earlier life
        Transition(90, a.fingerprint, "HighErrors", a.labels, "inactive", "pending", 1),
        Transition(100, a.fingerprint, "HighErrors", a.labels, "pending", "firing", 1),
    ]
    matching = Silence("s1", (Matcher.of("host", "=", "a").as_tuple(),), 110, 200, "kim", "maintenance")
    other = Silence("s2", (Matcher.of("host", "=", "x").as_tuple(),), 110, 200, "kim", "elsewhere")
    runs = [
        Run("r1", "shed-load", "", "olga", False, "", "succeeded", 120),  # the runbook its alert offers
        Run("r2", "restart", "a", "alert:X", True, "X", "failed", 125),  # on a target its alert names
        Run("r3", "restart", "zz", "bob", False, "", "failed", 126),  # nothing to do with it
    ]
    steps = [
        RunStep("r1", 121, 0, "shed", "started", "olga", ""),
        RunStep("r1", 130, 1, "approve", "approved", "sam", "go"),
        RunStep("r3", 127, 0, "x", "started", "bob", ""),
    ]
    entries = timeline(events, moves, [matching, other], runs, steps, scope)
    got = [(e["kind"], e["actor"], e["text"]) for e in entries]
    assert got == [
        ("alert", "", "HighErrors inactive → pending"),
        ("alert", "", "HighErrors pending → firing"),
        ("opened", "", "HighErrors"),
        ("note", "olga", "looking"),
        ("silence", "kim", "maintenance"),
        ("runbook_run", "olga", "shed-load on its default target: succeeded"),
        ("runbook_step", "olga", "shed: started"),
        ("runbook_run", "alert:X", "restart on a: failed"),
        ("runbook_step", "sam", "approve: approved (go)"),
        ("closed", "sam", "closed by hand"),
    ]
    assert entries[0]["at"] == "1970-01-01T00:01:30.000Z" and entries[1]["to"] == "firing"


def test_a_run_outside_the_incidents_time_is_not_its_own() -> None:
    b = book()
    members, _ = members_of(b.observe([alert()], 100))
    scope = Scope(members, 90, 150)
    assert run_belongs(Run("r", "shed-load", "", "o", False, "", "running", 120), scope)
    assert not run_belongs(Run("r", "shed-load", "", "o", False, "", "running", 151), scope)
    assert run_belongs(Run("r", "other", "", "alert:HighErrors", True, "HighErrors", "running", 95), scope)


def test_a_child_route_groups_its_alerts_by_its_own_labels() -> None:
    child = RouteConfig(matchers=(Matcher.parse('alertname="GpuLost"'),), group_by=("alertname", "host"))
    grouping = route_grouping(Route.build(RouteConfig(group_by=("alertname",), routes=(child,))))
    lost_a, lost_b = grouping({"alertname": "GpuLost", "host": "a"}), grouping({"alertname": "GpuLost", "host": "b"})
    assert lost_a[0] != lost_b[0] and lost_a[1] == {"alertname": "GpuLost", "host": "a"}
    assert grouping({"alertname": "Hot", "host": "a"})[0] == grouping({"alertname": "Hot", "host": "b"})[0]


class FlakyStore:
    """Takes inserts into a list, or refuses them all while `down`."""

    def __init__(self) -> None:
        self.down = False
        self.rows: list[tuple[object, ...]] = []

    def insert_columns(self, table: str, columns: list[list[object]], names: list[str]) -> None:
        if self.down:
            raise ConnectionError("store unreachable")
        self.rows.extend(zip(*columns, strict=True))


def test_events_the_store_refused_go_with_the_next_write_and_a_refused_note_is_not_kept() -> None:
    store = FlakyStore()
    incidents = Incidents(store, route_grouping(None), lambda: 300.0)  # type: ignore[arg-type]
    store.down = True
    incidents.observe([alert()], 100)  # never raises into the evaluator
    assert incidents.store.held == 2 and incidents.trouble() == {"unwritten_events": 2}
    (incident,) = incidents.book.open_incidents()
    with pytest.raises(IncidentsUnavailable):
        incidents.add_note(incident.id, "olga", "looking")
    with pytest.raises(IncidentsUnavailable):
        incidents.close(incident.id, "olga")
    assert incidents.store.held == 2 and incidents.book.open_incidents() == [incident]  # nothing changed
    store.down = False
    incidents.store.flush()
    assert [r[3] for r in store.rows] == ["opened", "alert"] and incidents.trouble() == {}


def test_the_default_route_makes_one_incident_of_the_alerts_of_one_failure() -> None:
    b = book(group_by=None)  # no notifier route: the default one
    wl = {"llm.endpoint": "http://wl", "severity": "page"}
    outage = Alert({"alertname": "InferenceOutage", **wl}, {}, AlertState.FIRING, 1.0, active_at=90, fired_at=100)
    down = Alert({"alertname": "EngineDown", **wl}, {}, AlertState.FIRING, 1.0, active_at=90, fired_at=100)
    gpu = Alert({"alertname": "GpuLost", "host.name": "h", "gpu.uuid": "G"}, {}, AlertState.FIRING, 1.0, 90, 100)
    b.observe([outage, down, gpu], 100)
    groups = sorted(tuple(sorted(i.group_labels.items())) for i in b.open_incidents())
    assert groups == [(("gpu.uuid", "G"), ("host.name", "h")), (("llm.endpoint", "http://wl"),)]
