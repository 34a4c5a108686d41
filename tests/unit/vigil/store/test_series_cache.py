"""The series cache keeps within its bytes, and `speculate` never answers from a lookup that changed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from vigil.store import series_cache
from vigil.store.series_cache import SeriesCache, series_bytes, speculate
from vigil.store.usage_hourly import Series


def make_series(n: int, group: str = "ml") -> Series:
    return Series(
        hashes=[2**63 + i for i in range(n)],
        key=list(range(1, n + 1)),
        gpus=[(f"GPU-{i:08d}", group, f"host-{i // 8}") for i in range(n)],
        groups=[group],
        key_group=[1] * n,
    )


def test_the_size_grows_with_the_series_and_its_strings() -> None:
    small, large = series_bytes(make_series(10)), series_bytes(make_series(1000))
    assert 1000 < small < large
    assert large > 1000 * (8 * 3 + 3 * 40)  # at least its list slots and the bytes of its strings
    assert series_bytes(make_series(10, group="g" * 10_000)) > small + 10 * 10_000


def test_the_cache_stays_within_its_bytes_and_drops_the_least_recently_used() -> None:
    one = series_bytes(make_series(100))
    cache = SeriesCache(max_bytes=3 * one + one // 2)
    for i in range(3):
        cache.put(("q", i), make_series(100))
    assert cache.get(("q", 0)) is not None  # now the most recently used
    cache.put(("q", 3), make_series(100))
    assert len(cache) == 3 and cache.bytes <= cache.max_bytes
    assert cache.get(("q", 1)) is None  # the least recently used went
    assert cache.get(("q", 0)) is not None and cache.get(("q", 3)) is not None
    for i in range(50):
        cache.put(("more", i), make_series(100))
        assert cache.bytes <= cache.max_bytes


def test_a_series_past_the_whole_bound_is_not_kept_and_none_forgets() -> None:
    cache = SeriesCache(max_bytes=series_bytes(make_series(10)) * 2)
    cache.put(("q",), make_series(10))
    cache.put(("q",), make_series(5000))  # too large to keep: the key is forgotten, not left stale
    assert cache.get(("q",)) is None and cache.bytes == 0
    cache.put(("q",), make_series(10))
    cache.put(("q",), None)
    assert cache.get(("q",)) is None and cache.bytes == 0 and len(cache) == 0


class OneAfterAnother:
    """A store stand-in: `read_together` runs the calls in order and records that it was asked."""

    embedded = True

    def __init__(self) -> None:
        self.together = 0

    def read_together(self, calls: Sequence[Callable[[], Any]]) -> list[Any]:
        self.together += 1
        return [call() for call in calls]


@pytest.fixture
def store() -> OneAfterAnother:
    series_cache.cache_of.clear()
    return OneAfterAnother()


def ask(store: Any, found: Series | None, answered: list[Series]) -> Any:
    def answer(s: Series) -> int:
        answered.append(s)
        return len(s.hashes)

    return speculate(store, ("q",), lambda: found, answer)


def test_the_first_question_waits_for_its_lookup(store: OneAfterAnother) -> None:
    answered: list[Series] = []
    assert ask(store, make_series(3), answered) == 3
    assert answered == [make_series(3)] and store.together == 0


def test_an_unchanged_lookup_keeps_the_answer_read_beside_it(store: OneAfterAnother) -> None:
    answered: list[Series] = []
    ask(store, make_series(3), answered)
    assert ask(store, make_series(3), answered) == 3
    assert len(answered) == 2 and store.together == 1  # one answer, read beside the lookup


def test_a_changed_lookup_is_answered_again_from_the_fresh_series(store: OneAfterAnother) -> None:
    answered: list[Series] = []
    ask(store, make_series(3), answered)
    assert ask(store, make_series(4), answered) == 4  # a new GPU: the guess from 3 series is dropped
    assert answered[-2:] == [make_series(3), make_series(4)]
    assert ask(store, make_series(4), answered) == 4  # and the fresh series is remembered
    assert answered[-1] == make_series(4) and len(answered) == 4


def test_too_many_series_forgets_the_key(store: OneAfterAnother) -> None:
    answered: list[Series] = []
    ask(store, make_series(3), answered)
    assert ask(store, None, answered) is None  # the caller reads the rollup instead
    assert ask(store, make_series(3), answered) == 3 and store.together == 1


def test_a_failed_guess_matters_only_when_it_is_kept(store: OneAfterAnother) -> None:
    ask(store, make_series(3), [])
    calls = []

    def answer(s: Series) -> int:
        calls.append(s)
        if len(calls) == 1:
            raise RuntimeError("the guess failed")
        return len(s.hashes)

    assert speculate(store, ("q",), lambda: make_series(5), answer) == 5  # lookup changed: the guess is dropped
    with pytest.raises(RuntimeError, match="the guess failed"):
        calls.clear()
        speculate(store, ("q",), lambda: make_series(5), answer)  # lookup unchanged: its failure is the answer
