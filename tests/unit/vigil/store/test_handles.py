"""The history reads' handle pool: bounded, a failed read replaces its handle, and `together` runs a
question's reads at once, each answer in its place, none outliving the call."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from vigil.store.handles import HistoryHandles


class FakeClient:
    """A client whose query runs `behaviour(sql)`; records that it was closed."""

    opened = 0

    def __init__(self, behaviour: Any) -> None:
        FakeClient.opened += 1
        self.n = FakeClient.opened
        self.behaviour = behaviour
        self.closed = False

    def query(self, sql: str, parameters: dict[str, Any], settings: Any) -> Any:
        assert not self.closed
        result = type("Result", (), {})()
        result.result_rows = self.behaviour(self, sql)
        return result


def pool(behaviour: Any, size: int = 2) -> tuple[HistoryHandles, list[FakeClient]]:
    made: list[FakeClient] = []

    def open_client() -> Any:
        made.append(FakeClient(behaviour))
        return made[-1]

    def close(client: Any) -> None:
        client.closed = True

    return HistoryHandles(open_client, close, size), made


def test_a_failed_read_replaces_its_handle_and_the_next_read_runs() -> None:
    def behaviour(client: FakeClient, sql: str) -> list[tuple[Any, ...]]:
        if sql == "bad":
            raise RuntimeError("engine refused")
        return [(client.n,)]

    handles, made = pool(behaviour, size=1)
    first = handles.query("good", {}, None)
    with pytest.raises(RuntimeError, match="engine refused"):
        handles.query("bad", {}, None)
    assert made[0].closed  # its session may hold what the failed query changed
    assert handles.query("good", {}, None) != first  # a fresh handle answered
    assert len(made) == 2 and not made[1].closed


def test_no_more_handles_than_the_bound_even_under_many_readers() -> None:
    running, peak, lock = 0, 0, threading.Lock()
    gate = threading.Event()

    def behaviour(client: FakeClient, sql: str) -> list[tuple[Any, ...]]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait(5)
        with lock:
            running -= 1
        return []

    handles, made = pool(behaviour, size=2)
    readers = [threading.Thread(target=handles.query, args=("q", {}, None)) for _ in range(6)]
    for r in readers:
        r.start()
    gate.set()
    for r in readers:
        r.join(10)
    assert peak <= 2 and len(made) <= 2


def test_together_runs_the_reads_at_once_and_answers_in_call_order() -> None:
    both = threading.Barrier(2, timeout=10)  # passes only when the two reads are inside at the same time

    def behaviour(client: FakeClient, sql: str) -> list[tuple[Any, ...]]:
        both.wait()
        return [(sql,)]

    handles, _ = pool(behaviour, size=2)
    answers = handles.together([lambda: handles.query("a", {}, None), lambda: handles.query("b", {}, None)])
    assert answers == [[("a",)], [("b",)]]
    handles.close()


def test_one_handle_runs_them_one_after_another() -> None:
    order: list[str] = []
    handles, made = pool(lambda client, sql: order.append(sql) or [], size=1)
    handles.together([lambda: handles.query("a", {}, None), lambda: handles.query("b", {}, None)])
    assert order == ["a", "b"] and len(made) == 1


def test_a_failure_is_raised_once_every_read_has_ended() -> None:
    ended = threading.Event()

    def slow() -> str:
        ended.wait(0.2)
        ended.set()
        return "slow"

    def fail() -> str:
        raise ValueError("first failed")

    handles, _ = pool(lambda client, sql: [], size=2)
    with pytest.raises(ValueError, match="first failed"):
        handles.together([fail, slow])
    assert ended.is_set()
    with pytest.raises(ValueError, match="second failed"):
        handles.together([lambda: "ok", lambda: (_ for _ in ()).throw(ValueError("second failed"))])
    handles.close()


def test_together_inside_together_does_not_wait_for_itself() -> None:
    handles, _ = pool(lambda client, sql: [(sql,)], size=2)
    inner = lambda: handles.together([lambda: 1, lambda: 2])  # noqa: E731
    assert handles.together([inner, inner]) == [[1, 2], [1, 2]]
    handles.close()


def test_a_closed_pool_refuses_and_closes_its_handles() -> None:
    handles, made = pool(lambda client, sql: [], size=2)
    handles.query("q", {}, None)
    handles.close()
    assert all(c.closed for c in made)
    with pytest.raises(RuntimeError, match="closed"):
        handles.query("q", {}, None)
