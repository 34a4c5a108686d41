"""Runbook files → `Runbook`s, validated at load: every error names file:line and what to do.

name: inference-errors
description: Shed load until the error budget stops burning.
target: workload                  # workload | gpu | node
params:
  fraction: {type: float, default: 0.5, min: 0, max: 1, description: share of requests refused}
  gpu: {type: str, default: "", label: gpu.uuid}   # a run an alert starts takes the alert's gpu.uuid
steps:
  - name: shed load
    action: shed
    with: {fraction: "${fraction}"}
    timeout: 10s
    retries: 2
  - name: errors gone
    wait_for: {metric: llm.requests.finished, function: increase, window: 30s,
               matchers: {outcome: error, llm.endpoint: "${target}"}, op: "==", value: 0}
    timeout: 90s
  - approve: "Scale the deployment back up?"
  - note: "Done."
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import re2

from runbooks.model import (
    ACTIONS,
    OPS,
    PARAM_TYPES,
    CheckExpr,
    Param,
    Runbook,
    Step,
    StepKind,
    TargetKind,
    placeholders,
)
from runbooks.source import RunbookFileError, Section, Source, YList, YMap
from vigil.names import CATALOGUE
from vigil.store.window import FUNCTIONS_BY_KIND, Matcher

__all__ = ["RunbookFileError", "check_file", "default_pack", "load_file", "load_runbooks"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]{0,254}$")
_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_.\-/]*)\s*(=~|!~|!=|=)\s*"(.*)"\s*$')
MAX_STEPS = 64
DEFAULT_TIMEOUT_S = {
    StepKind.ACTION: 30.0,
    StepKind.CHECK: 15.0,
    StepKind.WAIT_FOR: 120.0,
    StepKind.APPROVE: 3600.0,
    StepKind.NOTE: 1.0,
}
MAX_TIMEOUT_S = 24 * 3600.0
MAX_RETRIES = 10


def default_pack() -> list[Path]:
    """The runbooks shipped for the default rule pack."""
    pack = resources.files("runbooks") / "pack"
    return sorted(Path(str(p)) for p in pack.iterdir() if p.name.endswith((".yaml", ".yml")))


def check_file(path: Path) -> Runbook:
    """Load one file; raises RunbookFileError naming file:line."""
    return load_file(path)


def load_runbooks(paths: Iterable[Path]) -> dict[str, Runbook]:
    """Every file's runbook by name; a name given twice is an error naming both files."""
    out: dict[str, Runbook] = {}
    for path in paths:
        book = load_file(path)
        if book.name in out:
            raise RunbookFileError(f"{path}:1: runbook {book.name!r} is already defined in {out[book.name].file}")
        out[book.name] = book
    return out


def load_file(path: Path, text: str | None = None) -> Runbook:
    source = Source(path, text)
    top = Section(source, source.document(), "", 1)
    top.allow("name", "description", "target", "params", "steps")
    name = top.text("name", required=True)
    if not _NAME.match(name):
        top.fail("name", f"{name!r}: lower-case letters, digits and -, at most 63 (it is part of URLs)")
    target_text = top.text("target", required=True)
    try:
        target = TargetKind(target_text)
    except ValueError:
        top.fail("target", f"unknown target {target_text!r}: use one of {', '.join(t.value for t in TargetKind)}")
    params = tuple(_params(top))
    known = {p.name for p in params} | {"target"}
    items = top.sections("steps", required=True)
    if not items:
        top.fail("steps", "a runbook needs at least one step")
    if len(items) > MAX_STEPS:
        top.fail("steps", f"at most {MAX_STEPS} steps")
    steps = tuple(_step(s, i, target, known) for i, s in enumerate(items))
    names = [s.name for s in steps]
    for i, step in enumerate(steps):
        if names.index(step.name) != i:
            items[i].fail("name", f"step name {step.name!r} is used twice: step names identify steps in the log")
    return Runbook(name, top.text("description", ""), target, params, steps, str(path))


def _params(top: Section) -> Iterator[Param]:
    section = top.section("params")
    if section is None:
        return
    for key in section.data:
        if not _PARAM.match(key) or key == "target":
            section.fail(key, f"parameter {key!r}: letters, digits and _, not `target` (that is the run's target)")
        p = section.section(key, required=True)
        assert p is not None
        p.allow("type", "default", "description", "min", "max", "label")
        kind = p.text("type", required=True)
        if kind not in PARAM_TYPES:
            p.fail("type", f"unknown type {kind!r}: use one of {', '.join(PARAM_TYPES)}")
        if not p.given("default"):
            p.fail(None, "'default' is required: a run started from an alert gives no parameters")
        low, high = p.get("min", float), p.get("max", float)
        label = p.text("label", "")
        if p.given("label") and not _LABEL.match(label):
            p.fail("label", f"{label!r} is not a label name: letters, digits and _ . - /, e.g. host.name")
        param = Param(key, kind, None, p.text("description", ""), low, high, label)
        try:
            default = param.coerce(p.data["default"])
        except ValueError as exc:
            p.fail("default", str(exc))
        yield Param(key, kind, default, param.description, low, high, label)


def _step(s: Section, index: int, target: TargetKind, known: set[str]) -> Step:
    kinds = [k for k in StepKind if k.value in s.data]
    if len(kinds) != 1:
        s.fail(None, f"a step has exactly one of {', '.join(k.value for k in StepKind)}; found {len(kinds) or 'none'}")
    kind = kinds[0]
    common = ("name", "timeout", "retries", "retry_delay")
    timeout = s.duration("timeout", DEFAULT_TIMEOUT_S[kind])
    if not 0 < timeout <= MAX_TIMEOUT_S:
        s.fail("timeout", "must be above 0 and at most 24h")
    retries = s.get("retries", int, 0)
    if not 0 <= retries <= MAX_RETRIES:
        s.fail("retries", f"from 0 to {MAX_RETRIES}")
    if kind in (StepKind.APPROVE, StepKind.NOTE) and s.given("retries"):
        s.fail("retries", f"a {kind.value} step is not retried")
    base: dict[str, Any] = dict(
        index=index, kind=kind, timeout_s=timeout, retries=retries, retry_delay_s=s.duration("retry_delay", 1.0)
    )
    if kind is StepKind.ACTION:
        s.allow(*common, "action", "with")
        verb = s.text("action", required=True)
        allowed = ACTIONS[target]
        if verb not in allowed:
            s.fail("action", f"{verb!r} is not an action on a {target.value} target: use one of {', '.join(allowed)}")
        args = s.get("with", YMap, YMap())
        spec = allowed[verb]
        for key, value in args.items():
            if key not in spec:
                s.fail("with", f"{verb} takes no argument {key!r}; it takes {', '.join(spec) or 'none'}")
            _placeholders_known(s, "with", str(value), known)
        missing = [k for k, (_, required) in spec.items() if required and k not in args]
        if missing:
            s.fail("with", f"{verb} needs {', '.join(missing)}")
        if verb == "set_config" and not args:
            s.fail("with", f"set_config needs at least one of {', '.join(spec)}")
        name = s.text("name", verb)
        return Step(name=name, action=verb, args=dict(args), **base)
    if kind in (StepKind.CHECK, StepKind.WAIT_FOR):
        s.allow(*common, kind.value, "every")
        check = _check(s.section(kind.value, required=True), known)  # type: ignore[arg-type]
        every = s.duration("every", 2.0)
        if kind is StepKind.WAIT_FOR and not 0 < every <= timeout:
            s.fail("every", "must be above 0 and at most the step's timeout")
        return Step(name=s.text("name", f"{kind.value} {check.metric}"), check=check, every_s=every, **base)
    s.allow(*common, kind.value)
    text = s.text(kind.value, required=True)
    _placeholders_known(s, kind.value, text, known)
    return Step(name=s.text("name", f"{kind.value} {index + 1}"), text=text, **base)


def _placeholders_known(s: Section, key: str, text: str, known: set[str]) -> None:
    unknown = placeholders(text) - known
    if unknown:
        s.fail(
            key,
            f"unknown placeholder(s) {', '.join(sorted(unknown))}: "
            f"use ${{target}} or a parameter ({', '.join(sorted(known))})",
        )


def _metric(e: Section, key: str) -> tuple[str, str]:
    metric = e.text(key, required=True)
    if metric not in CATALOGUE:
        close = [m for m in CATALOGUE if m.startswith(metric.split(".")[0] + ".")][:8]
        e.fail(key, f"{metric!r} is not in the catalogue (vigil/names.py); e.g. {', '.join(close) or 'gpu.up'}")
    kind = str(CATALOGUE[metric].kind)
    return metric, "sum" if kind == "counter" else kind


def _function(e: Section, kind: str) -> str:
    function = e.text("function", required=True)
    allowed = FUNCTIONS_BY_KIND[kind] - {"last_seen"}
    if function not in allowed:
        e.fail("function", f"{function!r} does not apply to a {kind} metric: use one of {', '.join(sorted(allowed))}")
    return function


def _matchers(e: Section, key: str, known: set[str]) -> tuple[Matcher, ...]:
    value = e.get(key, (YMap, YList), [])
    out: list[Matcher] = []
    if isinstance(value, dict):
        out = [Matcher(k, "=", str(v)) for k, v in value.items()]
    else:
        for item in value:
            m = _MATCHER.match(item) if isinstance(item, str) else None
            if not m:
                e.fail(key, f'{item!r}: write key op "value", e.g. outcome="error" or xid=~"48|79"')
            out.append(Matcher(m.group(1), m.group(2), m.group(3)))  # type: ignore[arg-type]
    for matcher in out:
        _placeholders_known(e, key, matcher.value, known)
        if matcher.op in ("=~", "!~") and not placeholders(matcher.value):
            try:
                re2.compile(matcher.value)
            except re2.error:
                e.fail(key, f"{matcher.value!r} is not an RE2 regular expression")
    return tuple(sorted(out, key=lambda m: (m.key, m.op, m.value)))


def _check(e: Section, known: set[str]) -> CheckExpr:
    e.allow("metric", "function", "window", "matchers", "by", "ratio_to", "op", "value", "quantile", "le", "empty")
    metric, kind = _metric(e, "metric")
    function = _function(e, kind)
    window = e.duration("window", required=True)
    if window < 1 or window != int(window) or window > 86400 * 31:
        e.fail("window", "a whole number of seconds from 1s to 31 days")
    op = e.text("op", required=True)
    if op not in OPS:
        e.fail("op", f"unknown comparison {op!r}: use one of {' '.join(OPS)}")
    by = e.get("by", (str, YList), [])
    by = (by,) if isinstance(by, str) else tuple(str(b) for b in by)
    quantile = e.get("quantile", float)
    if function == "quantile" and (quantile is None or not 0 <= quantile <= 1):
        e.fail("quantile", "the quantile function needs quantile: a number from 0 to 1")
    le = e.get("le", float)
    if function == "le_count" and le is None:
        e.fail("le", "le_count needs le: a bucket bound of the histogram")
    empty = e.text("empty", "fail")
    if empty not in ("fail", "pass"):
        e.fail("empty", "fail (the default: no data proves nothing) or pass")
    matchers = _matchers(e, "matchers", known)
    ratio = e.section("ratio_to")
    ratio_to = None
    if ratio is not None:
        ratio.allow("metric", "function", "matchers")
        r_metric, r_kind = _metric(ratio, "metric")
        ratio_to = (r_metric, r_kind, _function(ratio, r_kind))
        # the denominator keeps the numerator's matchers on other keys: "errors / all requests of this endpoint"
        own = _matchers(ratio, "matchers", known)
        keys = {m.key for m in own}
        ratio_matchers = tuple(
            sorted(
                [*own, *(m for m in matchers if m.key not in keys and m.key in by_target(matchers))],
                key=lambda m: (m.key, m.op, m.value),
            )
        )
    else:
        ratio_matchers = ()
    return CheckExpr(
        metric,
        kind,
        function,
        int(window),
        matchers,
        by,
        op,
        e.get("value", float, required=True),
        ratio_to,
        ratio_matchers,
        quantile,
        le,
        empty == "pass",
    )


def by_target(matchers: tuple[Matcher, ...]) -> set[str]:
    """Keys of matchers that select the target (hold `${target}`): the denominator of a ratio keeps them."""
    return {m.key for m in matchers if "target" in placeholders(m.value)}
