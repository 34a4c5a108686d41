"""What alerting offers the dashboard (`vigil.views.AlertsView`): alerts, history, silences, SLOs and
each SLO's budget over time, in the shapes of alerting's own API (`alerting.shapes`).

The budget-burn chart asks, for each point `t`, what the SLO's status asks at `now = t`: the error
ratio over the period ending at `t` (`SloSpec.queries(period_s)`, through the evaluator's reads), so
the chart's last point and the page's "budget remaining" are one computation. A point costs two
window reads; a chart is bounded in points, and settled points are kept in a small bounded cache,
so a page that polls re-reads only its newest points.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from alerting.evaluator import Evaluator
from alerting.notify.silence import SilenceError
from alerting.shapes import alert_json, silence_json, silence_request, transition_json
from alerting.slo import SloSpec
from alerting.state import Transition
from vigil.views import ViewError

MAX_HISTORY = 1000
MAX_BUDGET_POINTS = 300
MAX_SILENCE_ID = 128
# A point this old reads only closed rollup buckets (the 1-hour rollup's newest bucket closes within
# the hour) and data that has arrived: its value no longer changes, so it is worth keeping.
SETTLED_S = 2 * 3600
BUDGET_CACHE_POINTS = 8192  # (SLO, time) → float: well under a megabyte


class AlertingSource(Protocol):
    """What the view reads from the alerting service."""

    evaluator: Evaluator
    slos: Sequence[SloSpec]

    def silence_store(self) -> Any: ...

    def slo_statuses(self, now: float) -> list[dict[str, Any]]: ...

    def history(self, limit: int) -> list[Transition]: ...

    def now(self) -> float: ...


def slo_key(service: str, name: str) -> str:
    """How a page and a URL name one SLO: `service:name` (a name alone where only one SLO has it)."""
    return f"{service}:{name}"


class AlertingView:
    """`vigil.views.AlertsView` over a running `AlertingService`."""

    def __init__(self, source: AlertingSource) -> None:
        self._source = source
        self._budget_cache: OrderedDict[tuple[str, str, int], float] = OrderedDict()
        self._cache_lock = threading.Lock()

    def alerts(self) -> list[dict[str, Any]]:
        alerts = sorted(self._source.evaluator.alerts(), key=lambda a: (a.active_at, a.fingerprint))
        return [alert_json(a) for a in alerts]

    def history(self, limit: int) -> list[dict[str, Any]]:
        if not 1 <= limit <= MAX_HISTORY:
            raise ViewError(f"limit: between 1 and {MAX_HISTORY}")
        return [transition_json(t) for t in self._source.history(limit)]

    def silences(self, include_expired: bool = False) -> list[dict[str, Any]]:
        now = self._source.now()
        return [silence_json(s, now) for s in self._silences().list(now, include_expired=include_expired)]

    def create_silence(self, body: dict[str, Any]) -> str:
        request = silence_request(body, self._source.now())
        try:
            silence = self._silences().create(
                request.matchers, request.starts_at, request.ends_at, request.created_by, request.comment
            )
        except SilenceError as exc:  # the store's own limits (how many silences it holds)
            raise ViewError(f"silence: {exc}") from None
        return str(silence.id)

    def expire_silence(self, silence_id: str) -> None:
        if len(silence_id) > MAX_SILENCE_ID:
            raise ViewError("id: silence id too long")
        if not self._silences().expire(silence_id, self._source.now()):
            raise ViewError(f"id: no silence {silence_id!r} (or it has expired already)")

    def slos(self) -> list[dict[str, Any]]:
        return self._source.slo_statuses(self._source.now())

    def slo_budget(self, name: str, start: float, end: float, step: int) -> list[tuple[float, float]]:
        spec = self._spec(name)
        now = self._source.now()
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ViewError("start: start and end must be finite unix seconds")
        if step <= 0:
            raise ViewError(f"step: a positive number of seconds, got {step}")
        end = min(end, now)  # the future has no budget to show
        if end <= start:
            raise ViewError(f"end: must be after start ({start}), and not after now")
        times = [float(t) for t in range(math.ceil(start / step) * step, math.floor(end) + 1, step)]
        if not times or times[-1] < end:
            times.append(end)  # the last point is the status the page shows
        if len(times) > MAX_BUDGET_POINTS:
            raise ViewError(f"step: {step}s gives {len(times)} points over the range; at most {MAX_BUDGET_POINTS}")
        return [(t, self._budget_at(spec, t, now)) for t in times]

    # -- helpers -------------------------------------------------------------------------------

    def _silences(self) -> Any:
        store = self._source.silence_store()
        if store is None:
            raise ViewError("silences: unavailable, the notification pipeline is not running")
        return store

    def _spec(self, name: str) -> SloSpec:
        specs = self._source.slos
        found = [s for s in specs if name in (slo_key(s.service, s.name), s.name)]
        if len(found) == 1:
            return found[0]
        known = ", ".join(slo_key(s.service, s.name) for s in specs) or "none"
        if found:
            raise ViewError(f"name: {name!r} names {len(found)} SLOs; use service:name, one of {known}")
        raise ViewError(f"name: no SLO {name!r}; known: {known}")

    def _budget_at(self, spec: SloSpec, t: float, now: float) -> float:
        key = (spec.service, spec.name, int(t))
        settled = t == int(t) and t <= now - SETTLED_S
        if settled:
            with self._cache_lock:
                if key in self._budget_cache:
                    self._budget_cache.move_to_end(key)
                    return self._budget_cache[key]
        value = spec.budget_remaining(self._source.evaluator.query(spec.queries(spec.period_s), t))
        if settled:
            with self._cache_lock:
                self._budget_cache[key] = value
                while len(self._budget_cache) > BUDGET_CACHE_POINTS:
                    self._budget_cache.popitem(last=False)
        return value
