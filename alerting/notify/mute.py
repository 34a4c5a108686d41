"""Mute time intervals, as Alertmanager's `time_intervals`: times, weekdays, days of month, months, years,
each in an IANA location.

An interval is active at an instant when any of its specs holds; a spec holds when every field it
gives holds for the instant's wall-clock time in its location (so 09:00-17:00 Europe/Berlin stays
09:00-17:00 local across a DST change). Times are [start, end): start included, end excluded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip


@dataclass(frozen=True)
class TimeSpec:
    times: tuple[tuple[int, int], ...] = ()  # minutes since local midnight, [start, end)
    weekdays: tuple[tuple[int, int], ...] = ()  # 0 = Monday, inclusive ranges
    days_of_month: tuple[tuple[int, int], ...] = ()  # 1..31 or -31..-1 (from the month's end), inclusive
    months: tuple[tuple[int, int], ...] = ()  # 1..12, inclusive
    years: tuple[tuple[int, int], ...] = ()
    location: str = "UTC"

    def contains(self, now: float) -> bool:
        local = datetime.fromtimestamp(now, ZoneInfo(self.location))
        minute = local.hour * 60 + local.minute
        if self.times and not any(a <= minute < b for a, b in self.times):
            return False
        if self.weekdays and not any(a <= local.weekday() <= b for a, b in self.weekdays):
            return False
        if self.days_of_month and not any(_day_in(local, a, b) for a, b in self.days_of_month):
            return False
        if self.months and not any(a <= local.month <= b for a, b in self.months):
            return False
        return not (self.years and not any(a <= local.year <= b for a, b in self.years))


def _day_in(local: datetime, start: int, end: int) -> bool:
    # Negative days count from the month's end (-1 is the last day), as Alertmanager's.
    import calendar

    last = calendar.monthrange(local.year, local.month)[1]
    a = start if start > 0 else last + start + 1
    b = end if end > 0 else last + end + 1
    return a <= local.day <= b


@dataclass(frozen=True)
class TimeInterval:
    name: str
    specs: tuple[TimeSpec, ...]

    def active(self, now: float) -> bool:
        return any(spec.contains(now) for spec in self.specs)


def _clock(text: str) -> int:
    hours, _, minutes = str(text).partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"time {text!r}: expected HH:MM")
    value = int(hours) * 60 + int(minutes)
    if value > 24 * 60 or int(minutes) > 59:
        raise ValueError(f"time {text!r}: out of range 00:00..24:00")
    return value


def _ranges(items: Sequence[Any], parse: Any, what: str) -> tuple[tuple[int, int], ...]:
    out = []
    for item in items:
        first, sep, last = str(item).partition(":")
        a = parse(first.strip())
        b = parse(last.strip()) if sep else a
        if a > b and not (what == "days_of_month" and (a < 0) != (b < 0)):
            raise ValueError(f"{what} {item!r}: the range's start is after its end")
        out.append((a, b))
    return tuple(out)


def _named(names: Sequence[str], what: str) -> Any:
    def parse(text: str) -> int:
        if text.lower() in names:
            return names.index(text.lower()) + (1 if what == "months" else 0)
        if what == "months" and text.isdigit() and 1 <= int(text) <= 12:
            return int(text)
        raise ValueError(f"{what}: {text!r} is not one of {', '.join(names)}")

    return parse


def _integer(low: int, high: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{what}: {text!r} is not a number") from None
        if not (low <= abs(value) <= high) or (what == "years" and value < 0):
            raise ValueError(f"{what}: {value} is out of range")
        return value

    return parse


def parse_spec(node: Mapping[str, Any]) -> TimeSpec:
    allowed = {"times", "weekdays", "days_of_month", "months", "years", "location"}
    unknown = set(node) - allowed
    if unknown:
        raise ValueError(f"unknown time interval keys {sorted(unknown)}; known: {sorted(allowed)}")
    location = str(node.get("location", "UTC"))
    try:
        ZoneInfo(location)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"location {location!r} is not an IANA time zone such as Europe/Berlin") from None
    times = []
    for item in node.get("times") or []:
        start, end = _clock(item.get("start_time", "")), _clock(item.get("end_time", ""))
        if start >= end:
            raise ValueError(f"times {item!r}: start_time must be before end_time")
        times.append((start, end))
    return TimeSpec(
        times=tuple(times),
        weekdays=_ranges(node.get("weekdays") or [], _named(WEEKDAYS, "weekdays"), "weekdays"),
        days_of_month=_ranges(node.get("days_of_month") or [], _integer(1, 31, "days_of_month"), "days_of_month"),
        months=_ranges(node.get("months") or [], _named(MONTHS, "months"), "months"),
        years=_ranges(node.get("years") or [], _integer(1, 9999, "years"), "years"),
        location=location,
    )


def parse_time_interval(node: Mapping[str, Any]) -> TimeInterval:
    """`{name, time_intervals: [spec, ...]}` → TimeInterval; ValueError says what is wrong."""
    name = node.get("name")
    if not name:
        raise ValueError("a time interval needs a `name`")
    specs = node.get("time_intervals") or []
    if not isinstance(specs, list):
        raise ValueError(f"time interval {name}: `time_intervals` must be a list")
    return TimeInterval(str(name), tuple(parse_spec(spec) for spec in specs))


def muted(intervals: Mapping[str, TimeInterval], mute: Sequence[str], active: Sequence[str], now: float) -> str | None:
    """Why a route's notifications are muted now (a reason), or None when they may go out."""
    for name in mute:
        if intervals[name].active(now):
            return f"mute_time_interval {name}"
    if active and not any(intervals[name].active(now) for name in active):
        return "outside active_time_intervals"
    return None
