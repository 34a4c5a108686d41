"""The evaluator: one apscheduler interval job per rule group, each round read → evaluate → state → store → notify.

A round collects its rules' queries, runs each distinct `WindowQuery` once, and hands each rule
the answers. A query that fails fails only the rules that need it: they are counted and shown as
unhealthy, and their alerts keep the state they had (a store outage never resolves anything).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from alerting.history import AlertStore, StateRow
from alerting.model import Alert, AlertState, CompiledRule, Notifier
from alerting.state import Tracked, Transition, advance
from vigil.logs import event
from vigil.store.client import Store
from vigil.store.window import WindowQuery, WindowValue, window_values

log = logging.getLogger(__name__)

QueryFn = Callable[[object, WindowQuery, float, object], Sequence[WindowValue]]
Results = Mapping[WindowQuery, Sequence[WindowValue]]
# Before each query a round waits while a person's history read runs (`vigil.store.foreground`), for
# at most this long per round in all: rules are never starved, and late by at most this.
FOREGROUND_ALLOWANCE_S = 1.0


@dataclass
class RuleStatus:
    """How a rule's last evaluation went, as `/api/v1/rules` shows it."""

    rule: CompiledRule
    health: str = "unknown"  # "ok" or "err" after its first evaluation
    last_error: str = ""
    last_evaluation: float | None = None
    evaluation_time_s: float = 0.0
    active: dict[str, Tracked] = field(default_factory=dict)


@dataclass
class Group:
    name: str
    interval_s: float
    rules: list[RuleStatus]
    last_success: float | None = None  # monotonic time of the last round without a failed rule


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "vigil_alerting_evaluation_duration_seconds",
            "Time one evaluation round of a rule group took.",
            ["group"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.failures = Counter(
            "vigil_alerting_evaluation_failures",
            "Rule evaluations that failed (a query or the rule itself); their alerts kept their state.",
            ["group"],
            registry=registry,
        )
        self.alerts = Gauge("vigil_alerting_alerts", "Alerts held, by state.", ["state"], registry=registry)
        self.rules = Gauge("vigil_alerting_rules", "Rules loaded.", registry=registry)


def _groups(rules: Sequence[CompiledRule]) -> dict[str, Group]:
    groups: dict[str, Group] = {}
    for rule in rules:
        group = groups.setdefault(rule.group, Group(rule.group, rule.interval_s, []))
        # rules of one group share its interval; a shorter one wins, so no rule is evaluated late
        group.interval_s = min(group.interval_s, rule.interval_s)
        group.rules.append(RuleStatus(rule))
    return groups


class Evaluator:
    """Evaluates rule groups on a schedule, keeps their alerts, stores them and hands them to the notifier."""

    def __init__(
        self,
        rules: Sequence[CompiledRule],
        store: object,
        schema_ctx: object,
        notifier: Notifier,
        registry: CollectorRegistry,
        alert_store: AlertStore | None = None,
        clock: Callable[[], float] = time.time,
        query: QueryFn = window_values,
    ) -> None:
        self.groups = _groups(rules)
        self._store = store
        self._schema_ctx = schema_ctx
        self._notifier = notifier
        self._alert_store = alert_store
        self._clock = clock
        self._query = query
        self._foreground = store.foreground if isinstance(store, Store) else None
        self._lock = threading.Lock()  # guards every RuleStatus; API threads read snapshots under it
        self._idle = threading.Condition()
        self._running_rounds = 0
        self._stopping = False
        self._scheduler: BackgroundScheduler | None = None
        self.started_at: float | None = None
        self.metrics = Metrics(registry)
        self.metrics.rules.set(len(rules))
        for state in (AlertState.PENDING, AlertState.FIRING):
            self.metrics.alerts.labels(str(state)).set(0)

    # -- restore, schedule, stop ------------------------------------------------------------

    def restore(self) -> int:
        """Take back the alerts the store held; returns how many. Alerts of rules gone since are dropped."""
        if self._alert_store is None:
            return 0
        by_name = {(g.name, s.rule.name): s for g in self.groups.values() for s in reversed(g.rules)}
        restored = unknown = 0
        with self._lock:
            for row in self._alert_store.restore():
                status = by_name.get((row.group, row.rule))
                if status is None:
                    unknown += 1
                    continue
                alert = row.tracked.alert
                fixed = replace(alert, runbook=status.rule.runbook)
                status.active[alert.fingerprint] = Tracked(fixed, row.tracked.keep_firing_since)
                restored += 1
            self._count_alerts()
        event(log, "alerts_restored", restored=restored, of_rules_gone=unknown)
        return restored

    def start(self) -> None:
        self.started_at = time.monotonic()
        scheduler = BackgroundScheduler(timezone="UTC")
        for group in self.groups.values():
            scheduler.add_job(
                self.run_group,
                "interval",
                seconds=group.interval_s,
                args=[group.name],
                id=f"alerting-group:{group.name}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(group.interval_s)),
                next_run_time=datetime.now(UTC),  # the first round at once, not one interval late
            )
        scheduler.start()
        self._scheduler = scheduler
        event(log, "alerting_evaluator_started", groups=len(self.groups))

    @property
    def scheduler_running(self) -> bool:
        return self._scheduler is not None and self._scheduler.running

    def close(self, timeout_s: float) -> None:
        """Stop scheduling and wait up to `timeout_s` for rounds in progress to finish."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            self._stopping = True
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        with self._idle:
            while self._running_rounds and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            if self._running_rounds:
                event(log, "alerting_close_timeout", rounds_running=self._running_rounds, level=logging.WARNING)

    # -- one round --------------------------------------------------------------------------

    def run_group(self, name: str) -> None:
        """One evaluation round of a group; never raises (a scheduler job that raises only logs)."""
        with self._idle:
            if self._stopping:
                return
            self._running_rounds += 1
        try:
            self.evaluate_group(name)
        except Exception as exc:  # a bug must not stop the group's schedule
            event(log, "alerting_round_failed", group=name, error=repr(exc), level=logging.ERROR)
        finally:
            with self._idle:
                self._running_rounds -= 1
                self._idle.notify_all()

    def evaluate_group(self, name: str, now: float | None = None) -> None:
        group = self.groups[name]
        started = time.perf_counter()
        now = self._clock() if now is None else now
        results, failed = self._read(group, now)
        rows: list[StateRow] = []
        transitions: list[Transition] = []
        resolved: list[Alert] = []
        failures = 0
        with self._lock:
            for status in group.rules:
                t0 = time.perf_counter()
                error = next((failed[q] for q in status.rule.queries() if q in failed), None)
                if error is None:
                    try:
                        samples = status.rule.evaluate(results, now)
                        step = advance(status.rule, status.active, samples, now)
                    except Exception as exc:  # the rule's own fault: this rule only, state unchanged
                        error = f"{type(exc).__name__}: {exc}"
                status.last_evaluation = now
                status.evaluation_time_s = time.perf_counter() - t0
                if error is not None:
                    failures += 1
                    status.health, status.last_error = "err", error
                    continue
                status.health, status.last_error = "ok", ""
                rows.extend(_changed(status, step.active, step.resolved + step.dropped))
                transitions.extend(step.transitions)
                resolved.extend(step.resolved)
                status.active = step.active
            firing = [t.alert for s in group.rules for t in s.active.values() if t.alert.state == AlertState.FIRING]
            self._count_alerts()
        if failures:
            self.metrics.failures.labels(name).inc(failures)
            event(log, "alerting_rules_failed", group=name, rules=failures, level=logging.WARNING)
        else:
            group.last_success = time.monotonic()
        self._persist(name, rows, transitions)
        if firing or resolved:
            try:
                self._notifier.notify([*firing, *resolved], now)
            except Exception as exc:
                event(log, "alerting_notify_failed", group=name, error=str(exc), level=logging.ERROR)
        self.metrics.duration.labels(name).observe(time.perf_counter() - started)

    def _read(
        self, group: Group, now: float
    ) -> tuple[dict[WindowQuery, Sequence[WindowValue]], dict[WindowQuery, str]]:
        results: dict[WindowQuery, Sequence[WindowValue]] = {}
        failed: dict[WindowQuery, str] = {}
        yield_until = time.monotonic() + FOREGROUND_ALLOWANCE_S
        for status in group.rules:
            try:
                queries = status.rule.queries()
            except Exception as exc:
                event(log, "alerting_rule_queries_failed", rule=status.rule.name, error=str(exc))
                continue
            for query in queries:
                if query in results or query in failed:
                    continue  # rules asking the same question share one read
                if self._foreground is not None:
                    self._foreground.wait_quiet(yield_until)
                try:
                    results[query] = self._query(self._store, query, now, self._schema_ctx)
                except Exception as exc:
                    failed[query] = f"{query.function}({query.metric}[{query.window_s}s]): {exc}"
        return results, failed

    def _persist(self, group: str, rows: list[StateRow], transitions: list[Transition]) -> None:
        if self._alert_store is None:
            return
        try:
            self._alert_store.write(rows, transitions)
        except Exception as exc:  # kept for the next write; the alerts themselves are in memory
            event(log, "alert_state_write_failed", group=group, error=str(exc), level=logging.WARNING)

    def _count_alerts(self) -> None:
        counts = {AlertState.PENDING: 0, AlertState.FIRING: 0}
        for group in self.groups.values():
            for status in group.rules:
                for tracked in status.active.values():
                    counts[tracked.alert.state] = counts.get(tracked.alert.state, 0) + 1
        for state, n in counts.items():
            self.metrics.alerts.labels(str(state)).set(n)

    # -- what the API and health read -------------------------------------------------------

    def alerts(self) -> list[Alert]:
        with self._lock:
            return [t.alert for g in self.groups.values() for s in g.rules for t in s.active.values()]

    def statuses(self) -> list[tuple[Group, list[RuleStatus]]]:
        """A copy of each group's rule statuses, taken under the lock."""
        with self._lock:
            return [
                (
                    g,
                    [
                        RuleStatus(s.rule, s.health, s.last_error, s.last_evaluation, s.evaluation_time_s)
                        for s in g.rules
                    ],
                )
                for g in self.groups.values()
            ]

    def stalled(self, now_monotonic: float | None = None, grace_rounds: int = 3) -> list[str]:
        """Groups with no successful round for `grace_rounds` intervals (at least 10 s) since start."""
        if self.started_at is None:
            return []
        now = time.monotonic() if now_monotonic is None else now_monotonic
        out = []
        for group in self.groups.values():
            since = group.last_success if group.last_success is not None else self.started_at
            if now - since > max(10.0, grace_rounds * group.interval_s):
                out.append(group.name)
        return out

    def query(self, queries: Sequence[WindowQuery], now: float) -> Results:
        """Run reads outside a round (the SLO status); raises the first failure."""
        return {q: self._query(self._store, q, now, self._schema_ctx) for q in dict.fromkeys(queries)}


def _changed(status: RuleStatus, after: Mapping[str, Tracked], forgotten: Sequence[Alert]) -> list[StateRow]:
    """Rows for the alerts whose stored state is no longer right: new, moved, forgotten, keep_firing_for set."""
    name, group = status.rule.name, status.rule.group
    rows = []
    for fp, tracked in after.items():
        before = status.active.get(fp)
        if (
            before is None
            or before.alert.state != tracked.alert.state
            or before.keep_firing_since != tracked.keep_firing_since
        ):
            rows.append(StateRow(name, group, tracked))
    rows.extend(StateRow(name, group, Tracked(a)) for a in forgotten)
    return rows
