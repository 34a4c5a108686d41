"""The history routes' parameters: one parser for the API, the downloads and the page. Pure.

Each bad value raises `ParamError` naming the parameter, which the routes answer with a 400.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from vigil.store.usage import MAX_TOP, UsageQuery

DAY = 86_400
PRESETS: dict[str, int] = {"1d": DAY, "7d": 7 * DAY, "30d": 30 * DAY, "90d": 90 * DAY}
DEFAULT_RANGE = "7d"
MAX_RANGE_S = 800 * DAY  # past the hourly rollup's default TTL (730 days) there is nothing to read
GROUPINGS = ("team", "k8s.cluster.name", "host.name", "gpu.model")
MAX_FILTERS = 16
MAX_KEY = 256
# Steps a default is picked from: about TARGET_POINTS points per series, on round boundaries.
NICE_STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, DAY)
TARGET_POINTS = 300


class ParamError(ValueError):
    """A request parameter that cannot be used; the message starts with its name."""


def _time(name: str, value: str) -> int:
    """Unix seconds, or an ISO date / date-time (UTC unless it names a zone)."""
    value = value.strip()
    try:
        return int(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ParamError(f"{name}: unix seconds or an ISO date such as 2025-01-31, got {value!r}") from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


def _int(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ParamError(f"{name}: a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ParamError(f"{name}: from {low} to {high}, got {number}")
    return number


def _filters(items: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in items:
        if not item.strip():
            continue  # the page's empty filter field
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParamError(f"filter: KEY=VALUE, e.g. filter=team=ml, got {item!r}")
        if len(key) > MAX_KEY:
            raise ParamError(f"filter: a key of at most {MAX_KEY} characters")
        found[key] = value.strip()
    if len(found) > MAX_FILTERS:
        raise ParamError(f"filter: at most {MAX_FILTERS}, got {len(found)}")
    return found


def default_step(span_s: int) -> int:
    return next((s for s in NICE_STEPS if s * TARGET_POINTS >= span_s), NICE_STEPS[-1])


def usage_query(params: QueryParams | Mapping[str, str], now: int) -> UsageQuery:
    """`start`, `end` (unix seconds or ISO), or `range` (1d, 7d, 30d, 90d) ending at `end` or now;
    `step`, `group_by`, repeated `filter=K=V`, `idle_threshold` (%), `n` (top GPUs)."""
    get = params.get
    filters = params.getlist("filter") if isinstance(params, QueryParams) else []
    end = _time("end", get("end")) if get("end") else now
    chosen = get("range") or DEFAULT_RANGE
    if get("start"):
        start = _time("start", get("start") or "")
    elif chosen in PRESETS:
        start = end - PRESETS[chosen]
    else:
        raise ParamError(f"range: one of {', '.join(PRESETS)} (or give start and end), got {chosen!r}")
    if end <= start:
        raise ParamError(f"end: must be after start ({start}), got {end}")
    if end - start > MAX_RANGE_S:
        raise ParamError(f"start: the range may span at most {MAX_RANGE_S // DAY} days")
    step = _int("step", get("step") or "", 1, MAX_RANGE_S) if get("step") else default_step(end - start)
    asked_group = get("group_by")
    group_by = "team" if asked_group is None else asked_group.strip()
    if not group_by or len(group_by) > MAX_KEY:
        raise ParamError(f"group_by: a resource attribute of 1 to {MAX_KEY} characters, e.g. team")
    try:
        threshold = float(get("idle_threshold") or 5.0)
    except ValueError:
        raise ParamError(f"idle_threshold: a percentage, got {get('idle_threshold')!r}") from None
    if not 0.0 <= threshold <= 100.0:
        raise ParamError(f"idle_threshold: from 0 to 100 (%), got {threshold}")
    top = _int("n", get("n") or "10", 1, MAX_TOP)
    return UsageQuery(start, end, step, group_by, _filters(filters), threshold, top)


def query_string(q: UsageQuery) -> str:
    """The parameters that ask `q` again: the page's chart and download links use them."""
    pairs: list[tuple[str, str | int | float]] = [
        ("start", q.start),
        ("end", q.end),
        ("step", q.step),
        ("group_by", q.group_by),
        ("idle_threshold", q.idle_threshold),
        ("n", q.top),
    ]
    pairs += [("filter", f"{k}={v}") for k, v in sorted(q.filters.items())]
    return urlencode(pairs)
