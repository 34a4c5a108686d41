"""An incident's timeline and its JSON shapes: pure functions of what the store and the silences hold.

Entries share `at` (RFC 3339), `kind`, `actor` and `text`, plus what their kind carries:

    alert         fingerprint, labels, from, to, value   (a transition of one of its alerts)
    opened        groupLabels
    note          (the author is `actor`)
    silence       silence, matchers, endsAt              (a silence matching one of its alerts)
    runbook_run   run, runbook, target, state, auto
    runbook_step  run, step, stepName, event
    closed        (by hand: `actor`)
    resolved      (its alerts all resolved)

Entries are in time order; at one instant an alert's transition comes before what it caused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alerting.incident_store import Run, RunStep, Summary
from alerting.incidents import IncidentEvent, Kind, Member, worst
from alerting.matchers import Matcher, MatcherError
from alerting.model import ALERTNAME, Silence
from alerting.shapes import json_value, rfc3339
from alerting.state import Transition

_RANK = {
    "alert": 0,
    "opened": 1,
    "note": 2,
    "silence": 2,
    "runbook_run": 3,
    "runbook_step": 4,
    "closed": 5,
    "resolved": 5,
}


@dataclass(frozen=True)
class Scope:
    """What belongs to an incident: its alerts, and the time from the first alert's start to its end."""

    members: Mapping[str, Member]
    start: float
    end: float

    @property
    def alertnames(self) -> set[str]:
        return {m.labels.get(ALERTNAME, "") for m in self.members.values()} - {""}

    @property
    def runbooks(self) -> set[str]:
        return {m.runbook for m in self.members.values()} - {""}

    @property
    def label_values(self) -> set[str]:
        return {v for m in self.members.values() for v in m.labels.values()} - {""}


def members_of(events: Iterable[IncidentEvent]) -> tuple[dict[str, Member], set[str]]:
    """Every alert that joined (the first join of each) and those still firing, from the incident's events."""
    members: dict[str, Member] = {}
    firing: set[str] = set()
    for ev in events:
        if ev.kind == Kind.ALERT:
            since = ev.at if ev.active_at is None else ev.active_at
            members.setdefault(ev.fingerprint, Member(ev.fingerprint, dict(ev.labels), ev.severity, ev.runbook, since))
            firing.add(ev.fingerprint)
        elif ev.kind == Kind.ALERT_RESOLVED:
            firing.discard(ev.fingerprint)
    return members, firing


def silence_matches(silence: Silence, scope: Scope) -> bool:
    if silence.starts_at > scope.end or silence.ends_at < scope.start:
        return False
    try:
        matchers = [Matcher.of(*m) for m in silence.matchers]
    except MatcherError:
        return False
    return any(all(m.matches(member.labels) for m in matchers) for member in scope.members.values())


def run_belongs(run: Run, scope: Scope) -> bool:
    """A run started in the incident's time by one of its alerts, of a runbook its alerts offer, or on a
    target its alerts name (a GPU, a node, an endpoint)."""
    if not scope.start <= run.started_at <= scope.end:
        return False
    started_by_alert = run.origin.split(" ", 1)[0] in scope.alertnames if run.origin else False
    return started_by_alert or run.runbook in scope.runbooks or (bool(run.target) and run.target in scope.label_values)


def _entry(at: float, kind: str, actor: str = "", text: str = "", **extra: Any) -> dict[str, Any]:
    return {"at": at, "kind": kind, "actor": actor, "text": text, **extra}


def _event_entry(ev: IncidentEvent) -> dict[str, Any] | None:
    if ev.kind == Kind.OPENED:
        return _entry(ev.at, "opened", text=ev.title, groupLabels=ev.labels)
    if ev.kind in (Kind.NOTE, Kind.CLOSED, Kind.RESOLVED):
        return _entry(ev.at, str(ev.kind), ev.actor, ev.text)
    if ev.kind == Kind.ALERT_RESOLVED and ev.text:  # left for a reason no transition records (a restart)
        name = ev.labels.get(ALERTNAME, ev.fingerprint)
        return _entry(ev.at, "alert", text=f"{name}: {ev.text}", fingerprint=ev.fingerprint, labels=ev.labels)
    return None  # joins and leaves show as the alert's own transitions


def timeline(
    events: Sequence[IncidentEvent],
    transitions: Sequence[Transition],
    silences: Sequence[Silence],
    runs: Sequence[Run],
    steps: Sequence[RunStep],
    scope: Scope,
) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for ev in events:
        found = _event_entry(ev)
        if found is not None:
            entries.append(found)
    for t in transitions:
        member = scope.members.get(t.fingerprint)
        if member is None or t.at < member.active_at:
            continue  # an earlier life of the same alert, before it joined
        entries.append(
            _entry(
                t.at,
                "alert",
                text=f"{t.rule} {t.from_state} → {t.to_state}",
                fingerprint=t.fingerprint,
                labels=t.labels,
                value=json_value(t.value),
                **{"from": t.from_state, "to": t.to_state},
            )
        )
    for s in silences:
        if silence_matches(s, scope):
            matchers = [list(m) for m in s.matchers]
            entries.append(
                _entry(
                    s.starts_at, "silence", s.created_by, s.comment, silence=s.id, matchers=matchers, endsAt=s.ends_at
                )
            )
    ours = {r.id for r in runs if run_belongs(r, scope)}
    for r in runs:
        if r.id in ours:
            text = f"{r.runbook} on {r.target or 'its default target'}: {r.state}"
            entries.append(
                _entry(
                    r.started_at,
                    "runbook_run",
                    r.started_by,
                    text,
                    run=r.id,
                    runbook=r.runbook,
                    target=r.target,
                    state=r.state,
                    auto=r.auto,
                )
            )
    for st in steps:
        if st.run_id in ours:
            text = f"{st.step_name}: {st.event}" + (f" ({st.message})" if st.message else "")
            entries.append(
                _entry(
                    st.at,
                    "runbook_step",
                    st.actor,
                    text,
                    run=st.run_id,
                    step=st.step,
                    stepName=st.step_name,
                    event=st.event,
                )
            )
    entries.sort(key=lambda e: (e["at"], _RANK.get(e["kind"], 9)))  # stable: each source is in order already
    for e in entries:
        e["at"] = rfc3339(e["at"])
        if "endsAt" in e:
            e["endsAt"] = rfc3339(e["endsAt"])
    return entries


def incident_json(s: Summary) -> dict[str, Any]:
    return {
        "id": s.id,
        "title": s.title,
        "severity": worst(s.severities),
        "status": s.status,
        "openedAt": rfc3339(s.opened_at),
        "resolvedAt": rfc3339(s.resolved_at),
        "closedBy": s.closed_by,
        "groupLabels": s.group_labels,
        "alertCount": s.alerts,
        "firingCount": s.firing,
    }


def member_json(m: Member, firing: bool) -> dict[str, Any]:
    return {
        "fingerprint": m.fingerprint,
        "labels": m.labels,
        "severity": m.severity,
        "runbook": m.runbook or None,
        "activeAt": rfc3339(m.active_at),
        "firing": firing,
    }
