"""Which table answers a series read: raw rows, the 1-minute or the 1-hour rollup. Pure.

The coarsest source whose bucket divides the step reads the fewest rows and gives the same
answer (rollups keep mergeable states), so it wins. A source whose TTL has already dropped the
range's start is not used, and the step is raised until a series has at most `max_points`
points: a 90-day query therefore reads a rollup, never raw rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from math import ceil

from vigil.store.client import StoreError
from vigil.store.columns import GAUGE
from vigil.store.schema import MINUTES, ROLLUP_1H, SchemaContext

DAY = 86_400
MAX_POINTS = 11_000  # per series; Prometheus refuses a range query past the same figure


class QueryRejected(StoreError):
    """A read was refused before it ran (bad range, step or name); the message says which and why."""


class Resolution(StrEnum):
    RAW = "raw"
    MINUTE = "1m"
    HOUR = "1h"

    @property
    def bucket_s(self) -> int:
        return {"raw": 1, "1m": 60, "1h": 3600}[self.value]

    @property
    def table(self) -> str:
        """Gauge rows at this resolution; the only identifiers a series read puts into SQL. Minutes are
        the rollup's rows and the raw points that are their own minute row (`schema_minutes`)."""
        return {"raw": GAUGE, "1m": MINUTES, "1h": ROLLUP_1H}[self.value]

    def ttl_days(self, ctx: SchemaContext) -> int:
        return {"raw": ctx.raw_ttl_days, "1m": ctx.rollup_1m_ttl_days, "1h": ctx.rollup_1h_ttl_days}[self.value]

    def covers(self, start: int, now: float, ctx: SchemaContext) -> bool:
        """Whether rows from `start` on are still kept (not yet past this source's TTL)."""
        return start >= now - self.ttl_days(ctx) * DAY


FINEST_FIRST = (Resolution.RAW, Resolution.MINUTE, Resolution.HOUR)


@dataclass(frozen=True)
class SeriesPlan:
    """The source and step a series read uses, and its range aligned to the step (end exclusive)."""

    source: Resolution
    step: int
    start: int
    end: int


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def plan_series(
    start: int,
    end: int,
    step: int,
    now: float,
    ctx: SchemaContext,
    *,
    source: Resolution | None = None,
    max_points: int = MAX_POINTS,
) -> SeriesPlan:
    """Choose the source and step for a read of [start, end) in unix seconds at `step` seconds.

    `source` forces one (its bucket must divide the step); otherwise the choice follows the
    module's rule. The returned step may be larger than asked, never smaller.
    """
    if step <= 0:
        raise QueryRejected(f"step must be a positive number of seconds, got {step}")
    if end <= start:
        raise QueryRejected(f"the range is empty: end ({end}) must be after start ({start})")
    needed = max(step, ceil((end - start) / max_points))
    if source is not None:
        if needed % source.bucket_s:
            raise QueryRejected(f"step {needed}s is not a multiple of the {source.value} source's {source.bucket_s}s")
        return _aligned(source, needed, start, end)
    kept = [s for s in FINEST_FIRST if s.covers(start, now, ctx)] or [Resolution.HOUR]
    bucket = kept[0].bucket_s
    if needed > step:  # the step is ours to choose now: make it one a rollup can answer
        bucket = max((s.bucket_s for s in kept if s.bucket_s <= needed), default=bucket)
    step = _round_up(needed, bucket)
    chosen = next(s for s in reversed(kept) if step % s.bucket_s == 0)
    return _aligned(chosen, step, start, end)


def _aligned(source: Resolution, step: int, start: int, end: int) -> SeriesPlan:
    # Buckets are multiples of the step since the epoch (UTC), so a rollup bucket never straddles two.
    return SeriesPlan(source, step, start // step * step, _round_up(end, step))
