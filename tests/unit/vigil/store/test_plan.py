import pytest

from vigil.store.plan import DAY, MAX_POINTS, QueryRejected, Resolution, plan_series
from vigil.store.schema import SchemaContext

CTX = SchemaContext(raw_ttl_days=14, rollup_1m_ttl_days=90, rollup_1h_ttl_days=730)
NOW = 1_800_000_000.0
HOUR = 3600


@pytest.mark.parametrize(
    ("range_s", "step", "source", "planned_step"),
    [
        (HOUR, 10, Resolution.RAW, 10),
        (HOUR, 90, Resolution.RAW, 90),  # not a multiple of a minute: only raw rows bucket it exactly
        (HOUR, 60, Resolution.MINUTE, 60),
        (HOUR, 300, Resolution.MINUTE, 300),
        (DAY, HOUR, Resolution.HOUR, HOUR),
        (DAY, 1, Resolution.RAW, 8),  # raised to at most MAX_POINTS points
        (13 * DAY, 10, Resolution.MINUTE, 120),  # raw rows are kept, but 112,320 points are too many
        (90 * DAY, 10, Resolution.MINUTE, 720),  # a 90-day query never reads raw rows
        (90 * DAY, 3 * HOUR, Resolution.HOUR, 3 * HOUR),
        (91 * DAY, 60, Resolution.HOUR, HOUR),  # past the 1 m TTL
        (1000 * DAY, 60, Resolution.HOUR, 3 * HOUR),  # past every TTL: the longest kept source
    ],
)
def test_source_and_step_follow_range_step_and_ttls(
    range_s: int, step: int, source: Resolution, planned_step: int
) -> None:
    start = int(NOW) - range_s
    plan = plan_series(start, int(NOW), step, NOW, CTX)
    assert (plan.source, plan.step) == (source, planned_step)
    assert (plan.end - plan.start) / plan.step <= MAX_POINTS + 1
    assert plan.start % plan.step == 0 and plan.end % plan.step == 0
    assert plan.start <= start and plan.end >= int(NOW)


def test_raw_is_never_chosen_past_the_raw_ttl() -> None:
    for days in (15, 30, 90, 365):
        for step in (1, 10, 60, 600, HOUR):
            plan = plan_series(int(NOW) - days * DAY, int(NOW), step, NOW, CTX)
            assert plan.source is not Resolution.RAW


def test_a_forced_source_needs_a_step_its_buckets_divide() -> None:
    plan = plan_series(int(NOW) - HOUR, int(NOW), 300, NOW, CTX, source=Resolution.RAW)
    assert (plan.source, plan.step) == (Resolution.RAW, 300)
    with pytest.raises(QueryRejected, match="not a multiple of the 1m source"):
        plan_series(int(NOW) - HOUR, int(NOW), 90, NOW, CTX, source=Resolution.MINUTE)


@pytest.mark.parametrize(("start", "end", "step", "message"), [(10, 10, 5, "range is empty"), (0, 10, 0, "positive")])
def test_bad_ranges_are_refused(start: int, end: int, step: int, message: str) -> None:
    with pytest.raises(QueryRejected, match=message):
        plan_series(start, end, step, NOW, CTX)
