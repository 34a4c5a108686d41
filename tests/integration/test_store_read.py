"""The read layer against the real embedded store: rollups answer as raw rows do, latest values per GPU."""

import random
import time

import pytest

from vigil.store import Store, StoreQueryError
from vigil.store.plan import QueryRejected, Resolution
from vigil.store.read import AGGREGATES, NONE_LABEL, SeriesQuery, SeriesResult, latest_per_gpu, read_series
from vigil.store.schema import GAUGE, ROLLUP_1H, ROLLUP_1M, SchemaContext
from vigil.store.schema_history import GAUGE_HISTORY

CTX = SchemaContext()
HOUR = 3600
NASTY = "x'); DROP TABLE otel_metrics_gauge; --"
GPUS = [  # (uuid, index, resource attributes): two teams' GPUs, and one without a team
    ("GPU-a", "0", {"host.name": "n1", "team": "ml"}),
    ("GPU-b", "1", {"host.name": "n1", "team": "ml"}),
    ("GPU-c", "0", {"host.name": "n2"}),
    ("GPU-d", "0", {"host.name": "n3", "team": NASTY}),
]


def insert_points(store: Store, points: list[tuple[str, str, dict[str, str], dict[str, str], int, float]]) -> None:
    """(metric, uuid, resource, extra point attributes, time in ns, value) rows into the gauge table."""
    uuids = {uuid: (index, resource) for uuid, index, resource in GPUS}
    for chunk in range(0, len(points), 900):  # several blocks, so the rollups merge states
        part = points[chunk : chunk + 900]
        store.insert_columns(
            GAUGE,
            [
                [p[0] for p in part],
                [p[2] for p in part],
                [{"gpu.uuid": p[1], "gpu.index": uuids[p[1]][0], **p[3]} for p in part],
                [p[4] for p in part],
                [p[5] for p in part],
            ],
            ["MetricName", "ResourceAttributes", "Attributes", "TimeUnix", "Value"],
        )


@pytest.fixture(scope="module")
def loaded(store: Store) -> tuple[Store, int]:
    """Three hours of one point per 20 s per GPU, loaded once for the module's reads."""
    for table in (GAUGE, ROLLUP_1M, ROLLUP_1H, *GAUGE_HISTORY):
        store.command(f"TRUNCATE TABLE {table}")
    rng = random.Random(11)
    base = (int(time.time()) // HOUR - 4) * HOUR
    points = [
        ("gpu.utilization", uuid, resource, {}, (base + s) * 10**9 + i, rng.uniform(0, 100))
        for i, (uuid, _, resource) in enumerate(GPUS)
        for s in range(0, 3 * HOUR, 20)
    ]
    rng.shuffle(points)
    insert_points(store, points)
    return store, base


def as_dict(result: SeriesResult) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    return {tuple(sorted(s.labels.items())): s.points for s in result.series}


def assert_same(got: SeriesResult, want: SeriesResult) -> None:
    got_d, want_d = as_dict(got), as_dict(want)
    assert got_d.keys() == want_d.keys()
    for key, points in want_d.items():
        assert [t for t, _ in got_d[key]] == [t for t, _ in points]
        assert [v for _, v in got_d[key]] == pytest.approx([v for _, v in points], rel=1e-12)


@pytest.mark.parametrize("aggregate", AGGREGATES)
@pytest.mark.parametrize("group_by", [(), ("team",)])
def test_rollups_answer_as_raw_rows_do(loaded: tuple[Store, int], aggregate: str, group_by: tuple[str, ...]) -> None:
    store, base = loaded
    now = time.time()

    def read(source: Resolution, step: int) -> SeriesResult:
        query = SeriesQuery("gpu.utilization", base, base + 3 * HOUR, step, aggregate, group_by=group_by, source=source)
        return read_series(store, query, CTX, now)

    raw_hourly = read(Resolution.RAW, HOUR)
    assert len(raw_hourly.series) == (3 if group_by else 4) and all(len(s.points) == 3 for s in raw_hourly.series)
    assert_same(read(Resolution.MINUTE, HOUR), raw_hourly)
    assert_same(read(Resolution.HOUR, HOUR), raw_hourly)
    assert_same(read(Resolution.MINUTE, 300), read(Resolution.RAW, 300))


def test_grouping_keeps_series_without_the_attribute_and_binds_odd_values(loaded: tuple[Store, int]) -> None:
    store, base = loaded
    query = SeriesQuery("gpu.utilization", base, base + 3 * HOUR, HOUR, "count", group_by=("team",))
    counts = {s.labels["team"]: [v for _, v in s.points] for s in read_series(store, query, CTX, time.time()).series}
    assert counts == {"ml": [360.0] * 3, NONE_LABEL: [180.0] * 3, NASTY: [180.0] * 3}

    filtered = SeriesQuery("gpu.utilization", base, base + HOUR, HOUR, "count", filters={"team": NASTY})
    (only,) = read_series(store, filtered, CTX, time.time()).series
    assert only.labels["gpu.uuid"] == "GPU-d" and only.labels["team"] == NASTY
    assert store.query_rows(f"SELECT count() FROM {GAUGE}")[0][0] == 4 * 540  # the table is still there


def test_the_source_follows_step_and_range(loaded: tuple[Store, int]) -> None:
    store, base = loaded
    now = time.time()

    def source(start: int, step: int) -> Resolution:
        return read_series(store, SeriesQuery("gpu.utilization", start, base + 3 * HOUR, step), CTX, now).source

    assert source(base, 20) is Resolution.RAW
    assert source(base, 60) is Resolution.MINUTE
    assert source(base, HOUR) is Resolution.HOUR
    almost_90_days = read_series(store, SeriesQuery("gpu.utilization", int(now) - 89 * 86400, int(now), 10), CTX, now)
    assert almost_90_days.source is Resolution.MINUTE and almost_90_days.step % 60 == 0
    assert sum(len(s.points) for s in almost_90_days.series) == 4 * 3 * HOUR // almost_90_days.step
    past_the_1m_ttl = read_series(store, SeriesQuery("gpu.utilization", int(now) - 91 * 86400, int(now), 10), CTX, now)
    assert past_the_1m_ttl.source is Resolution.HOUR and past_the_1m_ttl.step % HOUR == 0


def test_too_large_an_answer_is_a_clear_error(loaded: tuple[Store, int]) -> None:
    store, base = loaded
    query = SeriesQuery("gpu.utilization", base, base + 3 * HOUR, 60)
    with pytest.raises(StoreQueryError, match="more than 10 rows"):
        read_series(store, query, CTX, time.time(), max_rows=10)
    with pytest.raises(QueryRejected, match="aggregate 'median'"):
        read_series(store, SeriesQuery("gpu.utilization", base, base + HOUR, 60, "median"), CTX, time.time())


def test_latest_per_gpu_keys_by_uuid_with_resource_and_keeps_mig_apart(store: Store) -> None:
    now = time.time()
    now_ns = int(now * 10**9)
    second = 10**9
    ml = GPUS[0][2]
    points = [
        ("t.util", "GPU-a", ml, {}, now_ns - 30 * second, 10.0),
        ("t.util", "GPU-a", ml, {}, now_ns - 5 * second, 55.0),  # the latest of GPU-a
        ("t.temp", "GPU-a", ml, {}, now_ns - 6 * second, 61.0),
        ("t.util", "GPU-a", ml, {"gpu.mig.uuid": "MIG-1"}, now_ns - 4 * second, 7.0),
        ("t.util", "GPU-b", ml, {}, now_ns - 3 * second, 99.0),
        ("t.util", "GPU-c", GPUS[2][2], {}, now_ns - 600 * second, 1.0),  # outside the window
        ("t.power", "GPU-c", GPUS[2][2], {}, now_ns - 1 * second, 300.0),  # a metric not asked for
    ]
    insert_points(store, points)

    gpus = latest_per_gpu(store, ["t.util", "t.temp"], now, window_s=120)
    assert [(g.uuid, g.mig_uuid) for g in gpus] == [("GPU-a", ""), ("GPU-a", "MIG-1"), ("GPU-b", "")]
    assert gpus[0].values == {"t.util": 55.0, "t.temp": 61.0}
    assert gpus[0].resource == {"host.name": "n1", "team": "ml"}
    assert gpus[0].attributes == {"gpu.uuid": "GPU-a", "gpu.index": "0"}
    assert gpus[0].time_ns == now_ns - 5 * second
    assert gpus[1].values == {"t.util": 7.0}

    wider = latest_per_gpu(store, ["t.util"], now, window_s=900, filters={"host.name": "n2"})
    assert [(g.uuid, g.values) for g in wider] == [("GPU-c", {"t.util": 1.0})]


def test_latest_per_gpu_labels_a_gpu_by_its_newest_point_and_its_own_labels(store: Store) -> None:
    now = time.time()
    now_ns = int(now * 10**9)
    second = 10**9
    ml, n2 = GPUS[0][2], GPUS[2][2]
    points = [
        ("t2.util", "GPU-b", ml, {}, now_ns - 2 * second, 50.0),
        ("t2.reason", "GPU-b", ml, {"reason": "thermal"}, now_ns - 2 * second, 1.0),  # same time, one more label
        ("t2.util", "GPU-c", {**n2, "team": "old"}, {}, now_ns - 30 * second, 5.0),
        ("t2.util", "GPU-c", {**n2, "team": "new"}, {}, now_ns - 3 * second, 6.0),  # relabelled since
    ]
    insert_points(store, points)

    gpus = latest_per_gpu(store, ["t2.util", "t2.reason"], now, window_s=120)
    assert [g.uuid for g in gpus] == ["GPU-b", "GPU-c"]
    b, c = gpus
    assert b.attributes == {"gpu.uuid": "GPU-b", "gpu.index": "1"} and b.resource == ml
    assert b.values == {"t2.util": 50.0, "t2.reason": 1.0} and b.time_ns == now_ns - 2 * second
    assert c.resource == {**n2, "team": "new"} and c.values == {"t2.util": 6.0}
    only_old = latest_per_gpu(store, ["t2.util"], now, window_s=120, filters={"team": "old"})
    assert [(g.uuid, g.resource["team"], g.values) for g in only_old] == [("GPU-c", "old", {"t2.util": 5.0})]


def test_query_readonly_refuses_writes(store: Store) -> None:
    result = store.query_readonly("SELECT {n:UInt8} AS n, 'x' AS s", {"n": 3})
    assert result.column_names == ("n", "s") and result.result_rows == [(3, "x")]
    for write in (
        f"INSERT INTO {GAUGE} (MetricName) VALUES ('m')",
        f"insert /* x */ -- y\n into {GAUGE} (MetricName) SELECT 'm'",
        f"WITH 1 AS a INSERT INTO {GAUGE} (MetricName) SELECT 'm'",
        f"ALTER TABLE {GAUGE} DELETE WHERE 1",
        f"TRUNCATE TABLE {GAUGE}",
    ):
        with pytest.raises(StoreQueryError, match="readonly"):
            store.query_readonly(write)
    # the shared client still writes afterwards (a leaked readonly=1 would stop every insert)
    store.insert_columns(GAUGE, [["t.after_readonly"], [time.time_ns()]], ["MetricName", "TimeUnix"])
    assert store.query_rows(f"SELECT count() FROM {GAUGE} WHERE MetricName = 't.after_readonly'") == [(1,)]
