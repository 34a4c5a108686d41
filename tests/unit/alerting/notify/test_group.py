from __future__ import annotations

from alerting.config import RouteConfig
from alerting.notify.group import Dispatcher
from alerting.notify.route import Route
from tests.unit.alerting.notify.helpers import alert


def dispatcher(wait: float = 1.0, interval: float = 5.0) -> Dispatcher:
    config = RouteConfig(receiver="r", group_by=("alertname",), group_wait_s=wait, group_interval_s=interval,
                         repeat_interval_s=3600.0)  # fmt: skip
    return Dispatcher(Route.build(config))


def fps(alerts: tuple) -> set[str]:
    return {a.labels["gpu"] for a in alerts}


def test_group_timers_wait_then_interval() -> None:
    d = dispatcher()
    d.insert([alert(gpu="0", at=100.0)], now=100.0)
    assert d.due(100.5) == []  # group_wait not over
    d.insert([alert(gpu="1", at=100.5)], now=100.5)
    (first,) = d.due(101.0)
    assert fps(first.firing) == {"0", "1"}  # both gathered in one notification
    d.insert([alert(gpu="2", at=102.0)], now=102.0)
    assert d.due(105.9) == []  # a change waits for group_interval
    (second,) = d.due(106.0)
    assert fps(second.firing) == {"0", "1", "2"}
    assert d.due(110.0) == []
    (third,) = d.due(111.0)  # flushes every group_interval; dedup decides whether it is news
    assert fps(third.firing) == {"0", "1", "2"}


def test_resolved_alerts_go_out_once_then_leave_the_group() -> None:
    d = dispatcher()
    d.insert([alert(gpu="0", at=100.0), alert(gpu="1", at=100.0)], now=100.0)
    d.due(101.0)
    d.insert([alert(gpu="0", at=100.0, resolved_at=103.0), alert(gpu="1", at=100.0)], now=103.0)
    (flush,) = d.due(106.0)
    assert fps(flush.firing) == {"1"} and fps(flush.resolved) == {"0"}
    (after,) = d.due(111.0)
    assert fps(after.resolved) == set()
    d.insert([alert(gpu="1", at=100.0, resolved_at=112.0)], now=112.0)
    (last,) = d.due(116.0)
    assert fps(last.resolved) == {"1"}
    assert d.groups == {}  # an empty group is gone


def test_an_old_alert_flushes_a_new_group_at_once() -> None:
    # After a restart the evaluator hands alerts that fired long ago: no reason to wait group_wait.
    d = dispatcher(wait=30.0)
    d.insert([alert(gpu="0", at=10.0)], now=500.0)
    assert len(d.due(500.0)) == 1


def test_groups_split_by_group_by_labels() -> None:
    d = dispatcher()
    d.insert([alert("A", gpu="0"), alert("B", gpu="0"), alert("A", gpu="1")], now=1000.0)
    flushes = d.due(1001.0)
    assert sorted((f.group_labels["alertname"], len(f.firing)) for f in flushes) == [("A", 2), ("B", 1)]


def test_the_alerts_held_are_bounded() -> None:
    dropped: list[str] = []
    config = RouteConfig(receiver="r", group_by=("...",), group_wait_s=1, group_interval_s=5, repeat_interval_s=60)
    d = Dispatcher(Route.build(config), max_alerts=3, on_drop=lambda stage, reason, n: dropped.append(stage))
    d.insert([alert(gpu=str(i)) for i in range(5)], now=1000.0)
    assert d.alert_count == 3 and dropped == ["group", "group"]


def test_a_new_alert_in_a_group_with_nothing_firing_goes_out_after_group_wait_with_the_resolve() -> None:
    d = dispatcher(wait=2.0, interval=30.0)
    d.insert([alert(gpu="0", at=100.0)], now=100.0)
    d.due(102.0)  # the first page
    d.insert([alert(gpu="0", at=100.0, resolved_at=110.0)], now=110.0)  # resolved; its resolve is due at 132
    d.insert([alert(gpu="1", at=120.0)], now=120.0)  # a new failure in the same group
    assert d.due(121.9) == []
    (flush,) = d.due(122.0)  # group_wait after it came, not group_interval after the last flush
    assert fps(flush.firing) == {"1"} and fps(flush.resolved) == {"0"}


def test_a_new_alert_beside_one_still_firing_waits_for_group_interval() -> None:
    d = dispatcher(wait=2.0, interval=30.0)
    d.insert([alert(gpu="0", at=100.0)], now=100.0)
    d.due(102.0)
    d.insert([alert(gpu="1", at=110.0)], now=110.0)  # the same failure, growing: Alertmanager's semantics
    assert d.due(131.9) == []
    (flush,) = d.due(132.0)
    assert fps(flush.firing) == {"0", "1"}
