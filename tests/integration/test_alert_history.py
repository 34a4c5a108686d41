"""Alert state and history round-trip through the real embedded store (the session's, with the real migrations)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from alerting.history import AlertStore, StateRow
from alerting.model import AlertState, Sample
from alerting.state import Tracked, advance
from tests.unit.alerting.fakes import FakeRule
from vigil.store import Store
from vigil.store.schema import ALERT_HISTORY, ALERTS, SchemaContext, reconcile_ttls

# rows dated near now: the history's TTL drops rows older than its days as they are written
NOW = float(int(time.time()))


@pytest.fixture
def alerts(store: Store) -> AlertStore:
    for table in (ALERTS, ALERT_HISTORY):
        store.command(f"TRUNCATE TABLE {table}")
    return AlertStore(store, clock=lambda: NOW)


def rows(rule: FakeRule, active: dict[str, Tracked]) -> list[StateRow]:
    return [StateRow(rule.name, rule.group, t) for t in active.values()]


def test_held_alerts_come_back_as_they_were(alerts: AlertStore) -> None:
    rule = FakeRule(for_s=10, keep_firing_for_s=30)
    t0 = NOW + 0.25
    s1 = advance(rule, {}, [Sample({"host": "a"}, 0.9), Sample({"host": "b"}, 0.8)], t0)
    s2 = advance(rule, s1.active, [Sample({"host": "a"}, 0.95)], t0 + 10)  # a fires, b is dropped
    s3 = advance(rule, s2.active, [], t0 + 12)  # a is kept firing by keep_firing_for
    alerts.write(rows(rule, s1.active), s1.transitions)
    dropped = [StateRow(rule.name, rule.group, Tracked(a)) for a in s2.dropped]
    alerts.write([*rows(rule, s2.active), *dropped], s2.transitions)
    alerts.write(rows(rule, s3.active), s3.transitions)

    (restored,) = alerts.restore()
    (held,) = s3.active.values()
    assert (restored.rule, restored.group) == (rule.name, rule.group)
    assert restored.tracked == Tracked(replace(held.alert, runbook=None), keep_firing_since=t0 + 12)
    assert restored.tracked.alert.state == AlertState.FIRING
    assert restored.tracked.alert.fired_at == t0 + 10


def test_prune_forgets_whole_old_alerts_only(store: Store) -> None:
    for table in (ALERTS, ALERT_HISTORY):
        store.command(f"TRUNCATE TABLE {table}")
    old = AlertStore(store, clock=lambda: 1_000_000_000.0)  # 2001: long forgotten
    rule = FakeRule()
    s1 = advance(rule, {}, [Sample({"host": "a"}, 1), Sample({"host": "b"}, 1)], 1)
    s2 = advance(rule, s1.active, [Sample({"host": "b"}, 1)], 2)  # a resolves, b keeps firing
    old.write(rows(rule, s1.active), s1.transitions)
    old.write([StateRow(rule.name, rule.group, Tracked(a)) for a in s2.resolved], s2.transitions)
    old.prune(90)
    deadline = time.monotonic() + 20  # a DELETE may finish after it returns
    while {r[0] for r in store.query_rows(f"SELECT Labels['host'] FROM {ALERTS}")} != {"b"}:
        assert time.monotonic() < deadline, "the forgotten alert was not pruned"
        time.sleep(0.1)
    assert [r.tracked.alert.labels["host"] for r in old.restore()] == ["b"]


def test_history_newest_first(alerts: AlertStore) -> None:
    rule = FakeRule(for_s=1)
    s1 = advance(rule, {}, [Sample({"host": "a"}, 1)], NOW)
    s2 = advance(rule, s1.active, [Sample({"host": "a"}, 2)], NOW + 1)
    s3 = advance(rule, s2.active, [], NOW + 2)
    for step in (s1, s2, s3):
        alerts.write([], step.transitions)
    moves = [(t.at, t.from_state, t.to_state, t.value) for t in alerts.history(10)]
    assert moves == [
        (NOW + 2, "firing", "resolved", 2),
        (NOW + 1, "pending", "firing", 2),
        (NOW, "inactive", "pending", 1),
    ]
    fp = s1.transitions[0].fingerprint
    assert len(alerts.history(2, fingerprint=fp)) == 2
    assert alerts.history(10, fingerprint="nope") == []


class FlakyStore:
    """The real store behind a switch that makes inserts fail, as an unreachable server would."""

    def __init__(self, store: Store) -> None:
        self.store, self.down = store, False

    def insert_columns(self, *args: object, **kwargs: object) -> None:
        if self.down:
            raise ConnectionError("store unreachable")
        self.store.insert_columns(*args, **kwargs)  # type: ignore[arg-type]

    def query_rows(self, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        return self.store.query_rows(*args, **kwargs)  # type: ignore[arg-type]


def test_a_failed_write_is_sent_with_the_next(store: Store, alerts: AlertStore) -> None:
    flaky = FlakyStore(store)
    writer = AlertStore(flaky, clock=lambda: NOW)  # type: ignore[arg-type]
    rule = FakeRule()
    step = advance(rule, {}, [Sample({"host": "a"}, 1)], NOW)
    flaky.down = True
    with pytest.raises(ConnectionError):
        writer.write(rows(rule, step.active), step.transitions)
    flaky.down = False
    writer.write([], [])
    assert [r.tracked.alert.labels["host"] for r in writer.restore()] == ["a"]
    assert len(writer.history(10)) == 2  # inactive→pending→firing


def test_history_ttl_follows_the_setting(store: Store) -> None:
    assert reconcile_ttls(store, SchemaContext(alert_history_days=30)) == [ALERT_HISTORY]
    assert reconcile_ttls(store, SchemaContext(alert_history_days=30)) == []
    assert reconcile_ttls(store, SchemaContext()) == [ALERT_HISTORY]
