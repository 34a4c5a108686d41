"""What the runbook pages show, from the runbook view's JSON shapes: pure functions, no HTTP, no store.

Everything here returns plain text; the templates escape it (parameters, targets and step outputs are
whatever a user typed or a target answered, HTML included).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from dashboard.alert_format import age

FINISHED = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
RETRYABLE = frozenset({"failed", "interrupted"})
OUTPUT_SHOWN = 4000  # characters of one step output on a page; the API answers it whole (up to 64 KiB)
_OPENS = frozenset({"started", "waiting", "planned"})  # events that open a step's attempt
_INPUTS = {"int": ("number", "1"), "float": ("number", "any"), "str": ("text", ""), "bool": ("select", "")}


def when(unix_s: float | None) -> str:
    if not unix_s:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix_s))


def took(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else age(seconds)


def run_link(run_id: str) -> str:
    return f"/runs/{quote(run_id, safe='')}"


def runbook_link(name: str) -> str:
    return f"/runbooks/{quote(name, safe='')}"


def text_value(value: Any) -> str:
    """A parameter value as a form field holds it (a bool as the `true`/`false` its parameter parses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def param_fields(book: Mapping[str, Any], given: Mapping[str, str]) -> list[dict[str, Any]]:
    """The run form's inputs, one per parameter, typed, holding what was given or the default."""
    fields = []
    for p in book.get("params", []):
        kind, step = _INPUTS.get(str(p.get("type")), ("text", ""))
        fields.append({
            "name": p["name"], "type": p.get("type", "str"), "input": kind, "step": step,
            "min": "" if p.get("min") is None else f"{p['min']:g}",
            "max": "" if p.get("max") is None else f"{p['max']:g}",
            "value": given.get(p["name"], text_value(p.get("default"))),
            "default": text_value(p.get("default")), "description": p.get("description", ""),
        })  # fmt: skip
    return fields


def form_params(book: Mapping[str, Any], form: Mapping[str, Any]) -> dict[str, str]:
    """The parameters a run form gave: only fields named after the runbook's parameters; empty means default."""
    out = {}
    for p in book.get("params", []):
        value = form.get(p["name"])
        if isinstance(value, str) and value.strip():
            out[p["name"]] = value.strip()
    return out


def run_row(run: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": run["id"],
        "link": run_link(run["id"]),
        "runbook": run.get("runbook", ""),
        "runbook_link": runbook_link(run.get("runbook", "")),
        "target": run.get("target", ""),
        "who": run.get("started_by", ""),
        "auto": bool(run.get("auto")),
        "dry_run": bool(run.get("dry_run")),
        "started": when(run.get("started_at")),
        "state": run.get("state", ""),
        "reason": run.get("reason", ""),
    }


def output_text(output: Mapping[str, Any] | None) -> str:
    """A step's output as indented JSON, cut to OUTPUT_SHOWN characters (and saying so)."""
    if not output:
        return ""
    text = json.dumps(output, indent=1, sort_keys=True, default=str)
    if len(text) > OUTPUT_SHOWN:
        return text[:OUTPUT_SHOWN] + f"\n… cut at {OUTPUT_SHOWN} characters: the run's JSON has it whole"
    return text


def _log_row(e: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "at": when(e.get("at")),
        "step": int(e.get("step", 0)) + 1,
        "name": e.get("step_name", ""),
        "attempt": e.get("attempt", 0),
        "event": e.get("event", ""),
        "actor": e.get("actor", ""),
        "message": e.get("message", ""),
    }


def _step_times(log: list[Mapping[str, Any]], index: int, now: float) -> tuple[str, str]:
    """(started, took) of a step's latest go: from the first attempt's opening event to its last event.

    A re-run from a failed step starts attempt 1 again, so an earlier go's time is not counted in.
    """
    events = [e for e in log if e.get("step") == index]
    if not events:
        return "", ""
    opened = [i for i, e in enumerate(events) if e.get("event") in _OPENS and int(e.get("attempt", 0)) <= 1]
    go = events[opened[-1] :] if opened else events
    start, last = float(go[0]["at"]), go[-1]
    if last.get("event") in ("started", "waiting"):
        return when(start), f"{took(max(0.0, now - start))} so far"
    return when(start), took(max(0.0, float(last["at"]) - start))


def run_page(run: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A run's page: its steps with state, output and timing, approvals, the step log and which buttons apply."""
    log = list(run.get("log", []))
    outputs: dict[int, Mapping[str, Any]] = {}
    for e in log:
        if e.get("output"):
            outputs[int(e["step"])] = e["output"]
    steps = []
    for s in run.get("steps", []):
        started, spent = _step_times(log, s["index"], now)
        steps.append({
            "index": s["index"], "number": s["index"] + 1, "name": s.get("name", ""), "kind": s.get("kind", ""),
            "summary": s.get("summary", ""), "status": s.get("status", "pending"), "attempts": s.get("attempts", 0),
            "message": s.get("message", ""), "started": started, "took": spent,
            "output": output_text(outputs.get(s["index"])),
        })  # fmt: skip
    names = {s["index"]: s.get("name", "") for s in run.get("steps", [])}
    state = run.get("state", "")
    dry = bool(run.get("dry_run"))
    return {
        **run_row(run),
        "params": sorted((k, text_value(v)) for k, v in (run.get("params") or {}).items()),
        "origin": run.get("origin", ""),
        "updated": when(run.get("updated_at")),
        "actor": run.get("actor", ""),
        "finished": state in FINISHED,
        "steps": steps,
        "approvals": [
            {"step": a["step"] + 1, "name": names.get(a["step"], ""), "by": a.get("by", ""), "at": when(a.get("at"))}
            for a in run.get("approvals", [])
        ],
        "log": [_log_row(e) for e in log],
        "can_approve": state == "waiting_approval",
        "can_retry": state in RETRYABLE and not dry,
        "can_cancel": state in ("running", "waiting_approval") and not dry,
    }
