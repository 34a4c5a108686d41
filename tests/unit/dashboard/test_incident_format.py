"""What the incident pages show, from the incidents view's JSON: the charts' window and subjects, the
timeline rows, the marks; and the coalescing of the marks' reads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dashboard import incident_format as f
from dashboard.incident_marks import Coalesced
from vigil.store.fleet import Mark

T0 = 1_700_000_000.0


def at(s: float) -> str:
    """RFC 3339 in milliseconds, as the incidents view answers times."""
    return datetime.fromtimestamp(T0 + s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def incident(resolved: float | None = None, **labels: str) -> dict[str, Any]:
    return {
        "id": "abc",
        "title": "HotGpu",
        "openedAt": at(0),
        "resolvedAt": None if resolved is None else at(resolved),
        "alerts": [{"labels": {"alertname": "HotGpu", **labels}, "activeAt": at(-30), "firing": True}],
        "timeline": [],
    }


def test_the_window_runs_from_a_margin_before_the_first_alert_to_now_while_open() -> None:
    assert f.window(incident(), T0 + 60) == (int(T0 - 30 - f.MARGIN_S), None)


def test_a_resolved_incident_ends_a_margin_after_or_runs_to_now_while_that_is_still_to_come() -> None:
    assert f.window(incident(resolved=100), T0 + 100 + f.MARGIN_S + 1) == (
        int(T0 - 30 - f.MARGIN_S),
        int(T0 + 100 + f.MARGIN_S),
    )
    assert f.window(incident(resolved=100), T0 + 200)[1] is None
    long = f.window(incident(resolved=100_000), T0 + 10**6)  # a day long: the margin grows with it
    assert long[1] == int(T0 + 100_000 + (100_030) * f.MARGIN_SHARE)


def test_charts_follow_the_labels_the_alerts_carry() -> None:
    gpu = f.chart_groups(incident(**{"gpu.uuid": "GPU-1", "host.name": "h<1>"}), T0 + 60)
    assert [g["title"] for g in gpu] == ["GPU GPU-1"]  # the node is not charted when its GPU is
    src = parse_qs(urlsplit(gpu[0]["charts"][0]["src"]).query)
    assert src == {
        "metric": ["gpu.utilization"],
        "start": [str(int(T0 - 30 - f.MARGIN_S))],
        "filter": ["gpu.uuid=GPU-1"],
    }
    assert gpu[0]["charts"][0]["marks"] == "/api/v1/incidents/abc/marks"
    node = f.chart_groups(incident(**{"host.name": "h/1"}), T0 + 60)
    assert node[0]["link"] == "/nodes/h%2F1" and "group_by=gpu.index" in node[0]["charts"][0]["src"]
    endpoint = f.chart_groups(incident(**{"llm.endpoint": "http://e:8000"}), T0 + 60)
    assert [c["title"] for c in endpoint[0]["charts"]] == ["Running requests", "Waiting requests", "KV-cache usage"]
    slo = f.chart_groups(incident(service="inference", slo="availability"), T0 + 60)
    assert slo[0]["charts"][0]["src"].startswith("/api/v1/slos/inference%3Aavailability/budget?start=")
    assert f.chart_groups(incident(team="ml"), T0 + 60) == []


def test_past_the_cap_gpus_are_linked_not_charted() -> None:
    body = incident()
    body["alerts"] = [{"labels": {"gpu.uuid": f"G{i}"}, "activeAt": at(0)} for i in range(f.MAX_SUBJECTS + 2)]
    assert len(f.chart_groups(body, T0)) == f.MAX_SUBJECTS
    assert [m["text"] for m in f.more_subjects(body)] == [f"GPU G{f.MAX_SUBJECTS}", f"GPU G{f.MAX_SUBJECTS + 1}"]


def test_timeline_rows_carry_the_offset_the_author_and_a_link_to_the_run() -> None:
    step = {
        "at": at(65),
        "kind": "runbook_step",
        "actor": "sam",
        "text": "ok: approved",
        "run": "r/1",
        "event": "approved",
    }
    row = f.entry_row(step, T0)
    assert (row["offset"], row["actor"], row["link"], row["kind_label"]) == (
        "+1m 5s",
        "sam",
        "/runs/r%2F1",
        "runbook step",
    )
    silence = {"at": at(-5), "kind": "silence", "actor": "kim", "text": "", "matchers": [["host", "=", "a"]]}
    assert f.entry_row(silence, T0)["offset"] == "-5s" and f.entry_row(silence, T0)["matchers"] == ['host="a"']


def test_marks_keep_what_changed_and_leave_out_pending_and_step_starts() -> None:
    timeline = [
        {"at": at(0), "kind": "alert", "labels": {"alertname": "A"}, "from": "inactive", "to": "pending"},
        {"at": at(1), "kind": "alert", "labels": {"alertname": "A"}, "from": "pending", "to": "firing"},
        {"at": at(1), "kind": "opened", "actor": ""},
        {"at": at(2), "kind": "runbook_run", "actor": "olga", "runbook": "shed"},
        {"at": at(3), "kind": "runbook_step", "actor": "olga", "stepName": "s", "event": "started"},
        {"at": at(4), "kind": "runbook_step", "actor": "sam", "stepName": "s", "event": "approved"},
        {"at": at(5), "kind": "note", "actor": "olga"},
        {"at": at(6), "kind": "alert", "labels": {"alertname": "A"}, "from": "firing", "to": "inactive"},
        {"at": at(7), "kind": "closed", "actor": "sam"},
    ]
    marks = f.incident_marks({"timeline": timeline}, [Mark(T0 + 1.5, "XID 79", "xid")])
    assert [(m.t - T0, m.label, m.kind) for m in marks] == [
        (1, "A firing", "alert"),
        (1, "incident opened", "incident"),
        (1.5, "XID 79", "xid"),
        (2, "shed started by olga", "runbook"),
        (4, "s approved by sam", "runbook"),
        (5, "note by olga", "note"),
        (6, "A resolved", "alert"),
        (7, "incident closed by sam", "incident"),
    ]


def test_concurrent_askers_share_one_read_and_a_drop_forgets_it() -> None:
    cache = Coalesced(ttl_s=60, wait_s=5)
    reads: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def slow() -> bytes:
        reads.append(1)
        entered.set()
        release.wait(5)
        return b"answer"

    got: list[bytes] = []
    first = threading.Thread(target=lambda: got.append(cache.get("k", slow)))
    first.start()
    entered.wait(5)
    second = threading.Thread(target=lambda: got.append(cache.get("k", slow)))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert got == [b"answer", b"answer"] and len(reads) == 1
    assert cache.get("k", lambda: b"new") == b"answer"
    cache.drop("k")
    assert cache.get("k", lambda: b"new") == b"new"


def test_answers_expire_and_the_cache_stays_within_its_bytes() -> None:
    now = [0.0]
    cache = Coalesced(ttl_s=5, max_bytes=10, clock=lambda: now[0])
    assert cache.get("a", lambda: b"12345") == b"12345"
    assert cache.get("a", lambda: b"other") == b"12345"
    now[0] = 6
    assert cache.get("a", lambda: b"fresh") == b"fresh"
    cache.get("b", lambda: b"123456")  # 11 bytes with a's: a goes
    assert cache.get("a", lambda: b"again") == b"again"
    assert cache.get("big", lambda: b"x" * 11) == b"x" * 11 and cache.get("big", lambda: b"y") == b"y"  # never kept
