"""Usage queries against the real embedded store: both rollups answer as raw rows do, and raw rows
answer as the module's rules computed in Python say; the source follows the range; `(none)` is kept."""

from __future__ import annotations

import time

import pytest

from tests.integration.usage_fleet import DAY, DAYS, HOUR, NASTY, Point, expected, fleet, insert
from vigil.store import Store
from vigil.store.plan import QueryRejected, Resolution
from vigil.store.read import NONE_LABEL
from vigil.store.schema import GAUGE, ROLLUP_1H, ROLLUP_1M, SchemaContext
from vigil.store.schema_history import GAUGE_HISTORY
from vigil.store.usage import UsageQuery, choose_source, gpu_hours, series, top_gpus, utilization

CTX = SchemaContext()
ROLLUPS = (Resolution.MINUTE, Resolution.HOUR)


@pytest.fixture(scope="module")
def loaded(store: Store) -> tuple[Store, int, list[Point]]:
    for table in (GAUGE, ROLLUP_1M, ROLLUP_1H, *GAUGE_HISTORY):
        store.command(f"TRUNCATE TABLE {table}")
    base = (int(time.time()) // DAY - DAYS - 1) * DAY  # inside the raw TTL, so every source holds it
    points = fleet(base)
    insert(store, points)
    return store, base, points


def ask(base: int, step: int = HOUR, source: Resolution | None = None, **kw: object) -> UsageQuery:
    return UsageQuery(base, base + DAYS * DAY, step, source=source, **kw)  # type: ignore[arg-type]


def hours_by_group(store: Store, q: UsageQuery) -> dict[str, tuple[float, float, float, int]]:
    return {next(iter(h.labels.values())): (h.allocated_h, h.busy_h, h.idle_h, h.gpus) for h in gpu_hours(store, q)}


@pytest.mark.parametrize("group_by", ["team", "gpu.model"])
@pytest.mark.parametrize("step", [HOUR, 2 * HOUR])
def test_raw_rows_answer_as_the_rules_say(loaded: tuple[Store, int, list[Point]], group_by: str, step: int) -> None:
    store, base, points = loaded
    want = expected(points, group_by, step)
    q = ask(base, step, Resolution.RAW, group_by=group_by)
    got = {s.labels[group_by]: s.points for s in utilization(store, q).series}
    assert got.keys() == want["series"].keys()  # type: ignore[union-attr]
    for g, pts in want["series"].items():  # type: ignore[union-attr]
        assert [t for t, _ in got[g]] == [t for t, _ in pts]
        assert [v for _, v in got[g]] == pytest.approx([v for _, v in pts], rel=1e-9)
    hours = hours_by_group(store, q)
    assert hours.keys() == want["hours"].keys()  # type: ignore[union-attr]
    for g, (allocated, busy, idle, gpus) in want["hours"].items():  # type: ignore[union-attr]
        assert hours[g] == (pytest.approx(allocated), pytest.approx(busy, rel=1e-9), pytest.approx(idle), gpus)


@pytest.mark.parametrize("source", ROLLUPS)
@pytest.mark.parametrize("group_by", ["team", "k8s.cluster.name", "host.name"])
def test_rollups_answer_as_raw_rows_do(
    loaded: tuple[Store, int, list[Point]], source: Resolution, group_by: str
) -> None:
    store, base, _ = loaded
    raw, rolled = ask(base, source=Resolution.RAW, group_by=group_by), ask(base, source=source, group_by=group_by)
    for measure in ("avg", "busy", "allocated"):
        want = {s.labels[group_by]: s.points for s in series(store, raw, measure).series}  # type: ignore[arg-type]
        got = {s.labels[group_by]: s.points for s in series(store, rolled, measure).series}  # type: ignore[arg-type]
        assert got.keys() == want.keys()
        for g, pts in want.items():
            assert [t for t, _ in got[g]] == [t for t, _ in pts]
            assert [v for _, v in got[g]] == pytest.approx([v for _, v in pts], rel=1e-9)
    want_h, got_h = hours_by_group(store, raw), hours_by_group(store, rolled)
    assert got_h.keys() == want_h.keys()
    for g, row in want_h.items():
        assert got_h[g] == pytest.approx(row, rel=1e-9)
    for order in ("idle", "hot"):
        want_t, got_t = top_gpus(store, raw, order), top_gpus(store, rolled, order)  # type: ignore[arg-type]
        assert [g.uuid for g in got_t] == [g.uuid for g in want_t]
        for a, b in zip(got_t, want_t, strict=True):
            assert (a.host, a.labels, a.hours, a.idle_h) == (b.host, b.labels, b.hours, b.idle_h)
            assert (a.avg_utilization, a.busy_h) == pytest.approx((b.avg_utilization, b.busy_h), rel=1e-9)


def test_a_gpu_without_the_attribute_is_its_own_group(loaded: tuple[Store, int, list[Point]]) -> None:
    store, base, _ = loaded
    hours = hours_by_group(store, ask(base))
    assert hours[NONE_LABEL][3] == 1  # GPU-c0 has no team
    assert hours[NASTY][3] == 1  # a hostile team name is a value like any other
    assert sum(h[3] for h in hours.values()) == 6
    # an attribute no GPU has: every GPU lands in (none), none is dropped
    odd = hours_by_group(store, ask(base, group_by="x'); DROP TABLE otel_metrics_gauge; --"))
    assert list(odd) == [NONE_LABEL] and odd[NONE_LABEL][3] == 6


def test_idle_hours_and_the_late_gpu(loaded: tuple[Store, int, list[Point]]) -> None:
    store, base, points = loaded
    hours = hours_by_group(store, ask(base))
    assert hours["infra"][0] == DAYS * 24 + DAYS * 24 - 30  # GPU-b1 joined at hour 30
    peak: dict[tuple[str, int], float] = {}
    for p in points:  # the fleet makes each GPU-hour all idle (under 3 %) or all busy (20 % and up)
        peak[(p.uuid, p.t // HOUR)] = max(peak.get((p.uuid, p.t // HOUR), 0.0), p.value)
    idle = sum(1 for v in peak.values() if v < 5)
    assert idle > 0
    assert sum(h[2] for h in hours.values()) == pytest.approx(idle)


def test_filters_and_top(loaded: tuple[Store, int, list[Point]]) -> None:
    store, base, points = loaded
    q = ask(base, filters={"k8s.cluster.name": "west"}, top=2)
    assert set(hours_by_group(store, q)) == {"infra", NONE_LABEL}
    means = {
        u: sum(v for v in vals) / len(vals)
        for u in {p.uuid for p in points}
        for vals in [[p.value for p in points if p.uuid == u]]
    }
    west = sorted((m, u) for u, m in means.items() if u in ("GPU-b0", "GPU-b1", "GPU-c0"))
    idle = top_gpus(store, q, "idle")
    assert [g.uuid for g in idle] == [u for _, u in west[:2]]
    assert [g.avg_utilization for g in idle] == pytest.approx([m for m, _ in west[:2]], rel=1e-9)
    assert [g.uuid for g in top_gpus(store, q, "hot")] == [u for _, u in reversed(west)][:2]
    assert all(g.host == "n2" for g in idle if g.uuid.startswith("GPU-b"))


def test_the_source_follows_the_range_and_step() -> None:
    now = float(1_800_000_000)
    start = int(now) - 2 * DAY
    assert choose_source(UsageQuery(start, int(now), 30), now=now) is Resolution.RAW
    assert choose_source(UsageQuery(start, int(now), 60), now=now) is Resolution.MINUTE
    assert choose_source(UsageQuery(start, int(now), 3600), now=now) is Resolution.HOUR
    # 90 days: raw rows are gone past their 14-day TTL, and 11,000 points a series need a coarser step
    ninety = UsageQuery(int(now) - 90 * DAY, int(now), 60)
    assert choose_source(ninety, now=now) is not Resolution.RAW
    assert choose_source(UsageQuery(int(now) - 200 * DAY, int(now), 60), now=now) is Resolution.HOUR
    with pytest.raises(QueryRejected, match="idle_threshold"):
        choose_source(UsageQuery(start, int(now), 60, idle_threshold=120), now=now)
    with pytest.raises(QueryRejected, match="group_by"):
        choose_source(UsageQuery(start, int(now), 60, group_by=""), now=now)
