"""Runbooks as a service of `vigil up`: the loaded files, the engine, automatic starts, the API and
the view the dashboard's pages read (`vigil.runbook_view`)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from runbooks import api, faults_api
from runbooks.actions import Actuators, KubeConfig
from runbooks.audit import AuditLog, RunRecord, StepEvent, StoreAudit
from runbooks.autostart import AutoGuard, AutoRefused
from runbooks.checks import StoreCheck
from runbooks.engine import Engine
from runbooks.loader import default_pack, load_runbooks
from runbooks.model import TARGET_LABEL, Runbook, TargetKind
from runbooks.steps import CheckFn, StepRunner
from vigil.kernel import Health, ServiceContext
from vigil.logs import event
from vigil.runbook_view import RunbookRequestError, UnknownName, runbooks_view
from vigil.store.schema import SchemaContext

log = logging.getLogger(__name__)

RUNBOOK, AUTO = "runbook", "runbook_auto"  # the annotations an alert carries: which runbook, may it start itself


def runbook_files(settings: Any) -> list[Path]:
    paths = list(default_pack()) if settings.default_runbooks else []
    if settings.runbooks_dir is not None:
        found = [*settings.runbooks_dir.glob("*.yaml"), *settings.runbooks_dir.glob("*.yml")]
        paths.extend(sorted(p for p in found if p.is_file()))
    return paths


class RunbooksService:
    """`runbooks`, `audit`, `check` and `actuators` replace what the settings would build (tests)."""

    name = "runbooks"

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        runbooks: Mapping[str, Runbook] | None = None,
        audit: AuditLog | None = None,
        check: CheckFn | None = None,
        actuators: Actuators | None = None,
    ) -> None:
        settings = ctx.settings
        self._ctx = ctx
        self._clock: Callable[[], float] = lambda: ctx.clock() / 1e9
        books = runbooks if runbooks is not None else load_runbooks(runbook_files(settings))
        schema = SchemaContext.from_settings(settings)
        self.audit: AuditLog = audit if audit is not None else StoreAudit(ctx.store, schema)
        nvml = (lambda: importlib.import_module("pynvml")) if settings.runbook_nvml_actions else None
        kube = KubeConfig(
            settings.runbook_kube_api_url, settings.runbook_kube_token_file, settings.runbook_kube_ca_file
        )
        self.actuators = actuators or Actuators(ctx.plan, kube, nvml)
        checker = check or StoreCheck(ctx.store, schema, self._clock)
        self.engine = Engine(
            books, self.audit, StepRunner(self.actuators, checker), self._clock, max_active=settings.runbook_max_active
        )
        self._breaker_listeners: list[Callable[[int, float], None]] = []
        self.guard = AutoGuard(
            settings.runbook_auto_max_per_hour,
            settings.runbook_auto_min_interval_s,
            self._clock,
            self.audit,
            self._breaker_opened,
        )
        self.drill_faults = faults_api.DrillFaults(ctx.plan)
        self.routers: Sequence[APIRouter] = (api.router, faults_api.router)
        self.providers: Mapping[Callable[..., Any], Callable[..., Any]] = {
            api.get_runbooks: self._get,
            faults_api.get_drill_faults: lambda: self.drill_faults,
            runbooks_view: self._get,
        }

    def _get(self) -> RunbooksService:
        return self

    # -- kernel.Service ------------------------------------------------------------------------

    def start(self) -> None:
        self.engine.recover()  # first: what it marks interrupted is finished, so old enough to prune
        days = self._ctx.settings.runbook_history_days
        try:
            self.audit.prune(self._clock() - days * 86400)
        except Exception as exc:  # pruning is housekeeping: a failure waits for the next start
            event(log, "runbook_prune_failed", level=logging.WARNING, error=str(exc))

    def close(self, timeout_s: float) -> None:
        self.engine.close(timeout_s)
        self.actuators.close()
        self.drill_faults.close()

    def health(self) -> Health:
        return True, {
            "runbooks": len(self.engine.runbooks),
            "active_runs": self.engine.active(),
            "auto_breaker_open": self.guard.open,
        }

    # -- automatic starts ----------------------------------------------------------------------

    def on_breaker_open(self, listener: Callable[[int, float], None]) -> None:
        """Call `listener(max_per_hour, unix_seconds)` when the breaker opens (alerting pages on-call with it)."""
        self._breaker_listeners.append(listener)

    def _breaker_opened(self, limit: int, now: float) -> None:
        event(log, "runbook_auto_breaker_open", level=logging.WARNING, max_per_hour=limit)
        for listener in self._breaker_listeners:
            try:
                listener(limit, now)
            except Exception as exc:  # a failing listener must not stop the next one, nor the caller
                event(log, "runbook_breaker_listener_failed", level=logging.ERROR, error=str(exc))

    def on_alert(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str | None:
        """A firing alert: start its runbook where its rule allows (annotation `runbook_auto: "true"`).

        The alert's labels give the run its target (the label of the runbook's target kind) and its
        parameters (`Runbook.params_from_labels`), checked as a person's would be; a start refused for
        them is recorded in the audit trail with the reason. Answers the run's id, or None when nothing
        started (each reason is logged). Never raises: alerting calls it from its evaluation loop.
        """
        name = annotations.get(RUNBOOK, "")
        if not name or annotations.get(AUTO, "").strip().lower() != "true":
            return None
        alert = labels.get("alertname", "?")
        book = self.engine.runbooks.get(name)
        if book is None:
            event(log, "runbook_auto_skipped", level=logging.WARNING, alert=alert, runbook=name, reason="not loaded")
            return None
        target = labels.get(TARGET_LABEL[book.target]) or self._default_target(book)
        if self._ctx.settings.runbook_auto_max_per_hour == 0:
            reason = "automatic starts are off (VIGIL_RUNBOOK_AUTO_MAX_PER_HOUR=0)"
            event(log, "runbook_auto_skipped", alert=alert, runbook=name, target=target, reason=reason)
            return None
        # the alert as Prometheus prints it: its name first (incidents match runs on it), then its labels
        shown = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "alertname")
        origin = f"{alert} {{{shown}}}"[:1024]
        params = book.params_from_labels(labels)

        def begin() -> str:
            return self.engine.start(name, f"alert:{alert}", params, target, auto=True, origin=origin).id

        try:
            return self.guard.start(name, target, begin)
        except (AutoRefused, RunbookRequestError) as exc:
            event(log, "runbook_auto_skipped", alert=alert, runbook=name, target=target, reason=str(exc))
        except Exception as exc:  # the store failed: no start it cannot count, nor one it cannot record
            event(log, "runbook_auto_failed", level=logging.ERROR, alert=alert, runbook=name, error=str(exc))
        return None

    def _default_target(self, book: Runbook) -> str:
        wl = self._ctx.plan.workload
        return wl.metrics_url if book.target is TargetKind.WORKLOAD and wl is not None else ""

    # -- the view (vigil.runbook_view.RunbooksView) and the API --------------------------------

    def runbooks(self) -> list[dict[str, Any]]:
        return [runbook_json(b) for _, b in sorted(self.engine.runbooks.items())]

    def runbook(self, name: str) -> dict[str, Any]:
        book = self.engine.runbooks.get(name)
        if book is None:
            raise UnknownName(f"no runbook {name!r}")
        return runbook_json(book)

    def runs(self, limit: int = 100, runbook: str | None = None) -> list[dict[str, Any]]:
        return [run_json(r) for r in self.audit.runs(limit, runbook)]

    def run(self, run_id: str) -> dict[str, Any]:
        record = self.audit.run(run_id)
        if record is None:
            raise UnknownName(f"no run {run_id!r}")
        return run_detail(record, self.audit.events(run_id), self.engine.runbooks.get(record.runbook))

    def start_run(
        self,
        name: str,
        who: str,
        params: dict[str, Any] | None = None,
        target: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        book = self.engine.runbooks.get(name)
        default = self._default_target(book) if book else ""
        record = self.engine.start(name, who, params, target, dry_run, default_target=default)
        return self.run(record.id)

    def approve(self, run_id: str, who: str) -> dict[str, Any]:
        return run_json(self.engine.approve(run_id, who))

    def retry(self, run_id: str, who: str) -> dict[str, Any]:
        return run_json(self.engine.retry(run_id, who))

    def cancel(self, run_id: str, who: str) -> dict[str, Any]:
        return run_json(self.engine.cancel(run_id, who))


def runbook_json(book: Runbook) -> dict[str, Any]:
    return {
        "name": book.name,
        "description": book.description,
        "target": book.target.value,
        "params": [
            {
                "name": p.name,
                "type": p.type,
                "default": p.default,
                "description": p.description,
                "min": p.min,
                "max": p.max,
                "label": p.alert_label,
            }
            for p in book.params
        ],
        "steps": [
            {
                "index": s.index,
                "name": s.name,
                "kind": s.kind.value,
                "summary": s.summary(),
                "timeout_s": s.timeout_s,
                "retries": s.retries,
            }
            for s in book.steps
        ],
        "file": book.file,
    }


def run_json(r: RunRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "runbook": r.runbook,
        "target_kind": r.target_kind,
        "target": r.target,
        "params": r.params,
        "dry_run": r.dry_run,
        "started_by": r.started_by,
        "auto": r.auto,
        "origin": r.origin,
        "state": r.state,
        "step": r.step,
        "reason": r.reason,
        "actor": r.actor,
        "started_at": r.started_at or r.at,
        "updated_at": r.at,
    }


def run_detail(record: RunRecord, events: list[StepEvent], book: Runbook | None) -> dict[str, Any]:
    last: dict[int, StepEvent] = {}
    attempts: dict[int, int] = {}
    for ev in events:
        last[ev.step] = ev
        attempts[ev.step] = max(attempts.get(ev.step, 0), ev.attempt)
    steps = []
    for step in book.steps if book else ():
        ev = last.get(step.index)
        steps.append({
            "index": step.index, "name": step.name, "kind": step.kind.value, "summary": step.summary(),
            "status": ev.event if ev else "pending", "attempts": attempts.get(step.index, 0),
            "message": ev.message if ev else "",
        })  # fmt: skip
    return {
        **run_json(record),
        "steps": steps,
        "approvals": [{"step": e.step, "by": e.actor, "at": e.at} for e in events if e.event == "approved"],
        "log": [
            {
                "seq": e.seq,
                "at": e.at,
                "step": e.step,
                "step_name": e.step_name,
                "kind": e.step_kind,
                "attempt": e.attempt,
                "event": e.event,
                "actor": e.actor,
                "message": e.message,
                "output": e.output,
            }
            for e in events
        ],
    }
