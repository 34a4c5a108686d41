"""Counter rates, histogram quantiles and counter ratios per step against the real embedded store:
by hand across resets and gaps, and raw rows against the rollups over hours of shuffled points."""

from __future__ import annotations

import random
import time

import pytest

from vigil.store import Store
from vigil.store.plan import QueryRejected, Resolution
from vigil.store.rates import CounterQuery, read_quantiles, read_rates, read_ratio
from vigil.store.read import SeriesResult
from vigil.store.schema import HISTOGRAM, SUM, SchemaContext

CTX = SchemaContext()
HOUR = 3600
S = 10**9
NASTY = "x'); DROP TABLE otel_metrics_sum; --"
BOUNDS = [0.1, 0.5, 1.0]
T = (int(time.time()) // HOUR - 2) * HOUR  # hand-made data: three minutes from T, one point before it
NOW = T + HOUR


def insert_sums(store: Store, rows: list[tuple[str, dict[str, str], dict[str, str], float, float]]) -> None:
    """(metric, resource, attributes, unix seconds, value), in blocks of 500 (the rollups merge states)."""
    for i in range(0, len(rows), 500):
        part = rows[i : i + 500]
        columns = [[r[0] for r in part], [r[1] for r in part], [r[2] for r in part]]
        columns += [[round(r[3] * S) for r in part], [r[4] for r in part]]
        store.insert_columns(SUM, columns, ["MetricName", "ResourceAttributes", "Attributes", "TimeUnix", "Value"])


def insert_histograms(store: Store, rows: list[tuple[str, dict[str, str], float, list[int]]]) -> None:
    """(metric, attributes, unix seconds, per-bucket counts over BOUNDS), in blocks of 500."""
    for i in range(0, len(rows), 500):
        part = rows[i : i + 500]
        store.insert_columns(
            HISTOGRAM,
            [
                [r[0] for r in part],
                [{"host.name": r[1].get("host", "n1")} for r in part],
                [r[1] for r in part],
                [round(r[2] * S) for r in part],
                [sum(r[3]) for r in part],
                [0.0 for _ in part],
                [r[3] for r in part],
                [BOUNDS for _ in part],
            ],
            [
                "MetricName",
                "ResourceAttributes",
                "Attributes",
                "TimeUnix",
                "Count",
                "Sum",
                "BucketCounts",
                "ExplicitBounds",
            ],
        )


def points(result: SeriesResult) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    return {tuple(sorted(s.labels.items())): s.points for s in result.series}


@pytest.fixture(scope="module")
def by_hand(store: Store) -> None:
    ml = {"team": "ml", "host.name": "a"}
    # k.req, host a: 100 before T; 110, 130, 150 | 160, 5 (reset), 25 | 45, 45, 65 at 20 s apart from T+5.
    a_times = [-15, 5, 25, 45, 65, 85, 105, 125, 145, 165]
    a_values = [100, 110, 130, 150, 160, 5, 25, 45, 45, 65]
    rows = [("k.req", ml, {"code": "200"}, T + d, float(v)) for d, v in zip(a_times, a_values, strict=True)]
    # host b, also team ml: 1 a second, no point in the middle minute (a gap the agent missed).
    b = {"team": "ml", "host.name": "b"}
    rows += [("k.req", b, {"code": NASTY}, T + d, float(d + 15)) for d in (-15, 5, 45, 165)]
    rows += [("k.fresh", {}, {}, T + d, float(v)) for d, v in ((5, 0), (25, 10), (45, 30), (105, 90))]
    insert_sums(store, rows)
    # k.lat: zero before T; bucket 0 adds [10, 30, 30, 0]; bucket 1 resets, then adds [1, 2, 2, 1] on [1, 1, 0, 0].
    insert_histograms(
        store,
        [
            ("k.lat", {"route": "r"}, T - 15, [0, 0, 0, 0]),
            ("k.lat", {"route": "r"}, T + 10, [10, 20, 10, 0]),
            ("k.lat", {"route": "r"}, T + 50, [10, 30, 30, 0]),
            ("k.lat", {"route": "r"}, T + 70, [1, 1, 0, 0]),
            ("k.lat", {"route": "r"}, T + 110, [2, 3, 2, 1]),
            ("k.lat", {"route": "r", "host": "n2"}, T - 15, [0, 0, 0, 0]),
            ("k.lat", {"route": "r", "host": "n2"}, T + 30, [0, 0, 0, 20]),
        ],
    )
    # k.done per engine: stop grows 9 and error 1 every 20 s on vllm; tgi has no error series at all;
    # sglang answers nothing in the last minute (its counter is flat: a zero denominator).
    done = []
    for i, d in enumerate(range(-15, 180, 20)):
        done.append(("k.done", {}, {"engine": "vllm", "outcome": "stop"}, T + d, 9.0 * i))
        done.append(("k.done", {}, {"engine": "vllm", "outcome": "error"}, T + d, 1.0 * i))
        done.append(("k.done", {}, {"engine": "tgi", "outcome": "stop"}, T + d, 4.0 * i))
        done.append(("k.done", {}, {"engine": "sglang", "outcome": "stop"}, T + d, 2.0 * min(i, 6)))
    insert_sums(store, done)


def q(metric: str, step: int = 60, **kw: object) -> CounterQuery:
    return CounterQuery(metric, T, T + 180, step, source=kw.pop("source", Resolution.RAW), **kw)  # type: ignore[arg-type]


def test_rates_across_a_reset_and_a_gap_by_hand(store: Store, by_hand: None) -> None:
    got = points(read_rates(store, q("k.req", filters={"host.name": "a"}), CTX, NOW))
    ((labels, series),) = got.items()
    assert dict(labels) == {"team": "ml", "host.name": "a", "code": "200"}  # all its attributes
    # Bucket 0: 150 - 100 since the point before T, over 60 s. Bucket 1: 150 → 160, then the reset
    # counts 5 (from zero), then 20: 35. Bucket 2: 20 + 0 + 20.
    assert series == [(T, pytest.approx(50 / 60)), (T + 60, pytest.approx(35 / 60)), (T + 120, pytest.approx(40 / 60))]
    # Host b missed the middle minute: no point there, and the next one is the true 1/s, not 2/s.
    b = points(read_rates(store, q("k.req", filters={"code": NASTY}), CTX, NOW))
    assert list(b.values()) == [[(T, pytest.approx(1.0)), (T + 120, pytest.approx(1.0))]]
    grouped = points(read_rates(store, q("k.req", group_by=("team",)), CTX, NOW))
    assert grouped == {
        (("team", "ml"),): [
            (T, pytest.approx(50 / 60 + 1)),
            (T + 60, pytest.approx(35 / 60)),
            (T + 120, pytest.approx(40 / 60 + 1)),
        ]
    }
    assert read_rates(store, q("k.none"), CTX, NOW).series == []


def test_the_first_bucket_takes_the_point_before_the_range_or_else_its_own(store: Store, by_hand: None) -> None:
    # From T + 60 on: the minute before the range is read too, so the first bucket has 150 before it.
    query = CounterQuery("k.req", T + 60, T + 180, 60, {"host.name": "a"}, source=Resolution.RAW)
    ((_, series),) = points(read_rates(store, query, CTX, NOW)).items()
    assert series == [(T + 60, pytest.approx(35 / 60)), (T + 120, pytest.approx(40 / 60))]
    # From T - 60: a lone point and nothing before it gives nothing; the next bucket has it before.
    early = CounterQuery("k.req", T - 60, T + 60, 60, {"host.name": "a"}, source=Resolution.RAW)
    ((_, series),) = points(read_rates(store, early, CTX, NOW)).items()
    assert series == [(T, pytest.approx(50 / 60))]
    # A counter first seen inside the range: its own first to last point, 30 over 40 s.
    ((_, series),) = points(read_rates(store, q("k.fresh"), CTX, NOW)).items()
    assert series == [(T, pytest.approx(0.75)), (T + 60, pytest.approx(1.0))]


def hand_quantile(q_: float, cumulative: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile, written out for the test's buckets: (le, cumulative count)."""
    total = cumulative[-1][1]
    rank = q_ * total
    lower, below = 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    raise AssertionError("unreachable")


def test_quantiles_equal_histogram_quantile_by_hand(store: Store, by_hand: None) -> None:
    inf = float("inf")
    # Route r on n1, bucket 0: [10, 30, 30, 0] since the zero before T → cumulative 10, 40, 70, 70.
    bucket0 = [(0.1, 10.0), (0.5, 40.0), (1.0, 70.0), (inf, 70.0)]
    # Bucket 1: the reset at T + 70 counts [1, 1, 0, 0] from zero, then [1, 2, 2, 1] more → 2, 5, 7, 8.
    bucket1 = [(0.1, 2.0), (0.5, 5.0), (1.0, 7.0), (inf, 8.0)]
    for quantile in (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
        got = points(read_quantiles(store, q("k.lat", filters={"host.name": "n1"}, quantile=quantile), CTX, NOW))
        ((labels, series),) = got.items()
        assert dict(labels)["route"] == "r"
        expected = [(T, hand_quantile(quantile, bucket0)), (T + 60, hand_quantile(quantile, bucket1))]
        assert series == [(t, pytest.approx(v)) for t, v in expected]
    assert hand_quantile(0.5, bucket0) == pytest.approx(0.1 + 0.4 * (35 - 10) / 30)  # the helper itself
    assert hand_quantile(0.99, bucket1) == 1.0  # a rank in +Inf: the highest finite bound, as Prometheus
    # Grouped, n2's 20 observations over 1.0 in bucket 0 add up by upper bound (`sum by (le)`).
    grouped = points(read_quantiles(store, q("k.lat", group_by=("route",), quantile=0.5), CTX, NOW))
    both = [(0.1, 10.0), (0.5, 40.0), (1.0, 70.0), (inf, 90.0)]
    assert grouped == {
        (("route", "r"),): [(T, pytest.approx(hand_quantile(0.5, both))), (T + 60, pytest.approx(0.1 + 0.4 * 2 / 3))]
    }
    # No observation in the last minute: no point there, rather than a made-up latency.
    assert all(t < T + 120 for series in grouped.values() for t, _ in series)


def test_ratio_of_error_rate_to_request_rate(store: Store, by_hand: None) -> None:
    errors = q("k.done", filters={"outcome": "error"}, group_by=("engine",))
    total = q("k.done", group_by=("engine",))
    got = points(read_ratio(store, errors, total, CTX, NOW))
    assert got[(("engine", "vllm"),)] == [(t, pytest.approx(0.1)) for t in (T, T + 60, T + 120)]
    assert got[(("engine", "tgi"),)] == [(t, 0.0) for t in (T, T + 60, T + 120)]  # no error series: none failed
    # sglang's counter stopped moving after T + 105: no ratio where it finished nothing (0/0).
    assert [t for t, _ in got[(("engine", "sglang"),)]] == [T, T + 60]
    # Ungrouped, a ratio is one series over everything; the denominator may be another counter.
    (overall,) = read_ratio(store, q("k.done", filters={"outcome": "error"}), q("k.done"), CTX, NOW).series
    assert overall.labels == {} and overall.points[0] == (T, pytest.approx(3 / (30 + 12 + 6)))
    assert read_ratio(store, q("k.req", group_by=("team",)), q("k.none", group_by=("team",)), CTX, NOW).series == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: read_quantiles(s, q("k.lat", quantile=1.5), CTX, NOW), r"quantile must be in \[0, 1\]"),
        (lambda s: read_quantiles(s, q("k.lat"), CTX, NOW), "needs `quantile`"),
        (lambda s: read_rates(s, q("k.req", quantile=0.5), CTX, NOW), "no quantile"),
        (lambda s: read_ratio(s, q("k.done"), q("k.done", step=120), CTX, NOW), "must share"),
        (lambda s: read_rates(s, q("k.req", step=90, source=Resolution.MINUTE), CTX, NOW), "not a multiple"),
        (lambda s: read_rates(s, q(""), CTX, NOW), "metric must not be empty"),
        (lambda s: read_rates(s, q("k.req", group_by=("",)), CTX, NOW), "must not be empty"),
    ],
)
def test_bad_reads_are_refused_with_a_reason(store: Store, by_hand: None, call: object, message: str) -> None:
    with pytest.raises(QueryRejected, match=message):
        call(store)  # type: ignore[operator]


# -- raw rows and rollups agree ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history(store: Store) -> int:
    """Three hours of points every 10 s (0.5 s off the edges), with resets, shuffled into blocks.

    Resets at most once an hour per series, none regrowing past the value before it within that hour:
    the condition under which a rollup's increase is exact (see `vigil.store.window`)."""
    rng = random.Random(11)
    end = (int(time.time()) // HOUR - 1) * HOUR
    times = [end - 3 * HOUR + 0.5 + 10 * i for i in range(3 * HOUR // 10)]
    resets = {"a": {355, 600, 1000}, "b": {900}, "c": {720}}
    teams = {"a": "ml", "b": "ml", "c": NASTY}
    sums, hists = [], []
    for host, reset in resets.items():
        total, errors, buckets = 50.0, 5.0, [0, 0, 0, 0]
        for i, t in enumerate(times):
            if i in reset:
                total, errors, buckets = rng.uniform(0, 3), 0.0, [0, 0, 0, 0]
            else:
                step_errors = rng.uniform(0, 2)
                total, errors = total + step_errors + rng.uniform(0, 18), errors + step_errors
            buckets = [b + rng.randrange(4) for b in buckets]
            resource = {"host.name": host, "team": teams[host]}
            sums += [
                ("h.done", resource, {"outcome": "all"}, t, total),
                ("h.done", resource, {"outcome": "error"}, t, errors),
            ]
            hists.append(("h.lat", {"host": host, "team": teams[host]}, t, list(buckets)))
    rng.shuffle(sums)
    rng.shuffle(hists)
    insert_sums(store, sums)
    insert_histograms(store, hists)
    return end


READS = {
    "rate": lambda s, q_: read_rates(s, q_, CTX, q_.end + HOUR),
    "rate-by-team": lambda s, q_: read_rates(s, _by(q_, ("team",)), CTX, q_.end + HOUR),
    "p50": lambda s, q_: read_quantiles(s, _lat(q_, None, 0.5), CTX, q_.end + HOUR),
    "p99-by-team": lambda s, q_: read_quantiles(s, _lat(q_, ("team",), 0.99), CTX, q_.end + HOUR),
    "error-ratio-by-host": lambda s, q_: read_ratio(
        s, _by(_only(q_, "error"), ("host.name",)), _by(_only(q_, "all"), ("host.name",)), CTX, q_.end + HOUR
    ),
}


def _by(query: CounterQuery, group_by: tuple[str, ...]) -> CounterQuery:
    return CounterQuery(query.metric, query.start, query.end, query.step, query.filters, group_by, source=query.source)


def _only(query: CounterQuery, outcome: str) -> CounterQuery:
    return CounterQuery(query.metric, query.start, query.end, query.step, {"outcome": outcome}, source=query.source)


def _lat(query: CounterQuery, group_by: tuple[str, ...] | None, quantile: float) -> CounterQuery:
    return CounterQuery("h.lat", query.start, query.end, query.step, {}, group_by, quantile, query.source)


@pytest.mark.parametrize("read", list(READS), ids=list(READS))
@pytest.mark.parametrize(
    ("step", "rollups"), [(HOUR, (Resolution.MINUTE, Resolution.HOUR)), (600, (Resolution.MINUTE,))]
)
def test_rollups_answer_as_raw_rows_do_across_resets(
    store: Store, history: int, read: str, step: int, rollups: tuple[Resolution, ...]
) -> None:
    def run(source: Resolution) -> dict:
        query = CounterQuery("h.done", history - 3 * HOUR, history, step, {"outcome": "all"}, source=source)
        return points(READS[read](store, query))

    raw = run(Resolution.RAW)
    assert raw and all(len(series) == 3 * HOUR // step for series in raw.values())
    for source in rollups:
        got = run(source)
        assert got.keys() == raw.keys()
        for key, series in raw.items():
            assert [t for t, _ in got[key]] == [t for t, _ in series]
            assert [v for _, v in got[key]] == pytest.approx([v for _, v in series], rel=1e-9)
