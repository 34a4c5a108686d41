from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from alerting.notify.mute import muted, parse_time_interval

BUSINESS_HOURS_BERLIN = {
    "name": "business",
    "time_intervals": [
        {"times": [{"start_time": "09:00", "end_time": "17:00"}], "weekdays": ["monday:friday"],
         "location": "Europe/Berlin"}
    ],
}  # fmt: skip


def ts(text: str, zone: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


@pytest.mark.parametrize(
    ("instant", "active"),
    [
        (ts("2024-03-29T08:30:00"), True),  # Friday 09:30 in Berlin (CET, UTC+1)
        (ts("2024-03-29T07:59:00"), False),  # 08:59 Berlin
        (ts("2024-04-01T07:30:00"), True),  # Monday after the spring DST change: 09:30 CEST (UTC+2)
        (ts("2024-04-01T06:30:00"), False),  # 08:30 CEST: the same UTC hour was inside the window in winter
        (ts("2024-03-30T10:00:00"), False),  # Saturday
        (ts("2024-03-29T16:00:00"), False),  # 17:00 Berlin: the end is excluded
        (ts("2024-10-28T16:30:00"), False),  # after the autumn change: 17:30 CET
        (ts("2024-10-25T14:30:00"), True),  # before it: 16:30 CEST
    ],
)
def test_time_interval_in_an_iana_zone_across_dst(instant: float, active: bool) -> None:
    assert parse_time_interval(BUSINESS_HOURS_BERLIN).active(instant) is active


@pytest.mark.parametrize(
    ("spec", "instant", "active"),
    [
        ({"days_of_month": ["-1"]}, ts("2024-02-29T12:00:00"), True),  # last day of a leap February
        ({"days_of_month": ["-1"]}, ts("2024-02-28T12:00:00"), False),
        ({"days_of_month": ["1:7"], "months": ["january", "july:august"]}, ts("2024-07-03T00:00:00"), True),
        ({"months": ["3"]}, ts("2024-07-03T00:00:00"), False),
        ({"years": ["2023:2024"]}, ts("2024-07-03T00:00:00"), True),
        ({"times": [{"start_time": "22:00", "end_time": "24:00"}], "location": "America/New_York"},
         ts("2024-07-04T02:30:00"), True),  # 22:30 the evening before in New York
    ],
)  # fmt: skip
def test_time_interval_fields(spec: dict, instant: float, active: bool) -> None:
    assert parse_time_interval({"name": "x", "time_intervals": [spec]}).active(instant) is active


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"location": "Mars/Olympus"}, "IANA"),
        ({"weekdays": ["funday"]}, "funday"),
        ({"times": [{"start_time": "17:00", "end_time": "09:00"}]}, "before end_time"),
        ({"times": [{"start_time": "9", "end_time": "10:00"}]}, "HH:MM"),
        ({"month": ["may"]}, "unknown"),
    ],
)
def test_bad_time_intervals_say_why(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_time_interval({"name": "x", "time_intervals": [spec]})


def test_mute_and_active_intervals_of_a_route() -> None:
    intervals = {"business": parse_time_interval(BUSINESS_HOURS_BERLIN)}
    inside, outside = ts("2024-03-29T08:30:00"), ts("2024-03-30T10:00:00")
    assert muted(intervals, ["business"], [], inside) == "mute_time_interval business"
    assert muted(intervals, ["business"], [], outside) is None
    assert muted(intervals, [], ["business"], outside) == "outside active_time_intervals"
    assert muted(intervals, [], ["business"], inside) is None
