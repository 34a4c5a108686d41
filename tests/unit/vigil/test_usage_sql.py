"""The usage SQL builders bind every value the caller gives; only fixed words reach the SQL text."""

import pytest

from vigil.store.plan import QueryRejected, Resolution, SeriesPlan
from vigil.store.usage import UsageQuery, gpu_hours_sql, stacked_sql, top_gpus_sql, utilization_sql

NASTY = "x'); DROP TABLE otel_metrics_gauge; --"


@pytest.mark.parametrize("source", list(Resolution))
def test_caller_values_are_parameters(source: Resolution) -> None:
    q = UsageQuery(0, 7200, 3600, group_by=NASTY, filters={NASTY: NASTY}, idle_threshold=7.0)
    plan = SeriesPlan(source, 3600, 0, 7200)
    for sql, params in (
        utilization_sql(q, plan),
        gpu_hours_sql(q, plan),
        top_gpus_sql(q, plan, "idle"),
        stacked_sql(q, plan, "busy"),
    ):
        assert NASTY not in sql and "DROP" not in sql
        assert NASTY in params.values() and f"FROM {source.table}" in sql


def test_order_and_measure_are_checked() -> None:
    q, plan = UsageQuery(0, 7200, 3600), SeriesPlan(Resolution.RAW, 3600, 0, 7200)
    with pytest.raises(QueryRejected, match="order"):
        top_gpus_sql(q, plan, "DESC; DROP TABLE x")  # type: ignore[arg-type]
    with pytest.raises(QueryRejected, match="measure"):
        stacked_sql(q, plan, "max")  # type: ignore[arg-type]
