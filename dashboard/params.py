"""Query-string parameters of the pages and the JSON API, parsed in one place. Pure.

A bad value raises `ParamError` naming the parameter, which the API answers with 400.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

RANGES: dict[str, int] = {"15m": 900, "1h": 3600, "6h": 21_600, "24h": 86_400, "7d": 604_800, "30d": 2_592_000}
DEFAULT_RANGE = "1h"
FLEET_FILTERS = ("team", "k8s.cluster.name", "gpu.model")  # the fleet page's filters, by attribute key
POINTS_PER_CHART = 360  # a chart's width in points: enough for a screen, few enough to draw fast
MIN_STEP_S = 10  # the agent's default sampling interval: a finer step only draws gaps
MAX_FILTERS = 16
MAX_VALUE_CHARS = 1024


class ParamError(ValueError):
    """A query parameter the caller got wrong; the message names it and says what it should be."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def parse_range(value: str | None, name: str = "range") -> int:
    """One of the range picker's choices (15m, 1h, 6h, 24h, 7d, 30d) → seconds."""
    if value is None or value == "":
        return RANGES[DEFAULT_RANGE]
    if value not in RANGES:
        raise ParamError(name, f"{value!r} is not one of {', '.join(RANGES)}")
    return RANGES[value]


def parse_time(name: str, value: str | None, default: float) -> float:
    """Unix seconds (a number), or the default when absent."""
    if value is None or value == "":
        return default
    try:
        t = float(value)
    except ValueError:
        raise ParamError(name, f"{value[:40]!r} is not unix seconds (a number)") from None
    if not 0 <= t < 10**11:
        raise ParamError(name, f"{value!r} is out of range for unix seconds")
    return t


def parse_step(value: str | None, span_s: float) -> int:
    """The step asked for, or one that gives about `POINTS_PER_CHART` points over the span."""
    if value is None or value == "":
        step = max(MIN_STEP_S, int(span_s // POINTS_PER_CHART))
        return step if step < 60 else -(-step // 60) * 60  # whole minutes, so a rollup can answer
    if not value.isdigit() or int(value) <= 0:
        raise ParamError("step", f"{value[:40]!r} is not a positive whole number of seconds")
    return int(value)


def parse_filters(items: Iterable[str], name: str = "filter") -> dict[str, str]:
    """`k=v` items → {k: v}; the value may contain `=`, the key may not be empty."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParamError(name, f"{item[:60]!r} is not KEY=VALUE (e.g. filter=team=ml)")
        if len(item) > MAX_VALUE_CHARS:
            raise ParamError(name, f"longer than {MAX_VALUE_CHARS} characters")
        out[key] = value
    if len(out) > MAX_FILTERS:
        raise ParamError(name, f"at most {MAX_FILTERS}, got {len(out)}")
    return out


def parse_group_by(items: Iterable[str]) -> tuple[str, ...]:
    """Repeated or comma-separated attribute keys."""
    keys = tuple(k.strip() for item in items for k in item.split(",") if k.strip())
    if len(keys) > MAX_FILTERS:
        raise ParamError("group_by", f"at most {MAX_FILTERS} keys, got {len(keys)}")
    return keys


@dataclass(frozen=True)
class Window:
    """The [start, end) a chart or a count covers, in unix seconds, and the picker choice it came from."""

    start: float
    end: float
    label: str

    @property
    def seconds(self) -> float:
        return self.end - self.start


def parse_window(range_: str | None, start: str | None, end: str | None, now: float) -> Window:
    """`start`/`end` (unix seconds) win over `range` (ending now); the range defaults to 1h."""
    span = parse_range(range_)
    stop = parse_time("end", end, now)
    begin = parse_time("start", start, stop - span)
    if stop <= begin:
        raise ParamError("end", f"must be after start ({begin:.0f}), got {stop:.0f}")
    label = range_ if range_ in RANGES else ("custom" if start or end else DEFAULT_RANGE)
    return Window(begin, stop, label)
