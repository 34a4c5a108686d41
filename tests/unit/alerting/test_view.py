"""The dashboard's view of alerting (`alerting.view.AlertingView`) over an evaluator with fake reads and a
real in-memory SilenceStore: the API's shapes, the API's silence checks, and the budget-over-time series."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alerting import view as view_module
from alerting.evaluator import Evaluator
from alerting.notify import silence as silence_module
from alerting.notify.silence import SilenceStore
from alerting.shapes import alert_json, rfc3339
from alerting.slo import EventsSli, SloSpec
from alerting.state import Transition
from alerting.view import AlertingView
from tests.unit.alerting.fakes import ERRORS, FakeRule, RecordingNotifier
from vigil.store.window import Matcher, WindowQuery, WindowValue
from vigil.views import ViewError

NOW = 486_111 * 3600.0  # on an hour edge, as the 1-hour rollup reads
T0 = NOW - 6 * 3600  # errors start here
SLI = EventsSli("llm.requests.finished", (Matcher("outcome", "=", "error"),), "llm.requests.finished", ())
AVAILABILITY = SloSpec("inference", "availability", 99.0, SLI, period_s=3 * 86400)


class Reads:
    """The store's answers as functions of `now`: total events grow 1000/h; errors 10/h from T0 on."""

    def __init__(self) -> None:
        self.calls: list[tuple[WindowQuery, float]] = []
        self.alert_values = {"a": 0.9, "<b>x</b>": 0.7}

    def __call__(self, store: object, query: WindowQuery, now: float, ctx: object) -> Sequence[WindowValue]:
        self.calls.append((query, now))
        if query == ERRORS:
            return [WindowValue({"host": h}, v) for h, v in self.alert_values.items()]
        if query.matchers:  # errors over the window
            since = max(T0, now - query.window_s)
            return [WindowValue({}, max(0.0, now - since) / 3600 * 10)]
        return [WindowValue({}, query.window_s / 3600 * 1000)]


class Source:
    def __init__(self, silences: SilenceStore | None) -> None:
        self.reads = Reads()
        self.evaluator = Evaluator(
            [FakeRule(for_s=0), FakeRule("Slow", for_s=60)],
            None,
            None,
            RecordingNotifier(),
            CollectorRegistry(),
            query=self.reads,
        )
        self.evaluator.evaluate_group("g", now=NOW - 120)
        self.slos = [AVAILABILITY]
        self._silences = silences
        self.clock = NOW

    def silence_store(self) -> SilenceStore | None:
        return self._silences

    def slo_statuses(self, now: float) -> list[dict[str, Any]]:
        return [{"service": "inference", "slo": "availability", "error_budget_remaining": 0.5}]

    def history(self, limit: int) -> list[Transition]:
        return [Transition(NOW, "fp", "HighErrors", {"host": "a"}, "pending", "firing", float("inf"))][:limit]

    def now(self) -> float:
        return self.clock


@pytest.fixture
def source() -> Source:
    return Source(SilenceStore(None))


@pytest.fixture
def view(source: Source) -> AlertingView:
    return AlertingView(source)


def silence(**over: Any) -> dict[str, Any]:
    body = {"matchers": [{"name": "alertname", "value": "HighErrors"}], "duration_s": 3600, "createdBy": "ann"}
    return {**body, "comment": "deploying", **over}


def test_alerts_and_history_answer_in_the_apis_shapes(source: Source, view: AlertingView) -> None:
    held = sorted(source.evaluator.alerts(), key=lambda a: (a.active_at, a.fingerprint))
    assert view.alerts() == [alert_json(a) for a in held]
    hosts = {a["labels"]["host"] for a in view.alerts()}
    assert hosts == {"a", "<b>x</b>"}  # labels as the series carried them: the page escapes, not the view
    assert {a["state"] for a in view.alerts()} == {"firing", "pending"}
    (t,) = view.history(10)
    assert (t["from"], t["to"], t["value"]) == ("pending", "firing", "+Inf")
    for bad in (0, view_module.MAX_HISTORY + 1):
        with pytest.raises(ViewError, match=r"^limit:"):
            view.history(bad)


def test_a_silence_made_through_the_view_is_listed_as_the_api_lists_it(source: Source, view: AlertingView) -> None:
    silence_id = view.create_silence(silence())
    (listed,) = view.silences()
    assert listed["id"] == silence_id
    assert listed["matchers"] == [{"name": "alertname", "value": "HighErrors", "isRegex": False, "isEqual": True}]
    assert (listed["createdBy"], listed["comment"], listed["status"]) == ("ann", "deploying", {"state": "active"})
    assert (listed["startsAt"], listed["endsAt"]) == (rfc3339(NOW), rfc3339(NOW + 3600))
    view.expire_silence(silence_id)
    assert view.silences() == []
    assert view.silences(include_expired=True)[0]["status"] == {"state": "expired"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (silence(comment=""), "comment"),
        (silence(createdBy=""), "createdBy"),
        (silence(matchers=[]), "matchers"),
        (silence(matchers=[{"name": "9x", "value": "a"}]), "matchers.0.name"),
        (silence(matchers=[{"name": "a", "value": "(", "isRegex": True}]), "matchers.0.value"),
        (silence(matchers=[{"name": "a", "value": ".*", "isRegex": True}]), "matchers"),
        (silence(duration_s=None), "endsAt"),
        (silence(duration_s=None, endsAt="2020-01-01T00:00:00Z"), "endsAt"),
        (silence(duration_s=None, endsAt="tomorrow"), "endsAt"),
        (silence(duration_s=-5), "duration_s"),
        (silence(extra=1), "extra"),
    ],
)
def test_a_bad_silence_is_refused_naming_the_field(view: AlertingView, body: dict[str, Any], field: str) -> None:
    with pytest.raises(ViewError) as refused:
        view.create_silence(body)
    assert str(refused.value).startswith(field), str(refused.value)
    assert view.silences(include_expired=True) == []


def test_the_silence_stores_own_limit_is_a_view_error(view: AlertingView, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(silence_module, "MAX_SILENCES", 1)
    view.create_silence(silence())
    with pytest.raises(ViewError, match="expire some first"):
        view.create_silence(silence())


def test_expiring_an_unknown_or_overlong_id_is_refused(view: AlertingView) -> None:
    with pytest.raises(ViewError, match=r"^id: no silence 'nope'"):
        view.expire_silence("nope")
    with pytest.raises(ViewError, match=r"^id: silence id too long"):
        view.expire_silence("x" * 500)


def test_without_a_notification_pipeline_silences_are_unavailable() -> None:
    view = AlertingView(Source(None))
    for call in (view.silences, lambda: view.create_silence(silence()), lambda: view.expire_silence("s")):
        with pytest.raises(ViewError, match=r"^silences: unavailable"):
            call()


def test_slos_are_the_services_statuses(view: AlertingView) -> None:
    assert view.slos() == [{"service": "inference", "slo": "availability", "error_budget_remaining": 0.5}]


def expected_remaining(t: float) -> float:
    """By hand from `Reads`: errors 10/h since T0 over 1000/h of traffic; budget 1 %."""
    errors = max(0.0, t - max(T0, t - AVAILABILITY.period_s)) / 3600 * 10
    total = AVAILABILITY.period_s / 3600 * 1000
    return 1 - errors / total / 0.01


def test_the_budget_series_reads_the_period_ending_at_each_point(source: Source, view: AlertingView) -> None:
    points = view.slo_budget("inference:availability", NOW - 12 * 3600, NOW, 3600)
    assert [t for t, _ in points] == [NOW - h * 3600 for h in range(12, -1, -1)]
    assert points == [(t, pytest.approx(expected_remaining(t))) for t, _ in points]
    assert points[0][1] == 1.0 and points[-1][1] == pytest.approx(1 - 60 / 72000 / 0.01)
    assert all(a[1] >= b[1] for a, b in itertools.pairwise(points))  # budget only burns here
    windows = {q.window_s for q, _ in source.reads.calls if q != ERRORS}
    assert windows == {AVAILABILITY.period_s}  # the SLO's own period window, nothing else


def test_the_last_point_is_now_and_the_future_is_left_out(view: AlertingView) -> None:
    points = view.slo_budget("availability", NOW - 7200 + 1, NOW + 3600, 3600)
    assert [t for t, _ in points] == [NOW - 3600, NOW]
    off_edge = view.slo_budget("availability", NOW - 5000, NOW - 100, 3600)
    assert [t for t, _ in off_edge] == [NOW - 3600, NOW - 100]


def test_settled_points_are_read_once(source: Source, view: AlertingView) -> None:
    view.slo_budget("availability", NOW - 6 * 3600, NOW, 3600)
    first = len(source.reads.calls)
    view.slo_budget("availability", NOW - 6 * 3600, NOW, 3600)
    again = source.reads.calls[first:]
    # points older than SETTLED_S are kept; the two newest (NOW - 1h, NOW) are read again, two queries each
    assert sorted({t for _, t in again}) == [NOW - 3600, NOW]
    assert len(again) == 4


def test_the_budget_cache_is_bounded(source: Source, view: AlertingView, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(view_module, "BUDGET_CACHE_POINTS", 5)
    view.slo_budget("availability", NOW - 20 * 3600, NOW, 3600)
    assert len(view._budget_cache) == 5


@pytest.mark.parametrize(
    ("name", "start", "end", "step", "says"),
    [
        ("nope", NOW - 3600, NOW, 60, "^name: no SLO 'nope'; known: inference:availability"),
        ("availability", NOW, NOW - 3600, 60, "^end:"),
        ("availability", NOW - 3600, NOW, 0, "^step:"),
        ("availability", float("nan"), NOW, 60, "^start:"),
        ("availability", NOW - 86400, NOW, 60, "^step: 60s gives 1441 points"),
    ],
)
def test_bad_budget_requests_are_refused(
    view: AlertingView, name: str, start: float, end: float, step: int, says: str
) -> None:
    with pytest.raises(ViewError, match=says):
        view.slo_budget(name, start, end, step)


def test_a_name_two_services_share_must_be_qualified(source: Source) -> None:
    other = SloSpec("search", "availability", 99.9, SLI, period_s=3 * 86400)
    source.slos = [AVAILABILITY, other]
    view = AlertingView(source)
    with pytest.raises(ViewError, match="names 2 SLOs; use service:name"):
        view.slo_budget("availability", NOW - 3600, NOW, 3600)
    assert len(view.slo_budget("search:availability", NOW - 3600, NOW, 3600)) == 2
