"""History reads side by side against the real embedded store: a question's two reads run at once on the
history handles and answer exactly as one after the other, run after run; an average read from the
remembered series is dropped when the series changed; GPU-hours and top GPUs read their totals alone
once their series are named, and answer exactly as with the lookup; a failed read does not break the
next."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from tests.integration.usage_fleet import DAY, DAYS, HOUR, NASTY, Point, answers, insert, load_fresh
from tests.rollup_answers import close
from vigil.store import Store, StoreQueryError, series_cache, series_names
from vigil.store import usage as u
from vigil.store import usage_hourly as hourly
from vigil.store.plan import Resolution
from vigil.store.schema import GAUGE
from vigil.store.schema_history import GAUGE_SERIES, ROLLUP_1H_SERIES

QUESTIONS = [
    ("team", {}, HOUR),
    ("host.name", {}, HOUR),
    ("team", {"k8s.cluster.name": "east"}, HOUR),
    ("team", {"team": NASTY}, HOUR),
    ("team", {}, 3 * HOUR),
]


@pytest.fixture(scope="module")
def loaded(store: Store) -> tuple[Store, int]:
    base = load_fresh(store)
    return store, base


@pytest.fixture(autouse=True)
def forget_series() -> None:
    series_cache.cache_of.clear()  # each test starts with no series remembered, and none named
    series_names.names_of.clear()


def one_after_another(self: Store, calls: Sequence[Callable[[], Any]]) -> list[Any]:
    return [call() for call in calls]


@pytest.mark.parametrize(("group_by", "filters", "step"), QUESTIONS)
def test_reads_at_once_answer_exactly_as_one_after_another(
    loaded: tuple[Store, int], monkeypatch: pytest.MonkeyPatch, group_by: str, filters: dict[str, str], step: int
) -> None:
    store, base = loaded
    q = u.UsageQuery(base, base + DAYS * DAY, step, group_by=group_by, filters=filters, source=Resolution.HOUR)
    # each asked twice: the first average waits for its lookup, the second is read beside it
    together = [answers(store, q), answers(store, q)]
    with monkeypatch.context() as m:
        m.setattr(Store, "read_together", one_after_another)
        series_cache.cache_of.clear()
        apart = [answers(store, q), answers(store, q)]
    assert together[0] == together[1] == apart[0] == apart[1]  # bit for bit, not within rounding
    close(together[0], answers(store, replace(q, source=Resolution.RAW)))  # the raw rows' SQL
    monkeypatch.setattr(u, "_hourly", lambda *a: None)  # the rollup with its maps, as before migration 12
    close(together[0], answers(store, q))


def test_the_two_reads_of_a_question_run_on_two_threads(
    loaded: tuple[Store, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, base = loaded
    q = u.UsageQuery(base, base + DAYS * DAY, HOUR, source=Resolution.HOUR)
    threads: dict[str, int] = {}
    real = store.read_rows

    def spy(sql: str, *a: Any, **kw: Any) -> Any:
        kind = "lookup" if f"FROM {GAUGE_SERIES} FINAL\n" in sql else "rollup"  # q has no filter: no subquery
        threads[kind] = threading.get_ident()
        return real(sql, *a, **kw)

    monkeypatch.setattr(store, "read_rows", spy)
    u.gpu_hours(store, q)
    assert threads.keys() == {"lookup", "rollup"} and threads["lookup"] != threads["rollup"]
    u.utilization(store, q)  # remembers the series
    threads.clear()
    u.utilization(store, q)
    assert threads.keys() == {"lookup", "rollup"} and threads["lookup"] != threads["rollup"]


def _points(base: int, uuid: str, team: str) -> list[Point]:
    resource = {"host.name": "n-new", "team": team, "k8s.cluster.name": "north"}
    return [Point(uuid, resource, "H200", base + s, 50.0 + (s // 60) % 7) for s in range(0, DAYS * DAY, 60)]


def test_a_series_new_between_two_questions_is_in_the_second_answer(loaded: tuple[Store, int]) -> None:
    store, base = loaded
    q = u.UsageQuery(base, base + DAYS * DAY, HOUR, filters={"k8s.cluster.name": "north"}, source=Resolution.HOUR)
    insert(store, _points(base, "GPU-n0", "north-a"))
    first = answers(store, q)
    assert [s[0] for s in first["avg"]] == [{"team": "north-a"}]
    insert(store, _points(base, "GPU-n1", "north-b"))  # the remembered lookup is now one series short
    second = answers(store, q)
    assert [s[0] for s in second["avg"]] == [{"team": "north-a"}, {"team": "north-b"}]
    assert [h.gpus for h in second["hours"]] == [1, 1]
    series_cache.cache_of.clear()
    assert answers(store, q) == second  # the same as asked with nothing remembered


def test_a_failed_read_does_not_break_the_next(loaded: tuple[Store, int]) -> None:
    store, base = loaded
    q = u.UsageQuery(base, base + DAYS * DAY, HOUR, source=Resolution.HOUR)
    before = answers(store, q)
    cut = {"max_result_rows": 1, "result_overflow_mode": "throw"}
    with pytest.raises(Exception, match="boom"):  # both handles busy, one of them failing
        store.read_together(
            [
                lambda: store.read_rows("SELECT sleep(0.2)"),
                lambda: store.read_rows("SELECT throwIf(1, 'boom')"),
            ]
        )
    with pytest.raises(Exception, match=r"(?i)limit"):
        store.read_rows("SELECT number FROM numbers(10)", settings=cut)
    with pytest.raises(StoreQueryError):
        hourly.read_limited(store, "SELECT number FROM numbers(10)", {}, 1)
    assert store.read_rows("SELECT number FROM numbers(10)") == [(i,) for i in range(10)]
    assert answers(store, q) == before
    assert answers(store, replace(q, top=3))["idle"] == before["idle"][:3]


def test_the_cluster_path_answers_as_the_rollup_does(
    loaded: tuple[Store, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a cluster no read uses FINAL and the totals come per GPU by bound arrays; a series remembered
    from a single-node question still only speeds the average up."""
    store, base = loaded
    q = u.UsageQuery(base, base + DAYS * DAY, HOUR, source=Resolution.HOUR)
    answers(store, q)  # remembered from the single-node path
    monkeypatch.setattr(store, "cluster", "fleet")
    clustered = [answers(store, q), answers(store, q)]
    assert clustered[0] == clustered[1]
    monkeypatch.setattr(u, "_hourly", lambda *a: None)
    close(clustered[0], answers(store, q))


def _kinds(monkeypatch: pytest.MonkeyPatch, store: Store) -> list[str]:
    """What each read of `store` reads, in order: the series `lookup`, `names` by hashes, or the `totals`."""
    kinds: list[str] = []
    real = store.read_rows

    def spy(sql: str, *a: Any, **kw: Any) -> Any:
        if f"FROM {ROLLUP_1H_SERIES} FINAL\n" in sql:
            kinds.append("totals")
        elif f"FROM {GAUGE_SERIES} FINAL\n" in sql:
            kinds.append("lookup")
        else:
            kinds.append("names" if "SeriesHash IN {h:Array(UInt64)}" in sql else sql)
        return real(sql, *a, **kw)

    monkeypatch.setattr(store, "read_rows", spy)
    return kinds


def _hours_and_top(store: Store, q: u.UsageQuery) -> tuple[Any, ...]:
    return u.gpu_hours(store, q), u.top_gpus(store, q, "idle"), u.top_gpus(store, q, "hot")


@pytest.mark.parametrize("group_by", ["team", "host.name"])
def test_named_series_let_a_question_read_its_totals_alone_and_answer_the_same(
    loaded: tuple[Store, int], monkeypatch: pytest.MonkeyPatch, group_by: str
) -> None:
    store, base = loaded
    q = u.UsageQuery(base, base + DAYS * DAY, HOUR, group_by=group_by, source=Resolution.HOUR)
    kinds = _kinds(monkeypatch, store)
    with monkeypatch.context() as m:
        m.setattr(series_names.SeriesNames, "knows", lambda *a: False)  # each answer reads the lookup
        first = _hours_and_top(store, q)
    assert sorted(kinds) == sorted(["lookup", "totals"] * 3)
    kinds.clear()
    again = _hours_and_top(store, q)
    assert kinds == ["totals"] * 3
    assert again == first  # bit for bit
    filtered = replace(q, filters={"k8s.cluster.name": "east"})
    kinds.clear()
    u.gpu_hours(store, filtered)
    assert sorted(kinds) == ["lookup", "totals"]  # a filter is the lookup's to apply


def test_series_not_named_yet_are_looked_up_by_their_hashes(
    loaded: tuple[Store, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, base = loaded
    q = u.UsageQuery(base, base + DAYS * DAY, HOUR, source=Resolution.HOUR)
    first = _hours_and_top(store, q)
    hashes = [int(h) for (h,) in store.read_rows(f"SELECT DISTINCT SeriesHash FROM {GAUGE_SERIES}")]
    named = series_names.names_of(store).get("gpu.utilization", "team", hashes)
    series_names.names_of.clear()
    series_names.names_of(store).put("gpu.utilization", "team", sorted(named.items())[1:])  # one forgotten
    forgotten = min(named)
    # another row of the forgotten series in the series table, unmerged (a point long before the range)
    ((resource, attributes),) = store.read_rows(
        f"SELECT ResourceAttributes, Attributes FROM {GAUGE_SERIES} WHERE SeriesHash = {{h:UInt64}} LIMIT 1",
        {"h": forgotten},
    )
    names = ["MetricName", "ResourceAttributes", "Attributes", "TimeUnix", "Value"]
    store.insert_columns(
        GAUGE, [["gpu.utilization"], [resource], [attributes], [(base - 20 * DAY) * 10**9], [1.0]], names
    )
    assert (
        store.read_rows(f"SELECT count() FROM {GAUGE_SERIES} WHERE SeriesHash = {{h:UInt64}}", {"h": forgotten})[0][0]
        > 1
    )
    kinds = _kinds(monkeypatch, store)
    assert _hours_and_top(store, q) == first
    assert kinds == ["totals", "names", "totals", "totals"]  # the forgotten one once, then named again


def test_a_series_without_a_gpu_is_named_so_and_left_out(
    loaded: tuple[Store, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, base = loaded
    gone = base - 10 * DAY  # a day of its own, before every other test's range
    store.insert_columns(
        GAUGE,
        [["gpu.utilization"] * 60, [{"host.name": "n-odd"}] * 60, [{"gpu.index": "0"}] * 60,
         [(gone + 60 * i) * 10**9 for i in range(60)], [50.0] * 60],
        ["MetricName", "ResourceAttributes", "Attributes", "TimeUnix", "Value"],
    )  # fmt: skip
    u.gpu_hours(store, u.UsageQuery(base, base + DAYS * DAY, HOUR, source=Resolution.HOUR))  # names the fleet
    both = u.UsageQuery(gone, base + DAYS * DAY, HOUR, source=Resolution.HOUR)  # the fleet and the odd series
    with monkeypatch.context() as m:
        m.setattr(series_names.SeriesNames, "knows", lambda *a: False)
        looked_up = _hours_and_top(store, both)
    kinds = _kinds(monkeypatch, store)
    assert _hours_and_top(store, both) == looked_up
    assert kinds[:2] == ["totals", "names"]  # the odd series, not named yet, is read by its hash
    (odd_hash,) = store.read_rows(
        f"SELECT SeriesHash FROM {GAUGE_SERIES} WHERE ResourceAttributes['host.name'] = 'n-odd'"
    )[0]
    assert series_names.names_of(store).get("gpu.utilization", "team", [int(odd_hash)]) == {int(odd_hash): None}
    assert all(g.host != "n-odd" for g in looked_up[1] + looked_up[2])


def test_the_average_lookup_names_the_series_for_the_totals(
    loaded: tuple[Store, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, base = loaded
    q = u.UsageQuery(base, base + DAYS * DAY, HOUR, source=Resolution.HOUR)
    u.utilization(store, q)  # the page's chart, asked beside its tables
    kinds = _kinds(monkeypatch, store)
    u.gpu_hours(store, q)
    assert kinds == ["totals"]
