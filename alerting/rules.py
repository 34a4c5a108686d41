"""Rule files → `CompiledRule`s: threshold and absence rules in `groups:`, SLOs in Sloth's shape.

A file holds YAML documents, each either Prometheus-like groups

    groups:
      - name: gpu-hardware
        interval: 2s            # default 2s where every rule pages, else 15s
        rules:
          - alert: GpuLost
            expr: {metric: gpu.up, function: min, window: 10s, by: [host.name, gpu.uuid]}
            op: "=="
            threshold: 0
            for: 5s
            labels: {severity: page}
            annotations: {summary: "GPU {{ $labels.gpu.uuid }} on {{ $labels.host.name }} is lost"}
            runbook: gpu-lost

or an SLO document (`version: prometheus/v1`, see `alerting.slo_file`). Metrics come from the
catalogue (`vigil.names.CATALOGUE`), whose kind decides the table and the functions allowed.
Every error names file:line and what to do; `check_file` also warns where a window is too short
to ever hold two samples of its metric (PromQL's `rate(x[1m])` at a 1 m scrape never fires).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alerting import slo_file
from alerting.expr import OPS, AbsenceRule, Condition, Expr, ThresholdRule
from alerting.fields import (
    bucket_bound,
    by_keys,
    catalogue_metric,
    matchers,
    rule_annotations,
    rule_labels,
    whole_seconds,
)
from alerting.model import SEVERITY, CompiledRule
from alerting.slo import SloSpec
from alerting.source import RuleError, Section, Source, format_duration
from vigil.names import CATALOGUE
from vigil.store.window import FUNCTIONS_BY_KIND, WindowQuery

__all__ = ["RuleError", "check_file", "default_pack", "load_rule_files", "load_slos"]

PAGE_INTERVAL_S = 2.0  # a page rule is checked every 2 s: pages in seconds (issue 9's goal: p95 <= 10 s)
TICKET_INTERVAL_S = 15.0  # tickets are not urgent; spare the store
DEFAULT_LOOKBACK_S = 3600.0


# Seconds between two samples of a metric, by name or longest name prefix: what `check_file` holds
# windows against. Slow fields are read every `--slow-interval` (10 s).
_SLOW = {
    name: 10.0
    for name in (
        "gpu.ecc.",
        "gpu.remapped_rows.",
        "gpu.processes",
        "gpu.process.memory.used",
        "gpu.pcie.tx",
        "gpu.pcie.rx",
        "gpu.power.limit",
        "gpu.recovery_action",
    )
}
UP_INTERVALS_S: dict[str, float] = {"gpu.": 1.0, "vigil.agent.": 1.0, "llm.": 1.0, **_SLOW}  # under `vigil up`
AGENT_INTERVALS_S: dict[str, float] = {**UP_INTERVALS_S, "llm.": 5.0}  # `vigil agent` defaults (5 s scrape)


def sample_interval(metric: str, intervals: Mapping[str, float]) -> float | None:
    best = max((k for k in intervals if metric.startswith(k)), key=len, default=None)
    return intervals[best] if best is not None else None


@dataclass(frozen=True)
class WindowUse:
    """A window a rule reads, where it is written: `check_file` warns when it cannot hold two samples."""

    where: str  # file:line: place
    metric: str
    window_s: float


class Compiler:
    """Compiles the documents of rule files, remembering the windows used and the SLO specs found."""

    def __init__(self) -> None:
        self.rules: list[CompiledRule] = []
        self.slos: list[SloSpec] = []
        self.windows: list[WindowUse] = []
        self._groups: dict[str, str] = {}  # group name → where first defined

    def add_file(self, path: Path) -> None:
        source = Source(path)
        for doc in source.documents():
            top = Section(source, doc, "", doc.line)
            if top.has("groups"):
                top.allow("groups")
                for group in top.sections("groups", required=True):
                    self._group(group)
            elif top.has("version"):
                rules, spec = slo_file.compile_document(top, self)
                self.slos.extend(spec)
                self.rules.extend(rules)
            else:
                top.fail(None, "expected `groups:` (rules) or `version: prometheus/v1` (an SLO document)")

    def claim_group(self, section: Section, name: str) -> None:
        here = f"{section.source.path}:{section.line()}"
        if name in self._groups:
            section.fail("name", f"group {name!r} is already defined at {self._groups[name]}: give it another name")
        self._groups[name] = here

    def _group(self, g: Section) -> None:
        g.allow("name", "interval", "rules")
        name = g.text("name", required=True)
        self.claim_group(g, name)
        compiled = [self._rule(r, name) for r in g.sections("rules", required=True)]
        if not compiled:
            g.fail("rules", "a group needs at least one rule")
        pages = all(rule.labels[SEVERITY] == "page" for rule, _ in compiled)
        interval = g.duration("interval", PAGE_INTERVAL_S if pages else TICKET_INTERVAL_S)
        if interval <= 0:
            g.fail("interval", "must be above 0")
        for rule, fields in compiled:
            self.rules.append(type(rule)(**{**fields, "interval_s": interval}))

    def _rule(self, r: Section, group: str) -> tuple[CompiledRule, dict]:
        kind = r.text("type", "threshold")
        common = ("alert", "type", "for", "labels", "annotations", "runbook")
        name = r.text("alert", required=True)
        labels = rule_labels(r, name)
        annotations = rule_annotations(r)
        base = dict(name=name, group=group, interval_s=0.0, labels=labels, annotations=annotations)
        base["runbook"] = r.text("runbook")
        if kind == "threshold":
            r.allow(*common, "expr", "op", "threshold", "and", "keep_firing_for")
            first = self._condition(r)
            rest = [self._condition(c) for c in r.sections("and")]
            for i, cond in enumerate(rest):
                if cond.expr.by != first.expr.by:
                    r.fail(
                        "and",
                        f"[{i}] groups by {list(cond.expr.by)}: use the first expression's by {list(first.expr.by)}",
                    )
            fields = dict(
                base,
                conditions=(first, *rest),
                for_s=r.duration("for", 0.0),
                keep_firing_for_s=r.duration("keep_firing_for", 0.0),
            )
            return ThresholdRule(**fields), fields
        if kind == "absence":
            r.allow(*common, "metric", "by", "matchers", "lookback")
            metric, table = catalogue_metric(r, "metric")
            by = tuple(by_keys(r, "by"))
            if not by:
                r.fail("by", "name the source identity, e.g. host.name, gpu.uuid or llm.endpoint")
            absent_for = r.duration("for", required=True)
            lookback = r.duration("lookback", DEFAULT_LOOKBACK_S)
            if lookback <= absent_for:
                r.fail(
                    "lookback",
                    f"must be longer than `for` ({format_duration(absent_for)}): seen, then missing",
                )
            query = WindowQuery(
                metric, table, "last_seen", whole_seconds(r, "lookback", lookback), matchers(r, "matchers"), by
            )
            self.windows.append(WindowUse(f"{r.source.path}:{r.line('for')}: {r.where}.for", metric, absent_for))
            fields = dict(base, query=query, absent_for_s=absent_for)
            return AbsenceRule(**fields), fields
        r.fail("type", f"unknown rule type {kind!r}: use threshold (the default) or absence")

    def _condition(self, r: Section) -> Condition:
        op = r.get("op", str, required=True)
        if op not in OPS:
            r.fail("op", f"unknown comparison {op!r}: use one of {' '.join(OPS)}")
        threshold = r.get("threshold", float, required=True)
        return Condition(self.expr(r.section("expr", required=True)), op, threshold)

    def expr(self, e: Section, by: tuple[str, ...] | None = None) -> Expr:
        e.allow("metric", "function", "window", "matchers", "by", "quantile", "le", "ratio_to")
        query = self.query(e, by)
        ratio = e.section("ratio_to")
        ratio_query = None
        if ratio is not None:
            ratio.allow("metric", "function", "window", "matchers")
            ratio_query = self.query(ratio, query.group_by, default_window=query.window_s)
        return Expr(query, ratio_query)

    def query(self, e: Section, by: tuple[str, ...] | None = None, default_window: float | None = None) -> WindowQuery:
        metric, table = catalogue_metric(e, "metric")
        function = e.text("function", required=True)
        allowed = FUNCTIONS_BY_KIND[table] - {"last_seen"}
        if function not in allowed:
            e.fail(
                "function",
                f"{function!r} does not suit {metric}, a {CATALOGUE[metric].kind}: use {', '.join(sorted(allowed))}",
            )
        window = e.duration("window", default_window, required=default_window is None)
        quantile = le = None
        if function == "quantile":
            quantile = e.get("quantile", float, required=True)
            if not 0 <= quantile <= 1:
                e.fail("quantile", f"{quantile} is not in [0, 1]: p99 is 0.99")
        elif e.has("quantile"):
            e.fail("quantile", "only for function quantile")
        if function == "le_count":
            le = bucket_bound(e, "le", metric)
        elif e.has("le"):
            e.fail("le", "only for function le_count")
        group_by = tuple(by_keys(e, "by")) if by is None else by
        self.windows.append(WindowUse(f"{e.source.path}:{e.line('window')}: {e.where}.window", metric, window))
        return WindowQuery(
            metric, table, function, whole_seconds(e, "window", window), matchers(e, "matchers"), group_by, quantile, le
        )


def load_rule_files(paths: Sequence[Path]) -> list[CompiledRule]:
    """Every rule of the files, SLO burn-rate rules included; a RuleError names the first bad line."""
    compiler = Compiler()
    for path in paths:
        compiler.add_file(Path(path))
    return compiler.rules


def load_slos(paths: Sequence[Path]) -> list[SloSpec]:
    compiler = Compiler()
    for path in paths:
        compiler.add_file(Path(path))
    return compiler.slos


def default_pack() -> list[Path]:
    """The rule files shipped with Vigil (package data under alerting/pack/), loaded by default."""
    pack = resources.files("alerting") / "pack"
    return sorted(Path(str(p)) for p in pack.iterdir() if p.name.endswith(".yaml"))


def check_file(path: Path, sample_interval_s: Mapping[str, float] | None = None) -> list[str]:
    """Warnings for a rule file that loads (a RuleError where it does not).

    `sample_interval_s` maps metric names or prefixes to seconds between samples (default: under
    `vigil up`, `UP_INTERVALS_S`); a window shorter than two intervals is warned of.
    """
    intervals = {**UP_INTERVALS_S, **(sample_interval_s or {})}
    compiler = Compiler()
    compiler.add_file(Path(path))
    warnings = []
    for use in compiler.windows:
        every = sample_interval(use.metric, intervals)
        if every is not None and use.window_s < 2 * every:
            warnings.append(
                f"{use.where}: {format_duration(use.window_s)} cannot hold two samples of {use.metric} "
                f"(sampled every {every:g}s): use at least {format_duration(2 * every)}, or it never fires"
            )
    return warnings
