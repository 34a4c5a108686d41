"""Typed fields of rule and SLO files: metrics from the catalogue, matchers, labels, annotations."""

from __future__ import annotations

import re

from alerting.matchers import MatcherError, compile_pattern
from alerting.model import ALERTNAME, SEVERITY
from alerting.slo import BUCKET_BOUNDS
from alerting.source import Section, format_duration
from alerting.template import TemplateError, parse
from vigil.names import CATALOGUE
from vigil.store.window import Matcher

SEVERITIES = ("page", "ticket")
_KEY = r"[A-Za-z_][A-Za-z0-9_.\-/]*"
_MATCHER = re.compile(rf'^\s*({_KEY})\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')


def whole_seconds(s: Section, key: str, seconds: float) -> int:
    if seconds < 1 or seconds != int(seconds):
        s.fail(key, f"{format_duration(seconds)}: a window is whole seconds, at least 1s")
    return int(seconds)


def catalogue_metric(s: Section, key: str) -> tuple[str, str]:
    """The metric's name and its table kind (gauge, sum, histogram), or an error listing close names."""
    metric = s.text(key, required=True)
    if metric not in CATALOGUE:
        prefix = metric.split(".")[0] + "."
        close = [m for m in CATALOGUE if m.startswith(prefix)][:8]
        s.fail(key, f"{metric!r} is not in the catalogue (vigil/names.py); e.g. {', '.join(close) or 'gpu.up'}")
    kind = str(CATALOGUE[metric].kind)
    return metric, "sum" if kind == "counter" else kind


def bucket_bound(s: Section, key: str, metric: str) -> float:
    le = s.get(key, float, required=True)
    bounds = BUCKET_BOUNDS.get(metric)
    if bounds is not None and le not in bounds:
        s.fail(key, f"{le:g} is not a bucket bound of {metric}: use one of {' '.join(f'{b:g}' for b in bounds)}")
    return le


def by_keys(s: Section, key: str) -> list[str]:
    value = s.get(key, (str, list), [])
    keys = [value] if isinstance(value, str) else list(value)
    for k in keys:
        if not isinstance(k, str) or not re.fullmatch(_KEY, k):
            s.fail(key, f"{k!r} is not an attribute key (letters, digits and . _ - /)")
    return keys


def matchers(s: Section, key: str) -> tuple[Matcher, ...]:
    """`{key: value}` (equality) or a list of PromQL-style `key op "value"` strings (=, !=, =~, !~)."""
    value = s.get(key, (dict, list), [])
    out: list[Matcher] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(Matcher(k, "=", str(v)))
    else:
        for item in value:
            m = _MATCHER.match(item) if isinstance(item, str) else None
            if not m:
                s.fail(key, f'{item!r}: write key op "value", e.g. outcome="error" or xid=~"48|79"')
            out.append(Matcher(m.group(1), m.group(2), re.sub(r"\\(.)", r"\1", m.group(3))))  # type: ignore[arg-type]
    for matcher in out:
        if matcher.op in ("=~", "!~"):
            try:
                compile_pattern(matcher.value)  # the store matches with RE2 too (ClickHouse's match)
            except MatcherError as exc:
                s.fail(key, f"{matcher.value!r}: {exc}")
    return tuple(sorted(out, key=lambda m: (m.key, m.op, m.value)))  # one order: equal queries are shared


def rule_labels(s: Section, name: str, key: str = "labels", default_severity: str = "ticket") -> dict[str, str]:
    labels = s.labels(key)
    if ALERTNAME in labels:
        s.fail(key, f"{ALERTNAME!r} is set from `alert`: remove it")
    labels.setdefault(SEVERITY, default_severity)
    if labels[SEVERITY] not in SEVERITIES:
        s.fail(key, f"severity {labels[SEVERITY]!r}: use page or ticket (route on other labels)")
    return labels


def rule_annotations(s: Section, key: str = "annotations") -> dict[str, str]:
    annotations = s.labels(key)
    for name, text in annotations.items():
        try:
            parse(text)
        except TemplateError as exc:
            s.fail(key, f"{name}: {exc}")
    return annotations
