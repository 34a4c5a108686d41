"""Windowed reads against the real embedded store: each function by hand, matchers, and rollups
that answer as raw rows do on counters with resets and on histograms."""

import math
import random
import time

import pytest

from vigil.store import Store
from vigil.store.plan import QueryRejected, Resolution
from vigil.store.schema import (
    GAUGE,
    HISTOGRAM,
    HISTOGRAM_ROLLUP_1H,
    HISTOGRAM_ROLLUP_1M,
    SUM,
    SUM_ROLLUP_1H,
    SUM_ROLLUP_1M,
    SchemaContext,
)
from vigil.store.window import Matcher, WindowQuery, WindowValue, window_values

CTX = SchemaContext()
HOUR = 3600
S = 10**9
NASTY = "x'); DROP TABLE otel_metrics_sum; --"
BOUNDS = [0.1, 0.5, 1.0]
HISTOGRAM_COLUMNS = [
    "MetricName",
    "ResourceAttributes",
    "Attributes",
    "TimeUnix",
    "Count",
    "Sum",
    "BucketCounts",
    "ExplicitBounds",
]


def insert_sums(store: Store, rows: list[tuple[str, dict[str, str], dict[str, str], float, float]]) -> None:
    """(metric, resource, attributes, unix seconds, value) rows, in blocks of 500 (the rollups merge states)."""
    for i in range(0, len(rows), 500):
        part = rows[i : i + 500]
        store.insert_columns(
            SUM,
            [
                [r[0] for r in part],
                [r[1] for r in part],
                [r[2] for r in part],
                [round(r[3] * S) for r in part],
                [r[4] for r in part],
            ],
            ["MetricName", "ResourceAttributes", "Attributes", "TimeUnix", "Value"],
        )


def insert_histograms(store: Store, rows: list[tuple[str, dict[str, str], float, list[int]]]) -> None:
    """(metric, attributes, unix seconds, per-bucket counts over BOUNDS) rows, in blocks of 500."""
    for i in range(0, len(rows), 500):
        part = rows[i : i + 500]
        store.insert_columns(
            HISTOGRAM,
            [
                [r[0] for r in part],
                [{"host.name": "n1"} for _ in part],
                [r[1] for r in part],
                [round(r[2] * S) for r in part],
                [sum(r[3]) for r in part],
                [0.0 for _ in part],
                [r[3] for r in part],
                [BOUNDS for _ in part],
            ],
            HISTOGRAM_COLUMNS,
        )


def as_dict(values: list[WindowValue] | tuple[WindowValue, ...]) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(v.labels.items())): v.value for v in values}


# -- each function against hand-computed values (raw rows, a few seconds' window) -------------------


@pytest.fixture(scope="module")
def now(store: Store) -> float:
    """A few points per series in the last seconds before `now`, half a second off every whole second."""
    t = float(int(time.time()) - 100)
    ml, none = {"team": "ml", "host.name": "n1"}, {"host.name": "n2"}
    store.insert_columns(
        GAUGE,
        [
            ["w.temp"] * 4,
            [ml, ml, ml, none],
            [{"gpu": "0"}] * 3 + [{"gpu": "1"}],
            [round((t - d) * S) for d in (2.5, 1.5, 0.5, 1.0)],
            [1.0, 5.0, 3.0, 9.0],
        ],
        ["MetricName", "ResourceAttributes", "Attributes", "TimeUnix", "Value"],
    )
    insert_sums(
        store,
        [("w.req", ml, {"code": "200"}, t - d, v) for d, v in zip((3.5, 2.5, 1.5, 0.5), (5, 7, 2, 4), strict=True)]
        + [("w.req", none, {"code": NASTY}, t - d, 100 + 2 * i) for i, d in enumerate((2.5, 1.5, 0.5))]
        + [("w.req", none, {"code": "500"}, t - 0.5, 1)]  # one point: no rate, as in PromQL
        + [("w.fast", ml, {}, t - 29.5 + i, 100 + 2.0 * i) for i in range(30)],
    )
    # Per-bucket counts [10, 20, 10, 0] added over the window on top of 100 earlier observations.
    start = [30, 40, 30, 0]
    insert_histograms(
        store,
        [
            ("w.lat", {"route": "a"}, t - 2.5, start),
            ("w.lat", {"route": "a"}, t - 1.5, [35, 50, 35, 0]),
            ("w.lat", {"route": "a"}, t - 0.5, [40, 60, 40, 0]),
        ],
    )
    return t


def read(store: Store, now: float, query: WindowQuery, source: Resolution | None = None) -> dict:
    return as_dict(window_values(store, query, now, CTX, source=source))


@pytest.mark.parametrize(
    ("function", "by_team"),
    [
        ("avg", {"ml": 3.0, "(none)": 9.0}),
        ("min", {"ml": 1.0, "(none)": 9.0}),
        ("max", {"ml": 5.0, "(none)": 9.0}),
        ("last", {"ml": 3.0, "(none)": 9.0}),
        ("count", {"ml": 3.0, "(none)": 1.0}),
    ],
)
def test_gauge_functions_by_hand(store: Store, now: float, function: str, by_team: dict[str, float]) -> None:
    got = read(store, now, WindowQuery("w.temp", "gauge", function, 10, group_by=("team",)))  # type: ignore[arg-type]
    assert got == {(("team", team),): value for team, value in by_team.items()}
    (everything,) = read(store, now, WindowQuery("w.temp", "gauge", function, 10)).values()  # type: ignore[arg-type]
    assert everything == {"avg": 4.5, "min": 1.0, "max": 9.0, "last": 3.0, "count": 4.0}[function]


def test_window_is_open_at_its_start(store: Store, now: float) -> None:
    # (now - 2, now]: the points 2.5 s before now are out, those 1.5 and 0.5 s before in.
    assert read(store, now, WindowQuery("w.temp", "gauge", "count", 2)) == {(): 4.0 - 1}
    assert read(store, now - 100, WindowQuery("w.temp", "gauge", "count", 10)) == {}


def test_increase_and_rate_detect_resets_and_extrapolate_as_prometheus(store: Store, now: float) -> None:
    # 5 → 7 → 2 (reset) → 4 over 3 s: increase 6; Prometheus extrapolates 0.5 s to each edge of the
    # 4 s window (the zero point, 2.5 s back, is further), so x 4/3: 8, and a rate of 2 per second.
    code_200 = (Matcher("code", "=", "200"),)
    assert read(store, now, WindowQuery("w.req", "sum", "increase", 4, code_200)) == {(): pytest.approx(8.0)}
    assert read(store, now, WindowQuery("w.req", "sum", "rate", 4, code_200)) == {(): pytest.approx(2.0)}
    # A 30 s window of 1 s points growing by 2 each: the right rate, not 29/30 of it.
    assert read(store, now, WindowQuery("w.fast", "sum", "rate", 30)) == {(): pytest.approx(2.0)}
    assert read(store, now, WindowQuery("w.req", "sum", "last", 10, code_200)) == {(): 4.0}


def test_group_by_keeps_odd_values_and_none_and_drops_single_points(store: Store, now: float) -> None:
    got = read(store, now, WindowQuery("w.req", "sum", "increase", 3, group_by=("code", "team")))
    # 100 → 104 over 2 s in a 3 s window: x 3/2. The "500" series has one point: no value, no group.
    assert got == {(("code", NASTY), ("team", "(none)")): pytest.approx(6.0), (("code", "200"), ("team", "ml")): 6.0}
    hostile = read(store, now, WindowQuery("w.req", "sum", "last", 10, (Matcher("code", "=", NASTY),)))
    assert hostile == {(): 104.0}
    assert store.query_rows(f"SELECT count() FROM {SUM} WHERE MetricName = 'w.req'")[0][0] == 8  # still there


def test_a_counter_that_starts_inside_the_window_counts_from_zero(store: Store, now: float) -> None:
    """OTLP's start time says when a cumulative series began: one that began inside the window rose
    from 0 there (an XID counter first read at 1), while one that began before it still needs two
    points, as Prometheus' increase over consecutive points does."""
    t = now + 1000  # clear of the other tests' points
    rows = [
        # (metric, attributes, start, [(seconds before t, value)])
        ("w.xid", {"xid": "79"}, t - 20, [(1, 1.0)]),  # first appears at 1, started 20 s ago
        ("w.xid", {"xid": "48"}, t - 500, [(1, 1.0)]),  # started long before: one point, no increase
        ("w.xid", {"xid": "13"}, t - 20, [(11, 2.0), (1, 5.0)]),  # started inside: 0 -> 2 -> 5
        ("w.xid", {"xid": "31"}, t - 500, [(11, 2.0), (1, 5.0)]),  # started before: 2 -> 5 only
    ]
    points = [(m, a, start, t - d, v) for m, a, start, pts in rows for d, v in pts]
    store.insert_columns(
        SUM,
        [
            [p[0] for p in points],
            [{"host.name": "n9"} for _ in points],
            [p[1] for p in points],
            [round(p[2] * S) for p in points],
            [round(p[3] * S) for p in points],
            [p[4] for p in points],
        ],
        ["MetricName", "ResourceAttributes", "Attributes", "StartTimeUnix", "TimeUnix", "Value"],
    )
    got = as_dict(window_values(store, WindowQuery("w.xid", "sum", "increase", 60, (), ("xid",)), t, CTX))
    # no extrapolation back past the start; forward to t over 1 s as Prometheus would (within 1.1 intervals)
    assert got[(("xid", "79"),)] == pytest.approx(1.0 * 20 / 19)
    assert (("xid", "48"),) not in got
    assert got[(("xid", "13"),)] == pytest.approx(5.0 * 20 / 19)
    # Prometheus: back towards its zero (2 / 3 of an interval at this slope), forward 1 s
    assert got[(("xid", "31"),)] == pytest.approx(3.0 * (10 + 1 + 10 * 2 / 3) / 10)
    rate = as_dict(window_values(store, WindowQuery("w.xid", "sum", "rate", 60, (), ("xid",)), t, CTX))
    assert rate[(("xid", "79"),)] == pytest.approx(1.0 * 20 / 19 / 60)


@pytest.mark.parametrize(
    ("matchers", "codes"),
    [
        ((Matcher("code", "=~", "2.*"),), {"200"}),
        ((Matcher("code", "=~", "0"),), set()),  # anchored: "0" does not match "200"
        ((Matcher("code", "!~", "[25]00"),), {NASTY}),
        ((Matcher("code", "!=", "200"),), {NASTY, "500"}),
        ((Matcher("team", "=", "ml"),), {"200"}),  # a resource attribute
        ((Matcher("team", "=", ""),), {NASTY, "500"}),  # a missing key reads as ""
        ((Matcher("team", "!=", "ml"), Matcher("code", "=~", ".*DROP.*")), {NASTY}),
    ],
)
def test_matchers(store: Store, now: float, matchers: tuple[Matcher, ...], codes: set[str]) -> None:
    got = read(store, now, WindowQuery("w.req", "sum", "last", 10, matchers, group_by=("code",)))
    assert {dict(k)["code"] for k in got} == codes


def test_histogram_functions_by_hand(store: Store, now: float) -> None:
    def one(function: str, **kw: float) -> float:
        (value,) = read(store, now, WindowQuery("w.lat", "histogram", function, 3, **kw)).values()  # type: ignore[arg-type]
        return value

    # Increases [10, 20, 10, 0] over 2 s, extrapolated x 3/2 to the 3 s window.
    assert one("count") == pytest.approx(60.0)
    assert one("le_count", le=0.5) == pytest.approx(45.0)
    assert one("le_count", le=math.inf) == pytest.approx(60.0)
    # Rank 20 of 40 lies in (0.1, 0.5], 10 of its 20: halfway, 0.3; the 0.99 rank is in (0.5, 1.0].
    assert one("quantile", quantile=0.5) == pytest.approx(0.3)
    assert one("quantile", quantile=0.99) == pytest.approx(0.5 + 0.5 * (39.6 - 30) / 10)
    with pytest.raises(QueryRejected, match=r"0\.3 is not a bucket bound.*\[0\.1, 0\.5, 1\.0\]"):
        one("le_count", le=0.3)
    last_seen = read(store, now, WindowQuery("w.lat", "histogram", "last_seen", 60, group_by=("route",)))
    assert last_seen == {(("route", "a"),): pytest.approx(now - 0.5)}


def test_a_histogram_without_observations_gives_no_quantile(store: Store, now: float) -> None:
    insert_histograms(store, [("w.idle", {}, now - d, [3, 0, 0, 0]) for d in (2.5, 1.5, 0.5)])
    assert read(store, now, WindowQuery("w.idle", "histogram", "quantile", 3, quantile=0.5)) == {}
    assert read(store, now, WindowQuery("w.idle", "histogram", "count", 3)) == {(): 0.0}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (WindowQuery("w.req", "sum", "avg", 10), "sum metrics answer"),
        (WindowQuery("w.lat", "histogram", "quantile", 10, quantile=1.5), "quantile"),
        (WindowQuery("w.lat", "histogram", "le_count", 10), "le_count needs"),
        (WindowQuery("w.req", "sum", "rate", 0), "positive"),
    ],
)
def test_bad_queries_are_refused_with_a_reason(store: Store, now: float, query: WindowQuery, message: str) -> None:
    with pytest.raises(QueryRejected, match=message):
        window_values(store, query, now, CTX)
    with pytest.raises(QueryRejected, match="whole number"):
        window_values(store, WindowQuery("w.req", "sum", "rate", 90), now, CTX, source=Resolution.MINUTE)


# -- rollups answer as raw rows do -------------------------------------------------------------------


def counter(rng: random.Random, times: list[float], resets_at: set[int]) -> list[float]:
    """A counter growing by random steps that restarts from a small value at the given indexes."""
    values, v = [], 50.0
    for i, _ in enumerate(times):
        v = rng.uniform(0, 3) if i in resets_at else v + rng.uniform(0, 20)
        values.append(v)
    return values


@pytest.fixture(scope="module")
def history(store: Store) -> float:
    """Three hours of points every 10 s (0.5 s off the edges), with resets, shuffled into blocks."""
    for table in (SUM_ROLLUP_1M, SUM_ROLLUP_1H, HISTOGRAM_ROLLUP_1M, HISTOGRAM_ROLLUP_1H):
        store.command(f"TRUNCATE TABLE {table}")
    rng = random.Random(9)
    end = (int(time.time()) // HOUR - 1) * HOUR
    times = [end - 3 * HOUR + 0.5 + 10 * i for i in range(3 * HOUR // 10)]
    per_minute = 6
    # 360 points an hour. Resets at most once an hour per series: inside a minute late in an hour (355,
    # 1000), on a minute's first point (600, 900), on an hour's first point (720); none regrows past
    # its value before the reset within that hour, the condition under which a rollup is exact.
    resets = {"a": {355, 100 * per_minute, 1000}, "b": {150 * per_minute}, "c": {120 * per_minute}}
    teams = {"a": {"team": "ml"}, "b": {"team": "ml"}, "c": {"team": NASTY}}
    sums, hists = [], []
    for name, reset in resets.items():
        values = counter(rng, times, reset)
        sums += [
            ("w.total", {"host.name": name, **teams[name]}, {"code": "200"}, t, v)
            for t, v in zip(times, values, strict=True)
        ]
        buckets = [0, 0, 0, 0]
        for i, t in enumerate(times):
            buckets = [0, 0, 0, 0] if i in reset else buckets
            buckets = [b + rng.randrange(4) for b in buckets]
            hists.append(("w.ttft", {"host": name, **teams[name]}, t, list(buckets)))
    rng.shuffle(sums)
    rng.shuffle(hists)
    insert_sums(store, sums)
    insert_histograms(store, hists)
    return float(end)


CUMULATIVE = [
    WindowQuery("w.total", "sum", "increase", HOUR),
    WindowQuery("w.total", "sum", "rate", HOUR, group_by=("team",)),
    WindowQuery("w.total", "sum", "last", HOUR, group_by=("host.name",)),
    WindowQuery("w.total", "sum", "increase", 2 * HOUR, (Matcher("team", "=~", "m."),), group_by=("host.name",)),
    WindowQuery("w.ttft", "histogram", "count", HOUR, group_by=("team",)),
    WindowQuery("w.ttft", "histogram", "le_count", 2 * HOUR, group_by=("host",), le=0.5),
    WindowQuery("w.ttft", "histogram", "quantile", HOUR, quantile=0.9),
    WindowQuery("w.ttft", "histogram", "quantile", 3 * HOUR, group_by=("host",), quantile=0.5),
]


@pytest.mark.parametrize("query", CUMULATIVE, ids=lambda q: f"{q.function}-{q.window_s}-{'.'.join(q.group_by)}")
def test_rollups_answer_as_raw_rows_do_across_resets(store: Store, history: float, query: WindowQuery) -> None:
    raw = read(store, history, query, Resolution.RAW)
    assert raw and all(v > 0 for v in raw.values())
    assert read(store, history, query) == pytest.approx(raw, rel=1e-9)  # chooses the minute rollup itself
    assert read(store, history, query, Resolution.MINUTE) == pytest.approx(raw, rel=1e-9)
    assert read(store, history, query, Resolution.HOUR) == pytest.approx(raw, rel=1e-9)


def test_a_rollup_read_at_an_unaligned_now_stays_close(store: Store, history: float) -> None:
    query = WindowQuery("w.total", "sum", "rate", HOUR)
    for offset in (1.0, 29.0, 59.0):
        (raw,) = read(store, history + offset, query, Resolution.RAW).values()
        (rollup,) = read(store, history + offset, query).values()
        assert rollup == pytest.approx(raw, rel=0.05)
