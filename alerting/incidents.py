"""Incidents: firing alerts grouped as the notification route groups them, opened and resolved as they fire.

    alert fires ──no open incident of its group──▶ opened + alert      (the group key: `notify.group`)
                ──an open one────────────────────▶ alert (joins it)
    alert resolves ──▶ alert_resolved ──the incident's last firing alert──▶ resolved
    POST .../close ──▶ closed (who); its alerts still firing stay with it until they resolve,
                       so a hand-closed incident does not reopen at the next evaluation

An incident is its events, in order; `IncidentBook.apply` replays them, so the state the evaluator
builds and the state a restart rebuilds from the store are one and the same code. Pure: no clock,
no store. Memory is bounded by the alerts firing: an incident leaves the book once it is resolved
and none of its alerts fire.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from alerting.config import AlertingConfig
from alerting.model import ALERTNAME, SEVERITY, Alert, AlertState
from alerting.notify.group import group_key
from alerting.notify.route import Route
from vigil.incident_view import IncidentResolved, UnknownIncident

# Higher is worse; the default pack says page/ticket, other packs critical/warning/info.
SEVERITY_RANK = {"critical": 4, "page": 4, "error": 3, "warning": 2, "ticket": 2, "info": 1}


class Kind(StrEnum):
    OPENED = "opened"
    ALERT = "alert"
    ALERT_RESOLVED = "alert_resolved"
    NOTE = "note"
    CLOSED = "closed"  # by hand
    RESOLVED = "resolved"  # its alerts all resolved


ENDINGS = (Kind.CLOSED, Kind.RESOLVED)


@dataclass(frozen=True)
class IncidentEvent:
    """One row of `vigil_incident_events`; which fields matter depends on `kind` (see migration 11)."""

    incident: str
    at: float
    kind: Kind
    actor: str = ""
    text: str = ""
    title: str = ""
    group_key: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # opened: the group labels; alert*: the alert's
    fingerprint: str = ""
    severity: str = ""
    runbook: str = ""
    active_at: float | None = None  # alert: when its condition started holding (its pending transition)


@dataclass(frozen=True)
class Member:
    fingerprint: str
    labels: dict[str, str]
    severity: str
    runbook: str
    active_at: float


@dataclass
class Incident:
    id: str
    title: str
    group_key: str
    group_labels: dict[str, str]
    opened_at: float
    status: str = "open"  # open | resolved
    resolved_at: float | None = None
    closed_by: str | None = None  # who closed it by hand; None while open or when its alerts resolved
    members: dict[str, Member] = field(default_factory=dict)  # every alert that joined
    firing: set[str] = field(default_factory=set)  # fingerprints of members still firing

    @property
    def severity(self) -> str:
        return worst(m.severity for m in self.members.values())


def worst(severities: Iterable[str]) -> str:
    """The highest-ranked severity; unknown ones rank lowest, and the empty string means none."""
    found = [s for s in severities if s]
    return max(found, key=lambda s: SEVERITY_RANK.get(s, 0), default="")


Grouping = Callable[[Mapping[str, str]], tuple[str, dict[str, str]]]


def route_grouping(route: Route | None) -> Grouping:
    """The key and labels of the notification group an alert joins: the first route that takes it.

    Without a route (a notifier that has none), the default route's `group_by` applies.
    """
    root = route if route is not None else Route.build(AlertingConfig().route)

    def grouping(labels: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        taken = root.match(labels) or [root]
        group_labels = taken[0].group_labels(labels)
        return group_key(taken[0], group_labels), group_labels

    return grouping


def title_of(labels: Mapping[str, str], group_labels: Mapping[str, str]) -> str:
    name = labels.get(ALERTNAME, "alert")
    rest = ", ".join(f"{k}={v}" for k, v in sorted(group_labels.items()) if k != ALERTNAME)
    return f"{name} on {rest}" if rest else name


def new_id() -> str:
    return uuid.uuid4().hex[:16]


class IncidentBook:
    """Open incidents (and hand-closed ones whose alerts still fire), kept by replaying events."""

    def __init__(self, grouping: Grouping, make_id: Callable[[], str] = new_id) -> None:
        self._grouping = grouping
        self._make_id = make_id
        self.incidents: dict[str, Incident] = {}  # open, or closed by hand with alerts firing
        self._open_by_group: dict[str, str] = {}
        self._owner: dict[str, str] = {}  # firing fingerprint → its incident

    def open_incidents(self) -> list[Incident]:
        return [i for i in self.incidents.values() if i.status == "open"]

    def apply(self, ev: IncidentEvent) -> None:
        """One event onto the state; events of incidents that left the book are ignored."""
        if ev.kind == Kind.OPENED:
            self.incidents[ev.incident] = Incident(ev.incident, ev.title, ev.group_key, dict(ev.labels), ev.at)
            self._open_by_group[ev.group_key] = ev.incident
            return
        incident = self.incidents.get(ev.incident)
        if incident is None:
            return
        if ev.kind == Kind.ALERT:
            since = ev.at if ev.active_at is None else ev.active_at
            member = Member(ev.fingerprint, dict(ev.labels), ev.severity, ev.runbook, since)
            incident.members.setdefault(ev.fingerprint, member)
            incident.firing.add(ev.fingerprint)
            self._owner[ev.fingerprint] = incident.id
        elif ev.kind == Kind.ALERT_RESOLVED:
            incident.firing.discard(ev.fingerprint)
            if self._owner.get(ev.fingerprint) == incident.id:
                del self._owner[ev.fingerprint]
        elif ev.kind in ENDINGS:
            incident.status, incident.resolved_at = "resolved", ev.at
            incident.closed_by = ev.actor if ev.kind == Kind.CLOSED else None
            if self._open_by_group.get(incident.group_key) == incident.id:
                del self._open_by_group[incident.group_key]
        if incident.status == "resolved" and not incident.firing:
            del self.incidents[incident.id]

    def _emit(self, ev: IncidentEvent, out: list[IncidentEvent]) -> None:
        self.apply(ev)
        out.append(ev)

    def observe(self, alerts: Sequence[Alert], now: float) -> list[IncidentEvent]:
        """What the evaluator hands the notifier (firing alerts, newly resolved ones): the events it causes, applied."""
        out: list[IncidentEvent] = []
        for alert in alerts:
            fp = alert.fingerprint
            owner = self._owner.get(fp)
            if alert.resolved:
                if owner is not None:
                    self._resolve_member(owner, fp, alert.labels, now, "", out)
                continue
            if alert.state != AlertState.FIRING or owner is not None:
                continue
            key, group_labels = self._grouping(alert.labels)
            incident_id = self._open_by_group.get(key)
            if incident_id is None:
                incident_id = self._make_id()
                title = title_of(alert.labels, group_labels)
                opened = IncidentEvent(incident_id, now, Kind.OPENED, title=title, group_key=key, labels=group_labels)
                self._emit(opened, out)
            joined = IncidentEvent(
                incident_id,
                now,
                Kind.ALERT,
                labels=dict(alert.labels),
                fingerprint=fp,
                severity=alert.labels.get(SEVERITY, ""),
                runbook=alert.runbook or "",
                active_at=alert.active_at,
            )
            self._emit(joined, out)
        return out

    def _resolve_member(
        self, incident_id: str, fp: str, labels: Mapping[str, str], now: float, why: str, out: list[IncidentEvent]
    ) -> None:
        incident = self.incidents[incident_id]
        gone = IncidentEvent(incident_id, now, Kind.ALERT_RESOLVED, text=why, labels=dict(labels), fingerprint=fp)
        self._emit(gone, out)
        if incident.status == "open" and not incident.firing:
            self._emit(IncidentEvent(incident_id, now, Kind.RESOLVED, text="all its alerts resolved"), out)

    def reconcile(self, firing: Iterable[str], now: float) -> list[IncidentEvent]:
        """After a restart: members the evaluator no longer holds firing (their rule went, or they resolved
        unseen) leave their incidents, which resolve when none is left. The events, applied."""
        held = set(firing)
        out: list[IncidentEvent] = []
        for fp, incident_id in sorted(self._owner.items()):
            if fp not in held:
                labels = self.incidents[incident_id].members[fp].labels
                self._resolve_member(incident_id, fp, labels, now, "not firing after a restart", out)
        return out

    def plan_close(self, incident_id: str, who: str, now: float) -> IncidentEvent:
        """The event that closes an open incident by hand; not applied (the caller stores it first)."""
        incident = self.incidents.get(incident_id)
        if incident is None:
            raise UnknownIncident(f"no open incident {incident_id}")  # the caller asks the store whether it ever was
        if incident.status != "open":
            raise IncidentResolved(f"incident {incident_id} was closed already")
        return IncidentEvent(incident_id, now, Kind.CLOSED, actor=who, text="closed by hand")
