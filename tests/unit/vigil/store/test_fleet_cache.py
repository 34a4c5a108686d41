"""FleetCache: one read per question for `ttl_s`, one read at a time per question, bounded in bytes."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from vigil.store.fleet import FleetGpu
from vigil.store.fleet_cache import FleetCache, answer_bytes

STORE: Any = object()  # the fake read never touches it


class FakeRead:
    def __init__(self, gpus: int = 2) -> None:
        self.calls: list[tuple[float, float, dict[str, str]]] = []
        self.gpus = gpus
        self.release = threading.Event()
        self.release.set()

    def __call__(self, store: Any, now: float, window_s: float, filters: Mapping[str, str]) -> list[FleetGpu]:
        self.release.wait(5)
        self.calls.append((now, window_s, dict(filters)))
        return [
            FleetGpu(f"GPU-{len(self.calls)}-{i}", "", {"host.name": "n"}, {"gpu.index": str(i)}, {"u": 1.0}, 0)
            for i in range(self.gpus)
        ]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_same_question_is_read_once_within_ttl_and_again_after() -> None:
    read, clock = FakeRead(), Clock()
    cache = FleetCache(5.0, read=read, monotonic=clock, spawn=lambda work: work())
    first = cache.fleet(STORE, 1.0, 3600, {"team": "ml"})
    clock.t += 4.9
    assert cache.fleet(STORE, 2.0, 3600, {"team": "ml"}) is first
    assert len(read.calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    clock.t += 0.2
    assert cache.fleet(STORE, 3.0, 3600, {"team": "ml"}) is first  # served stale, refreshed behind it
    assert cache.fleet(STORE, 3.5, 3600, {"team": "ml"}) is not first
    assert [c[0] for c in read.calls] == [1.0, 3.0]


def test_other_filters_or_window_are_other_questions() -> None:
    read = FakeRead()
    cache = FleetCache(5.0, read=read, monotonic=Clock())
    cache.fleet(STORE, 1.0, 3600, {"team": "ml"})
    cache.fleet(STORE, 1.0, 3600, {"team": "infra"})
    cache.fleet(STORE, 1.0, 900, {"team": "ml"})
    cache.fleet(STORE, 1.0, 3600, {})
    assert len(read.calls) == 4


def test_zero_ttl_reads_every_time() -> None:
    read = FakeRead()
    cache = FleetCache(0.0, read=read, monotonic=Clock())
    for _ in range(3):
        cache.fleet(STORE, 1.0, 3600, {})
    assert len(read.calls) == 3 and cache.size_bytes == 0


def test_concurrent_callers_of_one_question_share_one_read() -> None:
    read = FakeRead()
    read.release.clear()
    cache = FleetCache(5.0, read=read, monotonic=Clock())
    answers: list[list[FleetGpu]] = []
    threads = [threading.Thread(target=lambda: answers.append(cache.fleet(STORE, 1.0, 3600, {}))) for _ in range(4)]
    for t in threads:
        t.start()
    read.release.set()
    for t in threads:
        t.join(10)
    assert len(read.calls) == 1 and len(answers) == 4 and all(a is answers[0] for a in answers)


def test_held_bytes_stay_under_the_bound_oldest_dropped_first() -> None:
    read = FakeRead(gpus=10)
    one = answer_bytes(read(STORE, 0, 0, {}))
    read.calls.clear()
    cache = FleetCache(60.0, max_bytes=int(2.5 * one), read=read, monotonic=Clock())
    for team in ("a", "b", "c"):
        cache.fleet(STORE, 1.0, 3600, {"team": team})
    assert cache.size_bytes <= 2.5 * one
    cache.fleet(STORE, 1.0, 3600, {"team": "c"})  # still held
    cache.fleet(STORE, 1.0, 3600, {"team": "a"})  # dropped: read again
    assert [c[2]["team"] for c in read.calls] == ["a", "b", "c", "a"]
    tiny = FleetCache(60.0, max_bytes=10, read=read, monotonic=Clock())
    tiny.fleet(STORE, 1.0, 3600, {})
    assert tiny.size_bytes == 0  # an answer larger than the bound is served, never held


def test_a_stale_answer_is_served_while_one_background_read_replaces_it() -> None:
    read, clock = FakeRead(), Clock()
    spawned: list[Any] = []
    cache = FleetCache(5.0, read=read, monotonic=clock, spawn=spawned.append)
    first = cache.fleet(STORE, 1.0, 3600, {})
    clock.t += 6  # past ttl, within 2 x ttl
    assert cache.fleet(STORE, 2.0, 3600, {}) is first
    assert cache.fleet(STORE, 2.5, 3600, {}) is first  # the refresh is under way: no second one
    assert len(spawned) == 1 and len(read.calls) == 1 and cache.stale_hits == 2
    spawned[0]()  # the background read runs
    assert [c[0] for c in read.calls] == [1.0, 2.0]
    second = cache.fleet(STORE, 3.0, 3600, {})
    assert second is not first and len(read.calls) == 2
    clock.t += 10.1  # nobody asked for 2 x ttl: the caller waits for a fresh read
    third = cache.fleet(STORE, 4.0, 3600, {})
    assert third is not second and [c[0] for c in read.calls] == [1.0, 2.0, 4.0] and not cache._inflight


def test_a_failed_background_read_keeps_the_old_answer_and_frees_the_next_refresh() -> None:
    calls = {"n": 0}

    def flaky(store: Any, now: float, window_s: float, filters: Mapping[str, str]) -> list[FleetGpu]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("store down")
        return []

    clock, spawned = Clock(), []
    cache = FleetCache(5.0, read=flaky, monotonic=clock, spawn=spawned.append)
    first = cache.fleet(STORE, 1.0, 3600, {})
    clock.t += 6
    assert cache.fleet(STORE, 2.0, 3600, {}) is first
    spawned.pop()()  # fails, logged
    assert cache.fleet(STORE, 2.0, 3600, {}) is first
    spawned.pop()()  # a second refresh could start: the gate was released
    assert calls["n"] == 3
