"""The pages' and the API's query parameters: each bad value is refused naming its parameter."""

import pytest

from dashboard.params import ParamError, parse_filters, parse_group_by, parse_range, parse_step, parse_window


def test_range_choices_and_default() -> None:
    assert parse_range(None) == 3600 and parse_range("30d") == 30 * 86_400
    with pytest.raises(ParamError, match=r"^range: '2h' is not one of 15m, 1h, 6h, 24h, 7d, 30d"):
        parse_range("2h")


def test_default_step_gives_a_chart_width_of_points_in_whole_minutes_past_one() -> None:
    assert parse_step(None, 900) == 10  # never finer than the agent samples
    assert parse_step(None, 6 * 3600) == 60
    assert parse_step(None, 7 * 86_400) == 1680 and parse_step(None, 7 * 86_400) % 60 == 0
    assert parse_step("15", 3600) == 15
    for bad in ("0", "-5", "1.5", "x"):
        with pytest.raises(ParamError, match=r"^step:"):
            parse_step(bad, 3600)


def test_window_from_range_or_explicit_times() -> None:
    w = parse_window("6h", None, None, now=100_000.0)
    assert (w.start, w.end, w.label) == (100_000.0 - 21_600, 100_000.0, "6h")
    w = parse_window(None, "50", "80", now=100_000.0)
    assert (w.start, w.end, w.label) == (50.0, 80.0, "custom")
    with pytest.raises(ParamError, match=r"^end: must be after start"):
        parse_window(None, "80", "50", now=100_000.0)
    with pytest.raises(ParamError, match=r"^start: 'now-1h' is not unix seconds"):
        parse_window(None, "now-1h", None, now=100_000.0)


def test_filters_and_group_by() -> None:
    assert parse_filters(["team=ml", "expr=a=b"]) == {"team": "ml", "expr": "a=b"}
    for bad in ("team", "=ml"):
        with pytest.raises(ParamError, match=r"^filter:"):
            parse_filters([bad])
    with pytest.raises(ParamError, match=r"^filter: at most 16"):
        parse_filters([f"k{i}=v" for i in range(17)])
    assert parse_group_by(["team,host.name", " gpu.index "]) == ("team", "host.name", "gpu.index")
