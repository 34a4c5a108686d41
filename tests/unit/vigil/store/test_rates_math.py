"""The pure parts of counter series: the per-step arithmetic and the SQL builder's bound parameters."""

from __future__ import annotations

import pytest

from vigil.store.plan import QueryRejected, Resolution
from vigil.store.rates import StepSummary, step_buckets, step_rates
from vigil.store.rates_sql import step_sql

NASTY = "x'); DROP TABLE otel_metrics_sum; --"


def step(
    bucket: int, first: float, last: float, first_t: float, last_t: float, increase: float, **kw: object
) -> StepSummary:
    return StepSummary(bucket, increase, first, last, first_t, last_t, 2, **kw)  # type: ignore[arg-type]


def test_rates_add_the_increase_since_the_step_before_over_the_time_since_its_last_point() -> None:
    steps = [
        step(0, 10, 20, 5, 55, 10),  # the lookback step: read, not answered
        step(60, 30, 50, 65, 115, 20),  # 20 → 30 between, 20 inside: 30 over 60 s
        step(120, 2, 8, 125, 175, 6),  # 50 → 2 is a reset: 2 from zero, then 6: 8 over 60 s
        step(300, 20, 40, 305, 355, 20),  # two steps missed: 12 + 20 over 180 s, not over 60
    ]
    assert step_rates(steps, 60) == [(60, 0.5), (120, pytest.approx(8 / 60)), (300, pytest.approx(32 / 180))]
    assert step_rates([StepSummary(60, 0, 5, 5, 70, 70, 1)], 60) == []  # one point, none before: no rate


def test_histogram_steps_take_bucket_increases_and_restart_from_zero_on_a_reset() -> None:
    bounds = (0.1, 1.0)
    before = step(
        0, 10, 10, 1, 1, 0, bounds=bounds, bucket_increases=(0, 0, 0), first_buckets=(4, 4, 2), last_buckets=(4, 4, 2)
    )
    grew = step(
        60,
        14,
        20,
        61,
        99,
        6,
        bounds=bounds,
        bucket_increases=(1, 2, 3),
        first_buckets=(5, 5, 4),
        last_buckets=(6, 7, 7),
    )
    reset = step(
        120,
        3,
        5,
        121,
        170,
        2,
        bounds=bounds,
        bucket_increases=(1, 1, 0),
        first_buckets=(1, 1, 1),
        last_buckets=(2, 2, 1),
    )
    got = step_buckets([before, grew, reset], 60)
    # 4 → 5 etc. between, then the increases inside; cumulative by upper bound, +Inf last.
    assert got[0] == (60, {0.1: 2.0, 1.0: 5.0, float("inf"): 10.0})
    # count 20 → 3 went down: the first point's counts are all new.
    assert got[1] == (120, {0.1: 2.0, 1.0: 4.0, float("inf"): 5.0})


def test_sql_binds_every_value_and_refuses_misaligned_steps() -> None:
    sql, params = step_sql("sum", NASTY, Resolution.MINUTE, 600, 1200, 60, {NASTY: NASTY}, (NASTY,))
    assert NASTY not in sql and "vigil_metrics_sum_1m" in sql
    assert params["metric"] == NASTY and params["fk0"] == NASTY and params["g0"] == NASTY
    raw, _ = step_sql("histogram", "m", Resolution.RAW, 600, 1200, 10, {}, None)
    assert "otel_metrics_histogram" in raw and "ResourceAttributes, Attributes" in raw
    with pytest.raises(QueryRejected, match="whole 1m buckets"):
        step_sql("sum", "m", Resolution.MINUTE, 600, 1200, 90, {}, None)
    with pytest.raises(QueryRejected, match="not sum or histogram"):
        step_sql("gauge", "m", Resolution.RAW, 600, 1200, 60, {}, None)  # type: ignore[arg-type]
