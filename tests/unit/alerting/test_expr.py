"""Threshold and absence rules evaluated from plain tables: no store, no clock."""

from __future__ import annotations

import pytest

from alerting.expr import AbsenceRule, Condition, Expr, ThresholdRule
from vigil.store.window import WindowQuery, WindowValue

BY = ("llm.endpoint",)
ERRORS = WindowQuery("llm.requests.finished", "sum", "increase", 30, (), BY)
TOTAL = WindowQuery("llm.requests.finished", "sum", "increase", 31, (), BY)
RUNNING = WindowQuery("llm.requests.running", "gauge", "min", 60, (), BY)
TOKENS = WindowQuery("llm.tokens.generated", "sum", "increase", 60, (), BY)


def v(endpoint: str, value: float) -> WindowValue:
    return WindowValue({"llm.endpoint": endpoint}, value)


def threshold(*conditions: Condition) -> ThresholdRule:
    return ThresholdRule("R", "g", 2.0, conditions, labels={"severity": "page"})


@pytest.mark.parametrize(
    ("errors", "totals", "fired"),
    [
        ([v("a", 6), v("b", 1)], [v("a", 10), v("b", 10)], {"a": 0.6}),
        ([v("a", 5)], [v("a", 10)], {}),  # 0.5 is not above 0.5
        ([v("a", 0)], [v("a", 0)], {}),  # 0/0: no sample
        ([v("a", 3)], [], {}),  # no denominator: no sample
        ([], [v("a", 10)], {}),  # no errors series: nothing holds
    ],
)
def test_a_ratio_matches_groups_and_skips_zero_denominators(errors: list, totals: list, fired: dict) -> None:
    rule = threshold(Condition(Expr(ERRORS, TOTAL), ">", 0.5))
    samples = rule.evaluate({ERRORS: errors, TOTAL: totals}, 0)
    assert {s.labels["llm.endpoint"]: s.value for s in samples} == pytest.approx(fired)


@pytest.mark.parametrize(
    ("op", "threshold_", "values", "fired"),
    [
        (">", 1, [1, 2], [2]),
        (">=", 1, [1, 2], [1, 2]),
        ("<", 1, [0, 1], [0]),
        ("<=", 1, [0, 1, 2], [0, 1]),
        ("==", 0, [0, 1], [0]),
        ("!=", 0, [0, 1], [1]),
        (">", 0, [float("nan")], []),
    ],
)
def test_comparisons(op: str, threshold_: float, values: list[float], fired: list[float]) -> None:
    rule = threshold(Condition(Expr(RUNNING), op, threshold_))
    answers = {RUNNING: [v(str(i), x) for i, x in enumerate(values)]}
    assert [s.value for s in rule.evaluate(answers, 0)] == fired


def test_and_keeps_only_groups_where_every_condition_holds() -> None:
    """The engine-stalled shape: requests running and no token generated, on the same endpoint."""
    rule = threshold(Condition(Expr(RUNNING), ">", 0), Condition(Expr(TOKENS), "==", 0))
    answers = {
        RUNNING: [v("stalled", 4), v("busy", 4), v("idle", 0), v("unknown", 2)],
        TOKENS: [v("stalled", 0), v("busy", 900), v("idle", 0)],
    }
    samples = rule.evaluate(answers, 0)
    assert [(s.labels, s.value) for s in samples] == [({"llm.endpoint": "stalled"}, 4)]
    assert rule.queries() == (RUNNING, TOKENS)


LAST_SEEN = WindowQuery("gpu.up", "gauge", "last_seen", 3600, (), ("host.name",))


def test_absence_gives_one_sample_per_missing_source() -> None:
    rule = AbsenceRule("NodeAbsent", "g", 2.0, LAST_SEEN, absent_for_s=60, labels={"severity": "page"})
    now = 10_000.0
    answers = {
        LAST_SEEN: [
            WindowValue({"host.name": "fresh"}, now - 1),
            WindowValue({"host.name": "gone"}, now - 600),
            WindowValue({"host.name": "edge"}, now - 60),
            WindowValue({"host.name": "(none)"}, now - 600),  # series without the identity: no source
        ]
    }
    samples = rule.evaluate(answers, now)
    assert sorted((s.labels["host.name"], s.value) for s in samples) == [("edge", 60), ("gone", 600)]
    assert rule.for_s == 0 and rule.queries() == (LAST_SEEN,)


def test_absence_without_answers_is_quiet() -> None:
    rule = AbsenceRule("NodeAbsent", "g", 2.0, LAST_SEEN, absent_for_s=60)
    assert rule.evaluate({}, 1e9) == []
