"""Alerting as a service of `vigil up`: rules, the evaluator, the notification pipeline, the API."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter

from alerting import api, incidents_api
from alerting.config import load_config
from alerting.evaluator import Evaluator, QueryFn
from alerting.firing import FiringHooks, FiringListener
from alerting.history import AlertStore
from alerting.incident_tracker import Incidents, Observed
from alerting.incidents import route_grouping
from alerting.model import Alert, AlertState, CompiledRule, Notifier
from alerting.notify import Pipeline, build_notifier
from alerting.rules import default_pack, load_rule_files, load_slos
from alerting.shapes import json_value
from alerting.slo import SloSpec
from alerting.state import Transition
from alerting.view import AlertingView
from vigil.incident_view import incidents_view
from vigil.kernel import Health, ServiceContext
from vigil.logs import event
from vigil.store.schema import ALERTS, INCIDENT_EVENTS, SchemaContext
from vigil.store.window import window_values
from vigil.views import alerts_view

log = logging.getLogger(__name__)

SLO_CACHE_S = 5.0  # the SLO page polls; a 30-day budget need not be read more often than this


def rule_files(settings: Any) -> list[Path]:
    """The default pack (where on) and the `*.yaml`/`*.yml` files of the rules directory, in name order."""
    paths = list(default_pack()) if settings.default_rules else []
    if settings.rules_dir is not None:
        found = [*settings.rules_dir.glob("*.yaml"), *settings.rules_dir.glob("*.yml")]
        paths.extend(sorted(p for p in found if p.is_file()))
    return paths


def _load_rules(settings: Any) -> tuple[list[CompiledRule], list[SloSpec]]:
    paths = rule_files(settings)
    return list(load_rule_files(paths)), list(load_slos(paths))


def _load_notifier(ctx: ServiceContext, clock: Callable[[], float]) -> Pipeline:
    config = load_config(ctx.settings.alerting_config, ctx.settings)
    return build_notifier(config, ctx.store, ctx.registry, clock)


def _finite(value: Any) -> Any:
    """JSON-ready: a burn rate over an empty window may be infinite or NaN, which JSON cannot carry."""
    if isinstance(value, float):
        return json_value(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class NotifierService(Notifier, Protocol):
    """What the service runs as its notifier: the pipeline (`alerting.notify.Pipeline`), or a test's stand-in."""

    silences: Any  # the SilenceStore the API reads and writes

    def start(self) -> None: ...

    def close(self, timeout_s: float) -> None: ...

    def health(self) -> Health: ...


class AlertingService:
    """Evaluates the rules on a schedule and serves `/api/v1/...`.

    `rules`, `slos`, `notifier` and `query` replace what the settings would load (tests).
    """

    name = "alerting"

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        rules: Sequence[CompiledRule] | None = None,
        slos: Sequence[Any] | None = None,
        notifier: NotifierService | None = None,
        query: QueryFn = window_values,
    ) -> None:
        self._ctx = ctx
        self._clock: Callable[[], float] = lambda: ctx.clock() / 1e9
        if rules is None:
            loaded, loaded_slos = _load_rules(ctx.settings)
            rules, slos = loaded, (loaded_slos if slos is None else slos)
        self.slos = list(slos or [])
        self.notifier: NotifierService = notifier if notifier is not None else _load_notifier(ctx, self._clock)
        self.schema = SchemaContext.from_settings(ctx.settings)
        self.alert_store = AlertStore(ctx.store, self._clock)
        silences = getattr(self.notifier, "silences", None)
        self.incidents = Incidents(
            ctx.store,
            route_grouping(getattr(self.notifier, "route", None)),  # incidents group as the pages do
            self._clock,
            (lambda: silences.list(self._clock(), include_expired=True)) if silences is not None else list,
        )
        self.firing = FiringHooks()  # the composition root adds the runbook engine's on_alert
        observed = Observed(self.notifier, self.incidents, self.firing)
        self.evaluator = Evaluator(
            rules, ctx.store, self.schema, observed, ctx.registry, self.alert_store, self._clock, query
        )
        self._slo_cache: tuple[float, list[dict[str, Any]]] | None = None
        self._slo_lock = threading.Lock()
        self._started = False
        self.view = AlertingView(self)
        self.routers: Sequence[APIRouter] = (api.router, incidents_api.router)
        self.providers: Mapping[Callable[..., Any], Callable[..., Any]] = {
            api.get_alerting: self._get,
            incidents_view: lambda: self.incidents,
            alerts_view: lambda: self.view,
        }

    def _get(self) -> AlertingService:
        return self

    def on_firing(self, listener: FiringListener) -> None:
        """Call `listener(labels, annotations)` once each time an alert starts firing (a runbook's auto-start)."""
        self.firing.add(listener)

    def page(self, alertname: str, summary: str, labels: Mapping[str, str] | None = None) -> None:
        """Send on-call an event that no rule evaluates (the runbook circuit breaker opening) through
        the same pipeline as alerts: routes, silences, dedup and receivers apply."""
        now = self._clock()
        alert = Alert(
            labels={"alertname": alertname, "severity": "page", **(labels or {})},
            annotations={"summary": summary},
            state=AlertState.FIRING,
            value=1.0,
            active_at=now,
            fired_at=now,
        )
        try:
            self.notifier.notify([alert], now)
        except Exception as exc:
            event(log, "alerting_page_failed", level=logging.ERROR, alertname=alertname, error=repr(exc))

    # -- kernel.Service ------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.alert_store.prune(
                self._ctx.settings.alert_history_days, self.schema.storage_name(ALERTS), self.schema.on_cluster
            )
        except Exception as exc:  # pruning is housekeeping: a failure waits for the next start
            event(log, "alert_prune_failed", error=str(exc), level=logging.WARNING)
        try:
            before = self._clock() - self._ctx.settings.incident_history_days * 86400
            self.incidents.store.prune(before, self.schema.storage_name(INCIDENT_EVENTS), self.schema.on_cluster)
        except Exception as exc:
            event(log, "incident_prune_failed", error=str(exc), level=logging.WARNING)
        self.evaluator.restore()
        self.incidents.restore(a.fingerprint for a in self.evaluator.alerts() if a.state == AlertState.FIRING)
        self.notifier.start()
        self.evaluator.start()
        self._started = True

    def close(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        self.evaluator.close(timeout_s / 2)
        self.notifier.close(max(0.0, deadline - time.monotonic()))

    def health(self) -> Health:
        details: dict[str, Any] = {"rules": sum(len(g.rules) for g in self.evaluator.groups.values())}
        ok = True
        if self._started and not self.evaluator.scheduler_running:
            ok, details["scheduler"] = False, "stopped"
        stalled = self.evaluator.stalled()
        if stalled and len(stalled) == len(self.evaluator.groups):
            ok, details["stalled_groups"] = False, stalled
        notify_ok, details["notify"] = self.notifier.health()
        if trouble := self.incidents.trouble():
            details["incidents"] = trouble
        ok = ok and notify_ok
        return ok, details

    # -- what the API asks (api.Alerting) ------------------------------------------------------

    def silence_store(self) -> Any:
        return self.notifier.silences

    def history(self, limit: int) -> list[Transition]:
        return self.alert_store.history(limit)

    def now(self) -> float:
        return self._clock()

    def notifications(self, since: float) -> list[dict[str, Any]]:
        record = getattr(self.notifier, "record", None)
        return record.sent(since) if record is not None else []

    def receivers(self) -> list[str]:
        """The receivers that deliver somewhere (an integration or more), by name."""
        integrations: dict[str, list[Any]] = getattr(self.notifier, "integrations", {})
        return sorted(name for name, found in integrations.items() if found)

    def slo_statuses(self, now: float) -> list[dict[str, Any]]:
        with self._slo_lock:
            if self._slo_cache is not None and now - self._slo_cache[0] < SLO_CACHE_S:
                return self._slo_cache[1]
            if not self.slos:
                return []
            from alerting.slo import budget_status

            out = []
            for spec in self.slos:
                results = self.evaluator.query(spec.status_queries(now), now)
                status = budget_status(spec, results, now)
                out.append(_finite(asdict(status) if is_dataclass(status) else dict(status)))
            self._slo_cache = (now, out)
            return out
