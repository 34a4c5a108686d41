"""SLO documents in Sloth's shape → `SloSpec`s and their page and ticket burn-rate rules.

    version: prometheus/v1
    service: inference
    labels: {team: ml-platform}
    slos:
      - name: availability
        objective: 99.9                 # percent
        description: Requests that finish without an error.
        period: 30d                     # optional, default 30d
        sli:
          events:
            error_query: {metric: llm.requests.finished, matchers: {outcome: error}}
            total_query: {metric: llm.requests.finished}
          # or: latency: {metric: llm.time_to_first_token, threshold_s: 2.5, matchers: {...}}
        alerting:
          name: InferenceAvailability
          labels: {category: availability}
          annotations: {summary: "..."}
          runbook: inference-errors
          page_alert: {labels: {...}, annotations: {...}, disable: false}
          ticket_alert: {name: ..., labels: {...}, annotations: {...}, disable: false}

The ticket alert is named `<name>Ticket` unless its section names it: under one name it would join the
page's notification group (grouped by alertname) and re-send the page when it fires minutes later.

Where Sloth takes PromQL, a query here is `{metric, matchers}`. Page rules are evaluated every
2 s, ticket rules every 15 s, each kind in a group of its own (`slo/<service>/page`, `.../ticket`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from alerting.fields import bucket_bound, catalogue_metric, matchers, rule_annotations, rule_labels
from alerting.model import SEVERITY
from alerting.slo import (
    DEFAULT_PERIOD_S,
    PAGE_WINDOWS,
    TICKET_WINDOWS,
    BurnRateRule,
    EventsSli,
    LatencySli,
    SloInfo,
    SloSpec,
)
from alerting.source import Section

if TYPE_CHECKING:
    from alerting.rules import Compiler

VERSION = "prometheus/v1"
PAGE_INTERVAL_S = 2.0
TICKET_INTERVAL_S = 15.0
DEFAULT_SUMMARY = '{{ $labels.service }} {{ $labels.slo }}: error budget burning {{ $value | printf "%.1f" }}x'


def compile_document(doc: Section, compiler: Compiler) -> tuple[list[BurnRateRule], list[SloSpec]]:
    doc.allow("version", "service", "labels", "slos")
    if doc.text("version") != VERSION:
        doc.fail("version", f"expected {VERSION!r} (Sloth's SLO spec)")
    service = doc.text("service", required=True)
    labels = doc.labels("labels")
    rules: list[BurnRateRule] = []
    specs: list[SloSpec] = []
    groups = {alert: f"slo/{service}/{alert}" for alert in ("page", "ticket")}
    for group in groups.values():
        compiler.claim_group(doc, group)
    seen: set[str] = set()
    for s in doc.sections("slos", required=True):
        s.allow("name", "objective", "description", "period", "sli", "alerting", "labels")
        name = s.text("name", required=True)
        if name in seen:
            s.fail("name", f"SLO {name!r} is defined twice in service {service!r}")
        seen.add(name)
        objective = s.get("objective", float, required=True)
        if not 0 < objective < 100:
            s.fail("objective", f"{objective:g}: a percent between 0 and 100, e.g. 99.9")
        period = s.duration("period", float(DEFAULT_PERIOD_S))
        if period < 3 * 86400 or period != int(period):
            s.fail("period", "at least 3d (the longest burn-rate window), in whole seconds")
        spec = SloSpec(
            service=service,
            name=name,
            objective=objective,
            sli=_sli(s.section("sli", required=True), compiler),
            period_s=int(period),
            description=s.text("description", ""),
            labels={**labels, **s.labels("labels")},
        )
        specs.append(spec)
        rules += _alerts(s, spec, groups)
    return rules, specs


def _sli(sli: Section, compiler: Compiler) -> EventsSli | LatencySli:
    from alerting.rules import WindowUse

    sli.allow("events", "latency")
    events, latency = sli.section("events"), sli.section("latency")
    if (events is None) == (latency is None):
        sli.fail(None, "give exactly one of events (error_query, total_query) or latency (metric, threshold_s)")
    if events is not None:
        events.allow("error_query", "total_query")
        parts = []
        for key in ("error_query", "total_query"):
            q = events.section(key, required=True)
            assert q is not None
            q.allow("metric", "matchers")
            metric, table = catalogue_metric(q, "metric")
            if table != "sum":
                q.fail(
                    "metric", f"{metric} is a {table}: an events SLI counts with counters (e.g. llm.requests.finished)"
                )
            parts.append((metric, matchers(q, "matchers")))
            compiler.windows.append(WindowUse(f"{q.source.path}:{q.line()}: {q.where}", metric, 300.0))
        (err_metric, err_m), (total_metric, total_m) = parts
        return EventsSli(err_metric, err_m, total_metric, total_m)
    assert latency is not None
    latency.allow("metric", "threshold_s", "matchers")
    metric, table = catalogue_metric(latency, "metric")
    if table != "histogram":
        latency.fail("metric", f"{metric} is a {table}: a latency SLI reads a histogram (e.g. llm.time_to_first_token)")
    compiler.windows.append(WindowUse(f"{latency.source.path}:{latency.line()}: {latency.where}", metric, 300.0))
    return LatencySli(metric, bucket_bound(latency, "threshold_s", metric), matchers(latency, "matchers"))


def _alerts(s: Section, spec: SloSpec, groups: dict[str, str]) -> list[BurnRateRule]:
    a = s.section("alerting", required=True)
    assert a is not None
    a.allow("name", "labels", "annotations", "runbook", "page_alert", "ticket_alert")
    name = a.text("name", required=True)
    base_labels = {**spec.labels, **a.labels("labels"), "service": spec.service, "slo": spec.name}
    base_annotations = {"summary": DEFAULT_SUMMARY, **rule_annotations(a)}
    if spec.description:
        base_annotations.setdefault("description", spec.description)
    out = []
    kinds: tuple[tuple[Literal["page", "ticket"], str, float, tuple], ...] = (
        ("page", "page_alert", PAGE_INTERVAL_S, PAGE_WINDOWS),
        ("ticket", "ticket_alert", TICKET_INTERVAL_S, TICKET_WINDOWS),
    )
    for alert, key, interval, windows in kinds:
        section = a.section(key)
        alert_name = name if alert == "page" else f"{name}Ticket"
        extra_labels: dict[str, str] = {}
        extra_annotations: dict[str, str] = {}
        if section is not None:
            section.allow("name", "labels", "annotations", "disable")
            if section.get("disable", bool, False):
                continue
            alert_name = section.text("name", alert_name)
            extra_labels = rule_labels(section, alert_name, default_severity=alert)
            if extra_labels[SEVERITY] != alert:
                section.fail("labels", f"severity of a {key} is {alert}: route on another label")
            extra_annotations = rule_annotations(section)
        labels = {**base_labels, **extra_labels, SEVERITY: alert}
        info = SloInfo(spec.service, spec.name, spec.objective, spec.period_s, alert, windows)
        out.append(
            BurnRateRule(
                name=alert_name,
                group=groups[alert],
                interval_s=interval,
                spec=spec,
                slo=info,
                labels=labels,
                annotations={**base_annotations, **extra_annotations},
                runbook=a.text("runbook"),
            )
        )
    return out
