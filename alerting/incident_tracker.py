"""The incidents alerting keeps: fed every evaluation's alerts, stored as events, read as `IncidentsView`.

`Observed` is the notifier the evaluator is handed: the notification pipeline first (pages matter
more), then the incidents. `Incidents` holds the book of open incidents under one lock and writes
each change before answering; reads go to the store, which is the record.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from alerting.incident_store import IncidentStore
from alerting.incident_timeline import Scope, incident_json, member_json, members_of, rfc3339, timeline
from alerting.incidents import Grouping, IncidentBook, IncidentEvent, Kind
from alerting.model import Alert, Notifier, Silence
from vigil.incident_view import (
    MAX_NOTE_CHARS,
    IncidentRequestError,
    IncidentResolved,
    IncidentsUnavailable,
    Status,
    UnknownIncident,
)
from vigil.logs import event
from vigil.store import Store

log = logging.getLogger(__name__)

MAX_LIST = 1000
MAX_EVENTS = 5000  # an incident's own events read for one timeline
MAX_TRANSITIONS = 5000
MAX_RUNS = 200
MAX_STEPS = 5000
STATUSES = ("open", "resolved", "all")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Incidents:
    """Implements `vigil.incident_view.IncidentsView`; `observe` is fed by the evaluator through `Observed`."""

    def __init__(
        self,
        store: Store,
        grouping: Grouping,
        clock: Callable[[], float],
        silences: Callable[[], Sequence[Silence]] = list,
    ) -> None:
        self.store = IncidentStore(store)
        self.book = IncidentBook(grouping)
        self._clock = clock
        self._silences = silences
        self._lock = threading.Lock()
        self.restore_error: str | None = None

    # -- fed by alerting --------------------------------------------------------------------------

    def restore(self, firing: Iterable[str]) -> int:
        """Rebuild the book from the store, then let go of alerts no longer firing (`firing`: fingerprints
        the evaluator holds firing after its own restore). Returns the open incidents; never raises."""
        try:
            with self._lock:
                for ev in self.store.unfinished():
                    self.book.apply(ev)
                self.store.write(self.book.reconcile(firing, self._clock()))
                count = len(self.book.open_incidents())
        except Exception as exc:  # the evaluator must start all the same: pages matter more
            self.restore_error = str(exc)
            event(log, "incidents_restore_failed", level=logging.ERROR, error=str(exc))
            return 0
        event(log, "incidents_restored", open=count)
        return count

    def observe(self, alerts: Sequence[Alert], now: float) -> None:
        with self._lock:
            events = self.book.observe(alerts, now)
            try:
                self.store.write(events)
            except Exception as exc:  # kept for the next write; the book has them already
                event(log, "incident_write_failed", level=logging.WARNING, error=str(exc), held=self.store.held)
        for ev in events:
            if ev.kind in (Kind.OPENED, Kind.RESOLVED):
                event(log, f"incident_{ev.kind}", incident=ev.incident, title=ev.title or None)

    def trouble(self) -> dict[str, Any]:
        """What health should show: events the store has not taken yet, a failed restore; empty when all is well."""
        details: dict[str, Any] = {}
        if self.store.held:
            details["unwritten_events"] = self.store.held
        if self.restore_error:
            details["restore_error"] = self.restore_error
        return details

    # -- IncidentsView ----------------------------------------------------------------------------

    def list(self, status: Status = "open", limit: int = 100) -> list[dict[str, Any]]:
        if status not in STATUSES:
            raise IncidentRequestError(f"status: {status!r}; use open, resolved or all")
        if not 1 <= limit <= MAX_LIST:
            raise IncidentRequestError(f"limit: between 1 and {MAX_LIST}")
        self.store.flush()
        try:
            return [incident_json(s) for s in self.store.summaries(status, limit)]
        except Exception as exc:
            raise IncidentsUnavailable(f"incidents unavailable: the store failed ({exc})") from None

    def get(self, incident_id: str) -> dict[str, Any]:
        _check_id(incident_id)
        self.store.flush()
        try:
            return self._get(incident_id)
        except IncidentRequestError:
            raise
        except Exception as exc:
            raise IncidentsUnavailable(f"incident unavailable: the store failed ({exc})") from None

    def _get(self, incident_id: str) -> dict[str, Any]:
        found = self.store.summaries("all", 1, incident_id)
        if not found:
            raise UnknownIncident(f"no incident {incident_id}")
        summary = found[0]
        events = self.store.events(incident_id, MAX_EVENTS)
        members, firing = members_of(events)
        start = min([summary.opened_at, *(m.active_at for m in members.values())])
        end = summary.resolved_at if summary.resolved_at is not None else self._clock()
        scope = Scope(members, start, end)
        transitions = self.store.transitions(sorted(members), start, end, MAX_TRANSITIONS)
        runs = self.store.runs(start, end, MAX_RUNS)
        steps = self.store.run_steps([r.id for r in runs], MAX_STEPS)
        truncated = (
            len(events) >= MAX_EVENTS
            or len(transitions) >= MAX_TRANSITIONS
            or len(runs) >= MAX_RUNS
            or len(steps) >= MAX_STEPS
        )
        body = incident_json(summary)
        body["alerts"] = [member_json(m, fp in firing) for fp, m in sorted(members.items())]
        body["timeline"] = timeline(events, transitions, self._silence_list(), runs, steps, scope)
        body["truncated"] = truncated
        return body

    def _silence_list(self) -> Sequence[Silence]:
        try:
            return self._silences()
        except Exception as exc:  # a timeline without silences beats none at all
            event(log, "incident_silences_unavailable", level=logging.WARNING, error=str(exc))
            return []

    def add_note(self, incident_id: str, author: str, text: str) -> dict[str, Any]:
        _check_id(incident_id)
        if not text.strip():
            raise IncidentRequestError("text: a note needs some text")
        if len(text) > MAX_NOTE_CHARS:
            raise IncidentRequestError(f"text: at most {MAX_NOTE_CHARS} characters ({len(text)} given)")
        if not author:
            raise IncidentRequestError("author: say who writes the note")
        with self._lock:
            self._known(incident_id)
            note = IncidentEvent(incident_id, self._clock(), Kind.NOTE, actor=author, text=text)
            self._write_now(note)
        return {"at": rfc3339(note.at), "kind": "note", "actor": author, "text": text}

    def close(self, incident_id: str, who: str) -> dict[str, Any]:
        _check_id(incident_id)
        with self._lock:
            try:
                closing = self.book.plan_close(incident_id, who, self._clock())
            except UnknownIncident:
                self._known(incident_id)  # it exists, so it was resolved before: say so
                raise IncidentResolved(f"incident {incident_id} is resolved already") from None
            self._write_now(closing)
            self.book.apply(closing)
        event(log, "incident_closed", incident=incident_id, by=who)
        return self.get(incident_id)

    def _known(self, incident_id: str) -> None:
        if incident_id in self.book.incidents:
            return
        try:
            found = self.store.summaries("all", 1, incident_id)
        except Exception as exc:
            raise IncidentsUnavailable(f"incidents unavailable: the store failed ({exc})") from None
        if not found:
            raise UnknownIncident(f"no incident {incident_id}")

    def _write_now(self, ev: IncidentEvent) -> None:
        try:
            self.store.write([ev], keep_on_failure=False)
        except Exception as exc:
            raise IncidentsUnavailable(f"not saved: the store failed ({exc}); nothing changed") from None


def _check_id(incident_id: str) -> None:
    if not _ID.match(incident_id):
        raise IncidentRequestError("id: an incident id is 1 to 64 letters, digits, - or _")


class Observer(Protocol):
    def observe(self, alerts: Sequence[Alert], now: float) -> None: ...


class Observed:
    """The evaluator's notifier: the pipeline, then each observer (the incidents, the firing hooks),
    whose failure never stops a page nor the next observer."""

    def __init__(self, notifier: Notifier, *observers: Observer) -> None:
        self._notifier = notifier
        self._observers = observers

    def notify(self, alerts: Sequence[Alert], now: float) -> None:
        try:
            self._notifier.notify(alerts, now)
        finally:
            for observer in self._observers:
                try:
                    observer.observe(alerts, now)
                except Exception as exc:  # a bug here must not cost the evaluator its round
                    event(
                        log,
                        "alert_observer_failed",
                        level=logging.ERROR,
                        observer=type(observer).__name__,
                        error=repr(exc),
                    )
