"""The history routes' one parameter parser: defaults, ISO times, and errors that name the parameter."""

import pytest
from starlette.datastructures import QueryParams

from dashboard.history_params import DAY, ParamError, default_step, query_string, usage_query

NOW = 1_800_000_000


def parse(qs: str):  # type: ignore[no-untyped-def]
    return usage_query(QueryParams(qs), NOW)


def test_defaults_are_the_last_week_by_team() -> None:
    q = parse("")
    assert (q.start, q.end, q.group_by, q.idle_threshold, q.top) == (NOW - 7 * DAY, NOW, "team", 5.0, 10)
    assert q.step == 3600 and dict(q.filters) == {}


def test_presets_iso_times_and_filters() -> None:
    q = parse("range=30d&group_by=k8s.cluster.name&filter=team=ml&filter=gpu.model=H100=80GB&filter=")
    assert q.end - q.start == 30 * DAY and q.group_by == "k8s.cluster.name"
    assert dict(q.filters) == {"team": "ml", "gpu.model": "H100=80GB"}  # the first = splits key from value
    q = parse("start=2025-01-01&end=2025-01-02T00:00:00%2B01:00")
    assert (q.start, q.end) == (1_735_689_600, 1_735_772_400)


def test_the_default_step_keeps_a_few_hundred_points() -> None:
    assert default_step(DAY) == 300 and default_step(90 * DAY) == 43_200 and default_step(10_000 * DAY) == DAY


@pytest.mark.parametrize(
    ("qs", "named"),
    [
        ("range=2w", "range"),
        ("start=tomorrow", "start"),
        ("start=100&end=50", "end"),
        ("start=0&end=100000000", "start"),
        ("step=-5", "step"),
        ("step=1.5", "step"),
        ("filter==x", "filter"),
        ("idle_threshold=abc", "idle_threshold"),
        ("idle_threshold=-1", "idle_threshold"),
        ("n=100000", "n"),
        ("group_by=%20", "group_by"),
    ],
)
def test_bad_values_name_their_parameter(qs: str, named: str) -> None:
    with pytest.raises(ParamError, match=f"^{named}:"):
        parse(qs)


def test_the_query_string_asks_the_same_again() -> None:
    q = parse("start=1000&end=90000&step=600&group_by=host.name&filter=team=a%26b&idle_threshold=7.5&n=3")
    assert usage_query(QueryParams(query_string(q)), NOW) == q
