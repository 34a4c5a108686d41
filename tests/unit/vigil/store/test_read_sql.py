"""The read layer's SQL: user values only ever as bound parameters, identifiers from the allow-list."""

import pytest

from vigil.store.plan import QueryRejected, Resolution, SeriesPlan
from vigil.store.read import AGGREGATES, SeriesQuery, latest_sql, series_sql
from vigil.store.schema import GAUGE, MINUTES, ROLLUP_1H, SUM

NASTY = "a'] OR 1=1) --; DROP TABLE otel_metrics_gauge"


@pytest.mark.parametrize("source", list(Resolution))
@pytest.mark.parametrize("aggregate", AGGREGATES)
def test_series_sql_binds_every_user_value(source: Resolution, aggregate: str) -> None:
    query = SeriesQuery(NASTY, 0, 3600, 3600, aggregate, filters={NASTY: NASTY, "team": "ml"}, group_by=(NASTY,))
    sql, params = series_sql(query, SeriesPlan(source, 3600, 0, 3600))
    assert NASTY not in sql and "ml" not in sql
    assert f"FROM {source.table}\n" in sql
    assert params["metric"] == NASTY and params["g0"] == NASTY
    assert {params["fk0"], params["fv0"], params["fk1"], params["fv1"]} == {NASTY, "team", "ml"}
    rollup_columns = any(c in sql for c in ("Sum", "Count", "Extremes", "Last"))
    assert rollup_columns == (source is not Resolution.RAW)


def test_each_source_reads_its_own_table() -> None:
    tables = {r: series_sql(SeriesQuery("m", 0, 60, 60), SeriesPlan(r, 60, 0, 60))[0] for r in Resolution}
    assert f"FROM {GAUGE}\n" in tables[Resolution.RAW]
    assert f"FROM {MINUTES}\n" in tables[Resolution.MINUTE]  # the rollup and the points that are their own minute
    assert f"FROM {ROLLUP_1H}\n" in tables[Resolution.HOUR]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (SeriesQuery("m", 0, 60, 60, "avg); DROP"), "aggregate"),
        (SeriesQuery("", 0, 60, 60), "metric must not be empty"),
        (SeriesQuery("m", 0, 60, 60, group_by=("",)), "must not be empty"),
        (SeriesQuery("m", 0, 60, 60, filters={f"k{i}": "v" for i in range(17)}), "at most 16 filters"),
    ],
)
def test_bad_series_queries_are_refused(query: SeriesQuery, message: str) -> None:
    with pytest.raises(QueryRejected, match=message):
        series_sql(query, SeriesPlan(Resolution.RAW, 60, 0, 60))


def test_latest_sql_binds_metrics_and_filters_and_allows_two_tables() -> None:
    sql, params = latest_sql([NASTY], 1, 2, {"team": NASTY}, SUM)
    assert NASTY not in sql and f"FROM {SUM}\n" in sql
    assert params["metrics"] == [NASTY] and params["fv0"] == NASTY
    with pytest.raises(QueryRejected, match="latest values come from"):
        latest_sql(["m"], 1, 2, {}, "system.users")
    with pytest.raises(QueryRejected, match="at least one metric"):
        latest_sql([], 1, 2, {})
