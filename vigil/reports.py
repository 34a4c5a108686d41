"""Named reports: the monthly questions about GPUs, as tables, for `vigil query --report` and the API.

- `gpu-hours`: per group, the GPUs seen and their allocated, busy and idle GPU-hours;
- `idle`: per group, idle GPU-hours and their share of the allocated ones, most idle first;
- `top-idle`: the GPUs with the lowest average utilization over the range.

The numbers are `vigil.store.usage`'s (its docstring has the exact rules); a report only shapes them
into columns and rows, so the API (`GET /api/v1/reports/{name}`) and the direct path print the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vigil.store import QueryResult, Store
from vigil.store.plan import QueryRejected
from vigil.store.schema import SchemaContext

REPORTS = ("gpu-hours", "idle", "top-idle")
HOUR, DAY = 3600, 86_400
MAX_DAYS = 3650


@dataclass(frozen=True)
class ReportAsk:
    """One named report over [start, end) in unix seconds, per `group_by`, at `step` seconds."""

    name: str
    start: int
    end: int
    step: int = HOUR
    group_by: str = "team"
    idle_threshold: float = 5.0
    top: int = 10
    filters: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def last_days(cls, name: str, days: float, now: float, **kw: object) -> ReportAsk:
        """The last `days` days up to the current hour's end, so hourly buckets are whole."""
        if not 0 < days <= MAX_DAYS:
            raise QueryRejected(f"days must be more than 0 and at most {MAX_DAYS}, got {days}")
        end = (int(now) // HOUR + 1) * HOUR
        return cls(name, end - int(days * DAY), end, **kw)  # type: ignore[arg-type]


def run_report(store: Store, ask: ReportAsk, ctx: SchemaContext, now: float) -> QueryResult:
    """The report's columns and rows. Raises `QueryRejected` for an unknown report or a bad range."""
    from vigil.store import usage  # the history package's reads: imported where used

    if ask.name not in REPORTS:
        raise QueryRejected(f"report {ask.name!r}: expected one of {', '.join(REPORTS)}")
    q = usage.UsageQuery(
        start=ask.start,
        end=ask.end,
        step=ask.step,
        group_by=ask.group_by,
        filters=dict(ask.filters),
        idle_threshold=ask.idle_threshold,
        top=ask.top,
    )
    key = ask.group_by
    if ask.name == "top-idle":
        gpus = usage.top_gpus(store, q, "idle", ctx=ctx, now=now)
        return QueryResult(
            ("gpu.uuid", "host.name", key, "avg_utilization", "allocated_h", "idle_h"),
            [(g.uuid, g.host, g.labels[key], _r(g.avg_utilization), _r(g.hours), _r(g.idle_h)) for g in gpus],
        )
    groups = usage.gpu_hours(store, q, ctx=ctx, now=now)
    if ask.name == "gpu-hours":
        return QueryResult(
            (key, "gpus", "allocated_h", "busy_h", "idle_h", "utilization"),
            [(h.labels[key], h.gpus, _r(h.allocated_h), _r(h.busy_h), _r(h.idle_h), _r(h.utilization)) for h in groups],
        )
    ranked = sorted(groups, key=lambda h: (-h.idle_h, h.labels[key]))
    return QueryResult(
        (key, "idle_h", "allocated_h", "idle_share"),
        [
            (
                h.labels[key],
                _r(h.idle_h),
                _r(h.allocated_h),
                _r(100.0 * h.idle_h / h.allocated_h if h.allocated_h else 0),
            )
            for h in ranked
        ],
    )


def _r(value: float) -> float:
    return round(float(value), 3)
