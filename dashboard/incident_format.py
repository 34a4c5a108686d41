"""What the incident pages show, from the incidents view's JSON shapes: pure functions, no HTTP, no store.

Everything here returns plain text and URLs built with `quote`/`urlencode`; the templates escape the
rest (titles, labels and notes are whatever a series, a rule file or a user carried, HTML included).

Charts follow the alerts' labels: alerting hands the dashboard no rule expressions, so an alert
naming `gpu.uuid` gets that GPU's charts, `host.name` alone its node's, `llm.endpoint` the engine's,
`service` and `slo` the SLO's budget; each over the incident's time and a margin either side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from dashboard.alert_format import ALERTNAME, age, runbook_link, sorted_labels, unix
from dashboard.run_format import run_link, when
from vigil import names as n
from vigil.store.fleet import Mark

MARGIN_S = 600  # before the first alert and after the end: the chart shows what led up to it and what followed
MARGIN_SHARE = 0.1  # of a long incident's length, when that is more than MARGIN_S
MAX_SUBJECTS = 3  # GPUs (or nodes, endpoints, SLOs) charted per incident; the rest are linked
MAX_MARKS = 500
QUIET_STEP_EVENTS = frozenset({"started", "planned"})  # a step's outcome is marked, not its start
KIND_LABELS = {
    "alert": "alert",
    "opened": "opened",
    "note": "note",
    "silence": "silence",
    "runbook_run": "runbook run",
    "runbook_step": "runbook step",
    "closed": "closed",
    "resolved": "resolved",
}
# Series the /api/v1/series route answers (gauges): per subject kind, (title, metric, unit, group_by).
GPU_CHARTS = (
    ("Utilization", n.GPU_UTILIZATION.name, "%", ""),
    ("Temperature", n.GPU_TEMPERATURE.name, "Cel", ""),
    ("Power draw", n.GPU_POWER_DRAW.name, "W", ""),
    ("Memory used", n.GPU_MEMORY_USED.name, "By", ""),
    ("Up (1) or lost (0)", n.GPU_UP.name, "", ""),
)
NODE_CHARTS = (
    ("Utilization", n.GPU_UTILIZATION.name, "%", n.GPU_INDEX),
    ("Temperature", n.GPU_TEMPERATURE.name, "Cel", n.GPU_INDEX),
    ("GPUs up", n.GPU_UP.name, "", n.GPU_INDEX),
)
ENDPOINT_CHARTS = (
    ("Running requests", n.LLM_RUNNING.name, "", ""),
    ("Waiting requests", n.LLM_WAITING.name, "", ""),
    ("KV-cache usage", n.LLM_KV_USAGE.name, "ratio", ""),
)


def incident_link(incident_id: str) -> str:
    return f"/incidents/{quote(incident_id, safe='')}"


def marks_link(incident_id: str) -> str:
    return f"/api/v1/incidents/{quote(incident_id, safe='')}/marks"


def duration(start: float | None, end: float | None) -> str:
    return age(end - start) if start is not None and end is not None else ""


def incident_row(incident: Mapping[str, Any], now: float) -> dict[str, Any]:
    """One row of `table#incidents`."""
    opened, resolved = unix(incident.get("openedAt")), unix(incident.get("resolvedAt"))
    return {
        "id": str(incident.get("id", "")),
        "link": incident_link(str(incident.get("id", ""))),
        "title": incident.get("title", ""),
        "severity": incident.get("severity") or "",
        "status": incident.get("status", ""),
        "opened": when(opened),
        "resolved": when(resolved),
        "closed_by": incident.get("closedBy") or "",
        "lasted": duration(opened, resolved if resolved is not None else now),
        "alerts": incident.get("alertCount", 0),
        "firing": incident.get("firingCount", 0),
    }


def window(incident: Mapping[str, Any], now: float) -> tuple[float, float | None]:
    """The charts' [start, end) in unix seconds: from a margin before the first alert to a margin after the
    end; None for the end while that is still to come (the chart's data then runs to now at each refresh)."""
    starts = [unix(incident.get("openedAt"))] + [unix(a.get("activeAt")) for a in incident.get("alerts", [])]
    start = min((s for s in starts if s is not None), default=now)
    resolved = unix(incident.get("resolvedAt"))
    last = now if resolved is None else resolved
    margin = max(MARGIN_S, (last - start) * MARGIN_SHARE)
    end = None if resolved is None or resolved + margin > now else resolved + margin
    return math.floor(start - margin), None if end is None else math.ceil(end)


def _times(start: float, end: float | None) -> list[tuple[str, str]]:
    return [("start", str(int(start)))] + ([("end", str(int(end)))] if end is not None else [])


def _series_chart(
    title: str,
    metric: str,
    unit: str,
    filters: Sequence[str],
    group_by: str,
    span: tuple[float, float | None],
    marks: str,
) -> dict[str, str]:
    query = [("metric", metric), *_times(*span), *(("filter", f) for f in filters)]
    if group_by:
        query.append(("group_by", group_by))
    return {"title": title, "src": f"/api/v1/series?{urlencode(query)}", "kind": "line", "unit": unit, "marks": marks}


def _distinct(alerts: Sequence[Mapping[str, Any]], key: str, unless: str = "") -> list[str]:
    seen: dict[str, None] = {}
    for a in alerts:
        labels = a.get("labels") or {}
        if labels.get(key) and not (unless and labels.get(unless)):
            seen.setdefault(str(labels[key]), None)
    return list(seen)


def subjects(alerts: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """What the alerts name, each kind in the order the alerts name them: GPUs, nodes (only where no GPU
    of theirs is named), endpoints, SLOs (`service:slo`)."""
    slos: dict[str, None] = {}
    for a in alerts:
        labels = a.get("labels") or {}
        if labels.get("slo") and labels.get("service"):
            slos.setdefault(f"{labels['service']}:{labels['slo']}", None)
    return {
        "gpus": _distinct(alerts, n.GPU_UUID),
        "nodes": _distinct(alerts, n.HOST_NAME, unless=n.GPU_UUID),
        "endpoints": _distinct(alerts, n.LLM_ENDPOINT),
        "slos": list(slos),
    }


def chart_groups(incident: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
    """One group of charts per subject the alerts name (at most `MAX_SUBJECTS` of each kind), each chart
    in the chart contract with the incident's marks."""
    span = window(incident, now)
    marks = marks_link(str(incident.get("id", "")))
    named = subjects(incident.get("alerts", []))
    groups: list[dict[str, Any]] = []
    for uuid in named["gpus"][:MAX_SUBJECTS]:
        charts = [_series_chart(t, m, u, [f"{n.GPU_UUID}={uuid}"], g, span, marks) for t, m, u, g in GPU_CHARTS]
        groups.append({"title": f"GPU {uuid}", "link": f"/gpus/{quote(uuid, safe='')}", "charts": charts})
    for host in named["nodes"][:MAX_SUBJECTS]:
        charts = [_series_chart(t, m, u, [f"{n.HOST_NAME}={host}"], g, span, marks) for t, m, u, g in NODE_CHARTS]
        groups.append({"title": f"Node {host}", "link": f"/nodes/{quote(host, safe='')}", "charts": charts})
    for endpoint in named["endpoints"][:MAX_SUBJECTS]:
        filters = [f"{n.LLM_ENDPOINT}={endpoint}"]
        charts = [_series_chart(t, m, u, filters, g, span, marks) for t, m, u, g in ENDPOINT_CHARTS]
        groups.append({"title": f"Endpoint {endpoint}", "link": "/inference", "charts": charts})
    for slo in named["slos"][:MAX_SUBJECTS]:
        src = f"/api/v1/slos/{quote(slo, safe='')}/budget?{urlencode(_times(*span))}"
        chart = {"title": "Error budget remaining", "src": src, "kind": "line", "unit": "%", "marks": marks}
        groups.append({"title": f"SLO {slo}", "link": "/slos", "charts": [chart]})
    return groups


def more_subjects(incident: Mapping[str, Any]) -> list[dict[str, str]]:
    """Links to the GPUs and nodes named past `MAX_SUBJECTS`, which get no charts here."""
    named = subjects(incident.get("alerts", []))
    links = [{"text": f"GPU {u}", "link": f"/gpus/{quote(u, safe='')}"} for u in named["gpus"][MAX_SUBJECTS:]]
    links += [{"text": f"Node {h}", "link": f"/nodes/{quote(h, safe='')}"} for h in named["nodes"][MAX_SUBJECTS:]]
    return links


def alert_row(alert: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the incident's alerts."""
    labels = alert.get("labels") or {}
    return {
        "fingerprint": alert.get("fingerprint", ""),
        "name": labels.get(ALERTNAME, ""),
        "state": "firing" if alert.get("firing") else "resolved",
        "labels": sorted_labels(labels),
        "severity": alert.get("severity") or "",
        "since": when(unix(alert.get("activeAt"))),
        "runbook": runbook_link({"runbook": alert.get("runbook")}),
    }


def entry_row(entry: Mapping[str, Any], opened: float | None) -> dict[str, Any]:
    """One `li.entry` of the timeline: when (and how long after the opening), who, what, and a link."""
    at = unix(entry.get("at"))
    kind = str(entry.get("kind", ""))
    offset = ""
    if at is not None and opened is not None:
        offset = ("+" if at >= opened else "-") + age(abs(at - opened))
    link, link_text = "", ""
    if kind in ("runbook_run", "runbook_step") and entry.get("run"):
        link, link_text = run_link(str(entry["run"])), "run"
    elif kind == "silence":
        link, link_text = "/alerts", "silences"
    return {
        "kind": kind,
        "kind_label": KIND_LABELS.get(kind, kind),
        "at": when(at),
        "offset": offset,
        "actor": entry.get("actor") or "",
        "text": entry.get("text") or "",
        "labels": sorted_labels(entry.get("labels") or {}) if kind == "alert" else [],
        "matchers": [f'{m[0]}{m[1]}"{m[2]}"' for m in entry.get("matchers") or [] if len(m) == 3],
        "state": entry.get("to") or entry.get("state") or entry.get("event") or "",
        "link": link,
        "link_text": link_text,
    }


def _mark(entry: Mapping[str, Any]) -> Mark | None:
    at = unix(entry.get("at"))
    if at is None:
        return None
    kind, actor = entry.get("kind"), entry.get("actor") or ""
    by = f" by {actor}" if actor else ""
    if kind == "alert":
        name = (entry.get("labels") or {}).get(ALERTNAME, "alert")
        if "to" not in entry:  # resolved for a reason no transition records (a restart)
            return Mark(at, f"{name} resolved", "alert")
        if entry["to"] not in ("firing", "inactive"):
            return None
        return Mark(at, f"{name} {'firing' if entry['to'] == 'firing' else 'resolved'}", "alert")
    if kind == "runbook_run":
        return Mark(at, f"{entry.get('runbook', 'runbook')} started{by}", "runbook")
    if kind == "runbook_step":
        if entry.get("event") in QUIET_STEP_EVENTS:
            return None
        return Mark(at, f"{entry.get('stepName', 'step')} {entry.get('event', '')}{by}", "runbook")
    if kind in ("note", "silence"):
        return Mark(at, f"{kind}{by}", str(kind))
    if kind in ("opened", "closed", "resolved"):
        return Mark(at, f"incident {kind}{by}", "incident")
    return None


def timeline_marks(timeline: Sequence[Mapping[str, Any]]) -> list[Mark]:
    """The chart marks of a timeline: alerts firing and resolving, runbook runs and step outcomes,
    silences, notes, and the incident's opening and end."""
    return [m for m in (_mark(e) for e in timeline) if m is not None]


def incident_marks(incident: Mapping[str, Any], xids: Sequence[Mark]) -> list[Mark]:
    """The timeline's marks and the XIDs of its GPUs, in time order, the newest `MAX_MARKS`."""
    found = sorted([*timeline_marks(incident.get("timeline", [])), *xids], key=lambda m: m.t)
    return found[-MAX_MARKS:]
