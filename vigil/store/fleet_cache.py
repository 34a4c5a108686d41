"""A few seconds' reuse of one fleet read, for every viewer asking the same question.

The fleet page refreshes itself every 10 s in every open browser, and `/api/v1/gpus` serves scripts
too, so at a thousand GPUs many callers ask for the same answer within seconds; each read costs two
scans of the last two minutes of raw rows. `FleetCache` keeps the answer to one (filters, XID window)
for `ttl_s` seconds, lets concurrent callers of the same key wait for one read rather than each start
their own, and holds at most `max_bytes` (an estimate of the answers' size), dropping the oldest first.

Between `ttl_s` and `2 * ttl_s` old, an answer is still served while one background read replaces it,
so a viewer does not wait for the read that the refresh cycle makes due; past `2 * ttl_s` (nobody asked
for a while) the caller waits for a fresh read. An answer is thus at most `2 * ttl_s` old plus one read;
agents report every 10 s, so at the default 5 s the page shows what a read a few seconds earlier would
have. `ttl_s=0` reads every time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from vigil.logs import event
from vigil.store.client import Store
from vigil.store.fleet import FleetGpu, fleet

log = logging.getLogger("vigil.store.fleet_cache")

MAX_BYTES = 64 * 2**20
Key = tuple[tuple[tuple[str, str], ...], float]


def _in_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="fleet-cache-refresh", daemon=True).start()


def answer_bytes(gpus: list[FleetGpu]) -> int:
    """An over-estimate of the Python objects an answer holds: per GPU a fixed cost, its maps and values."""

    def one(g: FleetGpu) -> int:
        maps = sum(len(k) + len(v) + 120 for m in (g.resource, g.attributes) for k, v in m.items())
        return 800 + maps + 150 * len(g.values) + 300 * len(g.xids) + sum(one(m) for m in g.mig)

    return sum(one(g) for g in gpus)


@dataclass
class _Entry:
    gpus: list[FleetGpu]
    read_at: float
    size: int


class FleetCache:
    def __init__(
        self,
        ttl_s: float,
        max_bytes: int = MAX_BYTES,
        read: Callable[[Store, float, float, Mapping[str, str]], list[FleetGpu]] = fleet,
        monotonic: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None]], None] = _in_thread,
    ) -> None:
        self.ttl_s, self.max_bytes = ttl_s, max_bytes
        self._read, self._monotonic, self._spawn = read, monotonic, spawn
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._inflight: dict[Key, threading.Lock] = {}
        self.hits = self.stale_hits = self.misses = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def fleet(self, store: Store, now: float, window_s: float, filters: Mapping[str, str]) -> list[FleetGpu]:
        """`vigil.store.fleet.fleet(store, now, window_s, filters)`, or its answer of under `ttl_s` ago (of
        under `2 * ttl_s`, while a background read replaces it)."""
        if self.ttl_s <= 0:
            return self._read(store, now, window_s, filters)
        key: Key = (tuple(sorted(filters.items())), float(window_s))
        found = self._fresh(key, self.ttl_s)
        if found is not None:
            return found
        with self._lock:
            gate = self._inflight.setdefault(key, threading.Lock())
        stale = self._fresh(key, 2 * self.ttl_s, count=False)
        if stale is not None:
            if gate.acquire(blocking=False):  # else a refresh is already under way
                self._spawn(lambda: self._refresh(gate, key, store, now, window_s, filters))
            with self._lock:
                self.stale_hits += 1
            return stale
        try:
            with gate:  # one read per key at a time: the callers behind it take its answer
                found = self._fresh(key, self.ttl_s)
                if found is not None:
                    return found
                gpus = self._read(store, now, window_s, filters)
                self._keep(key, gpus)
                return gpus
        finally:
            self._forget_gate(key)

    def _forget_gate(self, key: Key) -> None:
        # Gates live while a read is due or under way, so odd filters cannot grow them without bound; a
        # caller still holding a forgotten one makes at most one extra read.
        with self._lock:
            self._inflight.pop(key, None)

    def _refresh(
        self, gate: threading.Lock, key: Key, store: Store, now: float, window_s: float, filters: Mapping[str, str]
    ) -> None:
        try:
            self._keep(key, self._read(store, now, window_s, filters))
        except Exception as exc:  # the next caller past 2 * ttl_s reads itself and gets the error
            event(log, "fleet_cache_refresh_failed", level=logging.WARNING, error=str(exc)[:500])
        finally:
            gate.release()
            self._forget_gate(key)

    def _fresh(self, key: Key, max_age_s: float, count: bool = True) -> list[FleetGpu] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._monotonic() - entry.read_at < max_age_s:
                self.hits += count
                return entry.gpus
            return None

    def _keep(self, key: Key, gpus: list[FleetGpu]) -> None:
        size = answer_bytes(gpus)
        with self._lock:
            self.misses += 1
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            if size > self.max_bytes:
                return  # too large to keep: served once, never held
            while self._entries and self._bytes + size > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.size
            self._entries[key] = _Entry(gpus, self._monotonic(), size)
            self._bytes += size
