"""An incident's chart marks, read once for all the charts of its page.

Every chart on `/incidents/{id}` asks for the same marks when the page loads and again at each refresh,
all at once; each answer reads the incident's timeline and its GPUs' XIDs from the store. `Coalesced`
lets the first of those requests read and the others wait for its answer (or read on their own after
`wait_s`, so a slow store never holds them longer), and keeps answers for `ttl_s`, bounded in bytes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from dashboard.incident_format import MAX_SUBJECTS, incident_marks, subjects, window
from vigil import names as n
from vigil.incident_view import IncidentsView
from vigil.logs import event
from vigil.store import Store, StoreError
from vigil.store.fleet import Mark, xid_events

log = logging.getLogger(__name__)

TTL_S = 5.0  # a refresh burst (every chart at once) reads once; a note shows on the next refresh
WAIT_S = 10.0
MAX_BYTES = 2 * 1024 * 1024


class Coalesced:
    """Answers (bytes) by key: computed once per `ttl_s` however many ask at the same time."""

    def __init__(
        self,
        ttl_s: float = TTL_S,
        wait_s: float = WAIT_S,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s, self.wait_s, self.max_bytes = ttl_s, wait_s, max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._busy: dict[Hashable, threading.Event] = {}
        self._drops = 0  # an answer read before a drop is not kept: it may predate the change

    def _fresh(self, key: Hashable) -> bytes | None:
        found = self._answers.get(key)
        if found is None or self._clock() - found[0] >= self.ttl_s:
            return None
        return found[1]

    def get(self, key: Hashable, compute: Callable[[], bytes]) -> bytes:
        with self._lock:
            kept = self._fresh(key)
            if kept is not None:
                return kept
            other = self._busy.get(key)
            if other is None:
                mine = self._busy[key] = threading.Event()
            drops = self._drops
        if other is not None:
            if other.wait(self.wait_s):
                with self._lock:
                    kept = self._fresh(key)
                if kept is not None:
                    return kept
            return compute()  # the first one failed or is slow: answer on our own, keep nothing
        try:
            answer = compute()
            self._keep(key, answer, drops)
            return answer
        finally:
            with self._lock:
                self._busy.pop(key, None)
            mine.set()

    def drop(self, key: Hashable) -> None:
        """Forget an answer that a change made here has outdated (a note, a close)."""
        with self._lock:
            self._drops += 1
            old = self._answers.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1])

    def _keep(self, key: Hashable, answer: bytes, drops: int) -> None:
        if len(answer) > self.max_bytes:
            return
        with self._lock:
            if drops != self._drops:
                return
            old = self._answers.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1])
            self._answers[key] = (self._clock(), answer)
            self._bytes += len(answer)
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._answers.popitem(last=False)
                self._bytes -= len(dropped)


def gpu_xids(store: Store, gpus: Sequence[str], start: float, end: float) -> tuple[list[Mark], list[str]]:
    """XIDs of the GPUs over [start, end); what could not be read is named, not raised: the timeline's
    marks are worth showing without them."""
    found: list[Mark] = []
    missing: list[str] = []
    for uuid in gpus:
        try:
            found += xid_events(store, start, end, {n.GPU_UUID: uuid})
        except StoreError as exc:
            event(log, "incident_xids_unavailable", level=logging.WARNING, gpu=uuid, error=str(exc))
            missing.append(f"XIDs of {uuid}: the store failed ({exc})")
    return found, missing


def marks_json(view: IncidentsView, store: Store, incident_id: str, now: float) -> bytes:
    """The incident's marks in the chart contract's shape; raises the view's refusals."""
    incident = view.get(incident_id)
    start, end = window(incident, now)
    gpus = subjects(incident.get("alerts", []))["gpus"][:MAX_SUBJECTS]
    xids, missing = gpu_xids(store, gpus, start, now if end is None else end)
    body: dict[str, Any] = {"marks": [m.to_json() for m in incident_marks(incident, xids)]}
    if missing:
        body["unavailable"] = missing
    return json.dumps(body, separators=(",", ":")).encode()
