"""What `GET /api/v1/series` reads for each `kind`, and the checks of its kind-specific parameters.

- `gauge` (the default): a gauge's `aggregate` per step, as before;
- `rate`: a counter's per-second rate per step, counter resets handled;
- `quantile`: a histogram's `q` quantile per step from its bucket counts (`histogram_quantile`);
- `ratio`: `metric`'s rate over `ratio_to`'s (default: `metric` itself), `filter` on the numerator and
  `ratio_filter` on the denominator, always grouped (by `group_by`, or into one series): the error
  rate is `metric=llm.requests.finished&filter=outcome=error&kind=ratio`.

A parameter that does not apply to the kind asked is refused rather than ignored, and a catalogue
metric of another kind (a rate of a gauge) is refused naming what it is; names outside the catalogue
(any OTel metric) are read as asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dashboard.params import ParamError, Window, parse_filters
from vigil.names import CATALOGUE, Kind
from vigil.store.client import Store
from vigil.store.rates import CounterQuery, read_quantiles, read_rates, read_ratio
from vigil.store.read import AGGREGATES, SeriesQuery, SeriesResult, read_series
from vigil.store.schema import SchemaContext

KINDS: dict[str, Kind] = {"gauge": Kind.GAUGE, "rate": Kind.COUNTER, "quantile": Kind.HISTOGRAM, "ratio": Kind.COUNTER}
DEFAULT_AGGREGATE = "avg"


@dataclass(frozen=True)
class SeriesAsk:
    """One `/api/v1/series` request, its common parameters already parsed."""

    metric: str
    kind: str
    window: Window
    step: int
    filters: Mapping[str, str]
    group_by: tuple[str, ...]
    aggregate: str | None = None
    q: str | None = None
    ratio_to: str | None = None
    ratio_filter: tuple[str, ...] = ()


def _check_catalogue(name: str, metric: str, kind: str) -> None:
    known = CATALOGUE.get(metric)
    if known is not None and known.kind is not KINDS[kind]:
        raise ParamError(name, f"{metric} is a {known.kind.value}; kind={kind} reads a {KINDS[kind].value}")


def parse_quantile(value: str | None) -> float:
    if value is None or value == "":
        raise ParamError("q", "kind=quantile needs q, a number in [0, 1] (e.g. q=0.99)")
    try:
        q = float(value)
    except ValueError:
        raise ParamError("q", f"{value[:40]!r} is not a number in [0, 1]") from None
    if not 0 <= q <= 1:
        raise ParamError("q", f"{value[:40]} is not in [0, 1]")
    return q


def check(ask: SeriesAsk) -> None:
    """Refuse a kind we do not know, and parameters that belong to another kind."""
    if ask.kind not in KINDS:
        raise ParamError("kind", f"{ask.kind[:40]!r} is not one of {', '.join(KINDS)}")
    if not ask.metric.strip():
        raise ParamError("metric", "must not be empty")
    if ask.aggregate is not None and ask.kind != "gauge":
        raise ParamError("aggregate", f"applies to kind=gauge only, not kind={ask.kind}")
    if ask.aggregate is not None and ask.aggregate not in AGGREGATES:
        raise ParamError("aggregate", f"{ask.aggregate!r} is not one of {', '.join(AGGREGATES)}")
    if ask.q is not None and ask.kind != "quantile":
        raise ParamError("q", f"applies to kind=quantile only, not kind={ask.kind}")
    if ask.kind != "ratio" and (ask.ratio_to is not None or ask.ratio_filter):
        which = "ratio_to" if ask.ratio_to is not None else "ratio_filter"
        raise ParamError(which, f"applies to kind=ratio only, not kind={ask.kind}")
    if ask.ratio_to is not None and not ask.ratio_to.strip():
        raise ParamError("ratio_to", "must not be empty (leave it out to divide by the metric itself)")
    if ask.kind != "gauge":
        _check_catalogue("kind", ask.metric, ask.kind)
    if ask.ratio_to:
        _check_catalogue("ratio_to", ask.ratio_to, ask.kind)


def read_asked(store: Store, ask: SeriesAsk, ctx: SchemaContext, now: float) -> SeriesResult:
    """The series `ask` names; `ParamError` for bad parameters, the store's own errors otherwise."""
    check(ask)
    start, end = int(ask.window.start), int(ask.window.end)
    if ask.kind == "gauge":
        query = SeriesQuery(
            ask.metric, start, end, ask.step, ask.aggregate or DEFAULT_AGGREGATE, ask.filters, ask.group_by
        )
        return read_series(store, query, ctx, now)
    group_by = ask.group_by or None  # without group_by every series stays apart, as gauges do
    counter = CounterQuery(ask.metric, start, end, ask.step, ask.filters, group_by)
    if ask.kind == "rate":
        return read_rates(store, counter, ctx, now)
    if ask.kind == "quantile":
        quantile = CounterQuery(ask.metric, start, end, ask.step, ask.filters, group_by, parse_quantile(ask.q))
        return read_quantiles(store, quantile, ctx, now)
    denominator = CounterQuery(
        ask.ratio_to or ask.metric, start, end, ask.step, parse_filters(ask.ratio_filter, "ratio_filter"), group_by
    )
    return read_ratio(store, counter, denominator, ctx, now)
