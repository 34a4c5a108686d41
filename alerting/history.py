"""Alert state and transitions in the store, so a restart keeps firing alerts firing and pending ones pending.

`vigil_alerts` holds one row per fingerprint and write (the newest `Version` is the current
state; a forgotten alert gets a last row with State 'inactive'); `vigil_alert_history` holds
every transition. Each write is one insert per table. A write the store refuses is kept and
sent again with the next one (bounded), so a store outage loses no transition it can hold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from alerting.model import Alert, AlertState
from alerting.state import Tracked, Transition
from vigil.logs import event
from vigil.store import Store
from vigil.store.schema import ALERT_HISTORY, ALERTS

log = logging.getLogger(__name__)

MAX_HELD_TRANSITIONS = 10_000  # unwritten transitions kept through a store outage; the oldest go first

_STATE_COLUMNS = (
    "Fingerprint",
    "Rule",
    "GroupName",
    "Labels",
    "Annotations",
    "State",
    "Value",
    "ActiveAt",
    "FiredAt",
    "ResolvedAt",
    "KeepFiringSince",
    "UpdatedAt",
    "Version",
)
_HISTORY_COLUMNS = ("At", "Fingerprint", "Rule", "Labels", "FromState", "ToState", "Value")


@dataclass(frozen=True)
class StateRow:
    """An alert of a rule as stored: held (pending, firing) or forgotten (state inactive)."""

    rule: str
    group: str
    tracked: Tracked


@dataclass(frozen=True)
class Restored:
    """An alert held before the restart, with the rule it belongs to."""

    rule: str
    group: str
    tracked: Tracked


def _dt(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _s(millis: int | None) -> float | None:
    return None if millis is None else millis / 1000


class AlertStore:
    """Reads and writes alert state and history through the store."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._version = 0
        self._held_state: dict[str, tuple[Any, ...]] = {}  # fingerprint → newest unwritten row
        self._held_history: list[tuple[Any, ...]] = []
        self.dropped_transitions = 0

    def _next_version(self) -> int:
        # nanoseconds keep versions rising across restarts; the counter keeps them unique within one
        self._version = max(self._version + 1, time.time_ns())
        return self._version

    def write(self, rows: Sequence[StateRow], transitions: Sequence[Transition]) -> None:
        """Store the changed alerts and the transitions, with whatever an earlier failed write left.

        Raises the store's error after keeping the rows for the next write.
        """
        if not rows and not transitions and not self._held_state and not self._held_history:
            return
        with self._lock:
            now = _dt(self._clock())
            for row in rows:
                a = row.tracked.alert
                self._held_state[a.fingerprint] = (
                    a.fingerprint,
                    row.rule,
                    row.group,
                    dict(a.labels),
                    dict(a.annotations),
                    str(a.state),
                    float(a.value),
                    _dt(a.active_at),
                    _dt(a.fired_at),
                    _dt(a.resolved_at),
                    _dt(row.tracked.keep_firing_since),
                    now,
                    self._next_version(),
                )
            self._held_history.extend(
                (_dt(t.at), t.fingerprint, t.rule, dict(t.labels), str(t.from_state), str(t.to_state), float(t.value))
                for t in transitions
            )
            excess = len(self._held_history) - MAX_HELD_TRANSITIONS
            if excess > 0:
                del self._held_history[:excess]
                self.dropped_transitions += excess
                event(log, "alert_history_dropped", count=excess, reason="store unavailable too long")
            if self._held_state:
                state = list(self._held_state.values())
                self._store.insert_columns(ALERTS, list(zip(*state, strict=True)), _STATE_COLUMNS)
                self._held_state.clear()
            if self._held_history:
                self._store.insert_columns(ALERT_HISTORY, list(zip(*self._held_history, strict=True)), _HISTORY_COLUMNS)
                self._held_history.clear()

    def restore(self) -> list[Restored]:
        """Every alert held (pending or firing) when the last write happened."""
        rows = self._store.query_rows(
            f"""SELECT Fingerprint, argMax(tuple(Rule, GroupName, Labels, Annotations, State, Value,
                    toUnixTimestamp64Milli(ActiveAt), toUnixTimestamp64Milli(FiredAt),
                    toUnixTimestamp64Milli(KeepFiringSince)), Version) AS t
            FROM {ALERTS} GROUP BY Fingerprint HAVING t.5 != 'inactive'"""
        )
        out = []
        for _fp, (rule, group, labels, notes, state, value, active, fired, keep) in rows:
            alert = Alert(
                labels=dict(labels),
                annotations=dict(notes),
                state=AlertState(state),
                value=float(value),
                active_at=active / 1000,
                fired_at=_s(fired),
            )
            out.append(Restored(rule, group, Tracked(alert, _s(keep))))
        return out

    def prune(self, days: int, table: str = ALERTS, on_cluster: str = "") -> None:
        """Delete every row of alerts forgotten more than `days` ago (all rows of a fingerprint at once).

        `table`/`on_cluster`: the storage table and `ON CLUSTER` clause where the store is a cluster.
        """
        self._store.command(
            f"""DELETE FROM {table}{on_cluster} WHERE Fingerprint IN (
                SELECT Fingerprint FROM {ALERTS} GROUP BY Fingerprint
                HAVING argMax(State, Version) = 'inactive'
                    AND max(UpdatedAt) < now64(3) - toIntervalDay({{d:UInt32}}))""",
            {"d": days},
        )

    def history(self, limit: int, fingerprint: str | None = None) -> list[Transition]:
        """The newest `limit` transitions, newest first; of one alert where `fingerprint` is given."""
        where = "WHERE Fingerprint = {fp:String}" if fingerprint else ""
        rows = self._store.query_rows(
            f"""SELECT toUnixTimestamp64Milli(At), Fingerprint, Rule, Labels, FromState, ToState, Value
            FROM {ALERT_HISTORY} {where} ORDER BY At DESC LIMIT {{n:UInt32}}""",
            {"n": limit, "fp": fingerprint or ""},
        )
        return [Transition(at / 1000, fp, rule, dict(labels), f, t, float(v)) for at, fp, rule, labels, f, t, v in rows]
