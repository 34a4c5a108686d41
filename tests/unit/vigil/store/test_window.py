"""Windowed reads without a store: the source a window reads, its SQL's parameters, and the math."""

import math

import pytest

from vigil.store.plan import QueryRejected, Resolution
from vigil.store.schema import SchemaContext
from vigil.store.window import FUNCTIONS_BY_KIND, Matcher, WindowQuery
from vigil.store.window_math import CounterSeries, cumulative, extrapolation_factor, histogram_quantile
from vigil.store.window_sql import TABLES, plan_window, window_sql

CTX = SchemaContext()
NOW = 1_699_999_200.0  # on an hour's edge
NASTY = "a'] OR 1=1) --; DROP TABLE otel_metrics_sum"
DAY = 86_400


@pytest.mark.parametrize(
    ("window_s", "source"),
    [
        (30, Resolution.RAW),
        (3599, Resolution.RAW),
        (3600, Resolution.MINUTE),
        (3630, Resolution.RAW),  # not a whole number of minutes
        (6 * 3600, Resolution.MINUTE),
        (DAY, Resolution.MINUTE),  # an hour's bucket would be more than 1/60 of it
        (60 * 3600, Resolution.HOUR),
        (3 * DAY, Resolution.HOUR),
        (30 * DAY, Resolution.HOUR),
    ],
)
def test_the_source_follows_the_window(window_s: int, source: Resolution) -> None:
    assert plan_window(window_s, NOW, CTX).source is source


def test_a_rollup_read_covers_whole_buckets_up_to_the_one_holding_now() -> None:
    aligned = plan_window(3600, NOW, CTX)
    assert (aligned.start, aligned.end, aligned.range_s(NOW)) == (NOW - 3600, NOW, 3600)
    later = plan_window(3600, NOW + 20, CTX)
    assert (later.start, later.end, later.range_s(NOW + 20)) == (NOW + 60 - 3600, NOW + 60, 3560)
    raw = plan_window(30, NOW + 0.25, CTX)
    assert (raw.start, raw.end) == (NOW + 0.25 - 30, NOW + 0.25)
    assert plan_window(100 * DAY, NOW, CTX).source is Resolution.HOUR  # past the 1-minute rollup's TTL


def test_a_forced_rollup_needs_whole_buckets() -> None:
    assert plan_window(120, NOW, CTX, Resolution.MINUTE).source is Resolution.MINUTE
    with pytest.raises(QueryRejected, match="whole number"):
        plan_window(90, NOW, CTX, Resolution.MINUTE)


def all_queries() -> list[WindowQuery]:
    matchers = tuple(Matcher(NASTY, op, NASTY) for op in ("=", "!=", "=~", "!~"))
    return [
        WindowQuery(NASTY, kind, function, 3600, matchers, (NASTY, "team"), quantile=0.5, le=0.5)  # type: ignore[arg-type]
        for kind, functions in FUNCTIONS_BY_KIND.items()
        for function in sorted(functions)
    ]


@pytest.mark.parametrize("source", list(Resolution))
@pytest.mark.parametrize("query", all_queries(), ids=lambda q: f"{q.kind}-{q.function}")
def test_every_value_is_a_parameter(query: WindowQuery, source: Resolution) -> None:
    if query.function == "last_seen" and source is not Resolution.RAW:
        return
    sql, params = window_sql(query, plan_window(query.window_s, NOW, CTX, source))
    assert NASTY not in sql and "team" not in sql and "0.5" not in sql
    assert f"FROM {TABLES[query.kind][source]}\n" in sql
    assert params["metric"] == NASTY and params["g0"] == NASTY and params["g1"] == "team"
    assert [params[f"mk{i}"] for i in range(4)] == [NASTY] * 4 and params["mv3"] == NASTY


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (WindowQuery("m", "gauge", "rate", 60), "gauge metrics answer"),
        (WindowQuery("m", "summary", "last", 60), "kind 'summary'"),  # type: ignore[arg-type]
        (WindowQuery("", "gauge", "avg", 60), "metric must not be empty"),
        (WindowQuery("m", "gauge", "avg", 60, (Matcher("k", "==", "v"),)), "operator '=='"),  # type: ignore[arg-type]
        (WindowQuery("m", "gauge", "avg", 60, (Matcher("", "=", "v"),)), "must not be empty"),
        (WindowQuery("m", "gauge", "avg", 60, group_by=("",)), "must not be empty"),
        (WindowQuery("m", "histogram", "quantile", 60), "quantile needs"),
        (WindowQuery("m", "histogram", "le_count", 60, le=math.nan), "le_count needs"),
    ],
)
def test_queries_no_table_answers_are_refused(query: WindowQuery, message: str) -> None:
    with pytest.raises(QueryRejected, match=message):
        window_sql(query, plan_window(60, NOW, CTX))


@pytest.mark.parametrize(
    ("series", "start", "end", "factor"),
    [
        # 30 points 1 s apart, 0.5 s in from each edge of a 30 s range: out to both edges.
        (CounterSeries(58.0, 100.0, 0.5, 29.5, 30), 0.0, 30.0, 30 / 29),
        # First point far from the start: only half an interval out.
        (CounterSeries(10.0, 100.0, 20.0, 29.0, 10), 0.0, 30.0, (9 + 0.5 + 1) / 9),
        # A counter from 0: never extrapolated back past its zero point.
        (CounterSeries(58.0, 0.0, 0.5, 29.5, 30), 0.0, 30.0, 29.5 / 29),
        (CounterSeries(5.0, 1.0, 10.0, 10.0, 1), 0.0, 30.0, None),  # one point: no rate
    ],
)
def test_extrapolation_as_prometheus(series: CounterSeries, start: float, end: float, factor: float | None) -> None:
    assert extrapolation_factor(series, start, end) == (pytest.approx(factor) if factor else None)


INF = math.inf


@pytest.mark.parametrize(
    ("q", "buckets", "want"),
    [
        (0.5, {0.1: 10, 0.5: 30, 1.0: 40, INF: 40}, 0.3),
        (0.25, {0.1: 10, 0.5: 30, 1.0: 40, INF: 40}, 0.1),
        (0.1, {0.1: 10, 0.5: 30, 1.0: 40, INF: 40}, 0.04),  # the first bucket starts at 0
        (0.99, {0.1: 0, 0.5: 0, 1.0: 10, INF: 20}, 1.0),  # in +Inf: the highest finite bound
        (0.5, {-1.0: 10, 0.0: 20, INF: 20}, -1.0),  # the first bucket at or below 0: its bound
        (0.5, {0.1: 0, INF: 0}, math.nan),  # no observations
        (0.5, {0.1: 5, 0.5: 5}, math.nan),  # no +Inf bucket
        (1.5, {0.1: 5, INF: 5}, INF),
        (0.75, {0.1: 10, 0.5: 9.9, 1.0: 20, INF: 20}, 0.75),  # a bucket that shrank (float noise): made monotonic
    ],
)
def test_histogram_quantile_as_prometheus(q: float, buckets: dict[float, float], want: float) -> None:
    got = histogram_quantile(q, buckets)
    assert math.isnan(got) if math.isnan(want) else got == pytest.approx(want)


def test_otel_buckets_become_cumulative_le_buckets() -> None:
    assert cumulative([0.1, 0.5], [1, 2, 3]) == {0.1: 1, 0.5: 3, INF: 6}
