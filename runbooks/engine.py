"""The run engine: starts runs, walks their steps with retries and timeouts, waits for approvals,
holds one run per (runbook, target), re-runs from a failed step, and records everything in the audit log.

A run walks in a thread of its own; an attempt at a step runs in a bounded pool with a `Deadline`
of the step's timeout that its work honours (HTTP timeouts from the time left, a stop that a cancel
sets), so a timed-out attempt has stopped when it is recorded. A retry starts only after the attempt
before it returned: one that ignores its deadline past `SETTLE_S` fails the step without a retry,
and the run holds its lock until that attempt ends (up to `STRAGGLER_WAIT_S`).

Every change is a new audit row, written before the engine acts on it, so what the store says is
at least as far as the run got. At start, runs the store holds as unfinished were cut off by a stop
of `vigil up`: they are recorded as `interrupted`, never as succeeded.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import Any

from runbooks.audit import AuditLog, RunRecord, StepEvent
from runbooks.deadline import Deadline
from runbooks.model import Runbook, Step, StepKind
from runbooks.steps import Outcome, StepRunner
from vigil.logs import event
from vigil.runbook_view import BadRunRequest, RunConflict, TooManyRuns, UnknownName

log = logging.getLogger(__name__)

SYSTEM = "vigil"  # the actor of what Vigil itself records (an interrupted run)
RETRYABLE = frozenset({"failed", "interrupted"})
SETTLE_S = 2.0  # how long past its deadline an attempt may take to notice it and return
STRAGGLER_WAIT_S = 60.0  # how long a run waits, holding its lock, for an attempt that ignored its deadline


@dataclass
class _Live:
    record: RunRecord
    book: Runbook
    values: dict[str, Any]  # the parameters and `target`, for placeholders
    next_event: int
    approved_by: str | None = None
    approval: threading.Event = field(default_factory=threading.Event)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancelled_by: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    attempt: Deadline | None = None  # the attempt in flight: a cancel stops it
    straggler: Future[Outcome] | None = None  # an attempt still running past its deadline


class Engine:
    def __init__(
        self,
        runbooks: Mapping[str, Runbook],
        audit: AuditLog,
        steps: StepRunner,
        clock: Callable[[], float],
        *,
        max_active: int = 32,
        workers: int = 8,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runbooks = dict(runbooks)
        self._audit = audit
        self._steps = steps
        self._clock = clock
        self._monotonic = monotonic
        self._max_active = max_active
        self._lock = threading.Lock()
        self._live: dict[str, _Live] = {}
        self._held: dict[tuple[str, str], str] = {}  # (runbook, target) → the run holding it
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="runbook-step")
        self._closing = threading.Event()

    # -- lifecycle -----------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Record every run the store holds as unfinished as interrupted; answers their ids."""
        ids = []
        for run in self._audit.unfinished():
            reason = f"Vigil stopped while the run was {run.state} at step {run.step + 1}: retry it from there"
            self._audit.record_run(
                replace(run, seq=run.seq + 1, at=self._clock(), state="interrupted", reason=reason, actor=SYSTEM)
            )
            event(log, "runbook_run_interrupted", run=run.id, runbook=run.runbook, target=run.target, step=run.step)
            ids.append(run.id)
        return ids

    def close(self, timeout_s: float) -> None:
        """Cancel live runs and wait for them up to `timeout_s`; what does not end is interrupted at next start."""
        self._closing.set()
        with self._lock:
            live = list(self._live.values())
        for run in live:
            run.cancelled_by = run.cancelled_by or SYSTEM
            self._stop(run)
        for run in live:
            run.done.wait(timeout_s / max(1, len(live)))
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- requests ------------------------------------------------------------------------------

    def start(
        self,
        name: str,
        who: str,
        params: Mapping[str, Any] | None = None,
        target: str | None = None,
        dry_run: bool = False,
        *,
        auto: bool = False,
        origin: str = "",
        default_target: str = "",
    ) -> RunRecord:
        book = self.runbooks.get(name)
        if book is None:
            raise UnknownName(f"no runbook {name!r}: the loaded ones are {', '.join(sorted(self.runbooks)) or 'none'}")
        target = (target or default_target).strip()
        try:
            values = _validated(book, params or {}, target)
        except BadRunRequest as exc:
            if auto:  # nobody sees an answer to an alert's start: the audit trail says why it did not run
                self._record_refusal(book, who, dict(params or {}), target, origin, str(exc))
            raise
        record = RunRecord(
            id=uuid.uuid4().hex, seq=0, at=self._clock(), runbook=name, target_kind=book.target.value, target=target,
            params=values, dry_run=dry_run, started_by=who, auto=auto, origin=origin, state="running", step=-1,
            reason="dry run" if dry_run else "", actor=who,
        )  # fmt: skip
        live = _Live(record, book, {**values, "target": target}, next_event=0)
        if dry_run:  # changes nothing, so it holds no lock and answers when done
            self._audit.record_run(record)
            self._dry_run(live)
            return live.record
        with self._lock:
            self._claim(book.name, target, record.id)
            self._live[record.id] = live
        try:
            self._audit.record_run(record)
        except Exception:
            self._release(live)
            raise
        event(log, "runbook_run_started", run=record.id, runbook=name, target=target, by=who, auto=auto)
        self._spawn(live, 0)
        return record

    def _record_refusal(
        self, book: Runbook, who: str, params: dict[str, Any], target: str, origin: str, reason: str
    ) -> None:
        record = RunRecord(
            id=uuid.uuid4().hex, seq=0, at=self._clock(), runbook=book.name, target_kind=book.target.value,
            target=target[:512], params=params, dry_run=False, started_by=who, auto=True, origin=origin,
            state="failed", step=-1, reason=f"refused at start: {reason}", actor=who,
        )  # fmt: skip
        self._audit.record_run(record)
        event(log, "runbook_auto_refused", run=record.id, runbook=book.name, target=target, reason=reason)

    def approve(self, run_id: str, who: str) -> RunRecord:
        with self._lock:
            live = self._live.get(run_id)
            if live is not None and live.record.state == "waiting_approval":
                live.approved_by = who
                live.approval.set()
                return live.record
        state = live.record.state if live is not None else self._record(run_id).state
        raise RunConflict(f"run {run_id} is {state}, not waiting for an approval")

    def cancel(self, run_id: str, who: str) -> RunRecord:
        with self._lock:
            live = self._live.get(run_id)
            if live is not None:
                live.cancelled_by = who
                self._stop(live)
                return live.record
        record = self._record(run_id)
        raise RunConflict(f"run {run_id} is {record.state}: only a running run can be cancelled")

    def retry(self, run_id: str, who: str) -> RunRecord:
        record = self._record(run_id)
        if record.state not in RETRYABLE or record.dry_run:
            raise RunConflict(f"run {run_id} is {record.state}: only a failed or interrupted run is retried")
        book = self.runbooks.get(record.runbook)
        if book is None:
            raise BadRunRequest(f"runbook {record.runbook!r} is no longer loaded: the run cannot go on")
        # checked again: the runbook may have changed, and a start refused for its parameters is failed too
        _validated(book, record.params, record.target)
        start_at = max(0, record.step)
        if start_at >= len(book.steps):
            raise BadRunRequest(f"{record.runbook} has {len(book.steps)} steps now; the run stopped at {start_at + 1}")
        events = self._audit.events(run_id)
        again = replace(
            record, seq=record.seq + 1, at=self._clock(), state="running", actor=who,
            reason=f"retried from step {start_at + 1} by {who}",
        )  # fmt: skip
        live = _Live(
            again,
            book,
            {**record.params, "target": record.target},
            next_event=max((e.seq for e in events), default=-1) + 1,
        )
        with self._lock:
            if run_id in self._live:
                raise RunConflict(f"run {run_id} is already running")
            self._claim(book.name, record.target, run_id)
            self._live[run_id] = live
        try:
            self._audit.record_run(again)
        except Exception:
            self._release(live)
            raise
        event(log, "runbook_run_retried", run=run_id, runbook=book.name, step=start_at, by=who)
        self._spawn(live, start_at)
        return again

    def wait(self, run_id: str, timeout_s: float) -> bool:
        """True when the run is not live (any more) within `timeout_s`: for tests and `vigil drill`."""
        with self._lock:
            live = self._live.get(run_id)
        return live is None or live.done.wait(timeout_s)

    def live_state(self, run_id: str) -> RunRecord | None:
        with self._lock:
            live = self._live.get(run_id)
            return live.record if live else None

    def active(self) -> int:
        with self._lock:
            return len(self._live)

    # -- the walk ------------------------------------------------------------------------------

    def _claim(self, name: str, target: str, run_id: str) -> None:
        holder = self._held.get((name, target))
        if holder is not None:
            raise RunConflict(f"run {holder} of {name} on {target} is still going: one run per runbook and target")
        if len(self._live) >= self._max_active:
            raise TooManyRuns(f"{len(self._live)} runs are active, the most at once: wait for one to end")
        if self._closing.is_set():
            raise TooManyRuns("Vigil is shutting down")
        self._held[(name, target)] = run_id

    @staticmethod
    def _stop(live: _Live) -> None:
        live.cancel.set()
        attempt = live.attempt  # read once: the walk clears it when the attempt returns
        if attempt is not None:
            attempt.stop()

    def _release(self, live: _Live) -> None:
        with self._lock:
            self._live.pop(live.record.id, None)
            if self._held.get((live.book.name, live.record.target)) == live.record.id:
                del self._held[(live.book.name, live.record.target)]
        live.done.set()

    def _spawn(self, live: _Live, start_at: int) -> None:
        thread = threading.Thread(
            target=self._walk, args=(live, start_at), name=f"run-{live.record.id[:8]}", daemon=True
        )
        thread.start()

    def _walk(self, live: _Live, start_at: int) -> None:
        try:
            state, reason, at_step = "succeeded", "", len(live.book.steps) - 1
            for step in live.book.steps[start_at:]:
                if live.cancel.is_set():
                    state, reason, at_step = "cancelled", f"cancelled by {live.cancelled_by}", step.index
                    break
                self._set(live, step=step.index, reason=f"step {step.index + 1}: {step.name}")
                outcome = self._approve(live, step) if step.kind is StepKind.APPROVE else self._with_retries(live, step)
                if not outcome.ok:
                    cancelled = outcome.event == "cancelled"
                    state = "cancelled" if cancelled else "failed"
                    reason = f"cancelled by {live.cancelled_by}" if cancelled else f"{step.name}: {outcome.message}"
                    at_step = step.index
                    break
            self._set(live, state=state, step=at_step, reason=reason, actor=live.cancelled_by or live.record.actor)
            event(log, "runbook_run_ended", run=live.record.id, runbook=live.book.name, state=state, reason=reason)
        except Exception as exc:  # the store failed under us: say so in the log; recovery marks it interrupted
            event(log, "runbook_run_crashed", level=logging.ERROR, run=live.record.id, error=str(exc))
        finally:
            self._await_straggler(live)
            self._release(live)

    def _await_straggler(self, live: _Live) -> None:
        """Hold the run's lock while an attempt that ignored its deadline still runs: another run on the
        target must not overlap it either."""
        if live.straggler is None:
            return
        try:
            live.straggler.result(timeout=STRAGGLER_WAIT_S)
        except FutureTimeout:
            event(log, "runbook_attempt_stuck", level=logging.ERROR, run=live.record.id, waited_s=STRAGGLER_WAIT_S)
        except Exception:  # its outcome was recorded as timed out already
            pass

    def _with_retries(self, live: _Live, step: Step) -> Outcome:
        outcome = Outcome(False, "failed", "not tried")
        for attempt in range(1, step.retries + 2):
            if attempt > 1 and live.cancel.wait(step.retry_delay_s):
                return Outcome(False, "cancelled", "cancelled before a retry")
            self._event(live, step, attempt, "started", live.record.started_by, step.summary(live.values))
            outcome = self._attempt(live, step)
            self._event(live, step, attempt, outcome.event, live.record.started_by, outcome.message, outcome.output)
            if outcome.ok or not outcome.retryable or live.cancel.is_set():
                return outcome
        return outcome

    def _attempt(self, live: _Live, step: Step) -> Outcome:
        deadline = Deadline(step.timeout_s, self._monotonic)
        live.attempt = deadline
        if live.cancel.is_set():  # a cancel that came before the attempt was there to stop
            deadline.stop()
        future = self._pool.submit(self._steps.attempt, live.book, step, live.record.target, live.values, deadline)
        try:
            # the work keeps its own deadline; SETTLE_S covers noticing it (a last read, a socket closing)
            return future.result(timeout=step.timeout_s + SETTLE_S)
        except FutureTimeout:
            deadline.stop()
            live.straggler = future
            event(log, "runbook_attempt_overran", level=logging.WARNING, run=live.record.id, step=step.name)
            message = (
                f"no result within {step.timeout_s:g}s, and the attempt was still running {SETTLE_S:g}s later: "
                "not retried, so two attempts never overlap"
            )
            return Outcome(False, "timed_out", message, retry=False)
        except Exception as exc:
            return Outcome(False, "failed", f"{type(exc).__name__}: {exc}")
        finally:
            live.attempt = None

    def _approve(self, live: _Live, step: Step) -> Outcome:
        asked = step.summary(live.values)
        self._set(live, state="waiting_approval", reason=f"waiting for approval: {asked}")
        self._event(live, step, 1, "waiting", live.record.started_by, asked)
        deadline = self._clock() + step.timeout_s
        while not live.approval.is_set():
            if live.cancel.is_set():
                self._event(live, step, 1, "cancelled", live.cancelled_by, "cancelled while waiting for approval")
                return Outcome(False, "cancelled")
            left = deadline - self._clock()
            if left <= 0:
                self._event(live, step, 1, "timed_out", SYSTEM, f"nobody approved within {step.timeout_s:g}s")
                return Outcome(False, "timed_out", f"nobody approved within {step.timeout_s:g}s")
            live.approval.wait(min(left, 0.5))
        approver = live.approved_by or "?"
        live.approval.clear()
        self._event(live, step, 1, "approved", approver, f"approved by {approver}")
        self._set(live, state="running", reason=f"approved by {approver}", actor=approver)
        return Outcome(True, "approved")

    def _dry_run(self, live: _Live) -> None:
        refusals = []
        for step in live.book.steps:
            outcome = self._steps.plan(live.book, step, live.record.target, live.values)
            self._event(live, step, 0, outcome.event, live.record.started_by, outcome.message, outcome.output)
            if not outcome.ok:
                refusals.append(f"step {step.index + 1} ({step.name}): {outcome.message}")
        state = "failed" if refusals else "succeeded"
        reason = "; ".join(refusals) if refusals else "dry run: every step could run"
        self._set(live, state=state, step=len(live.book.steps) - 1, reason=reason)

    # -- audit rows ------------------------------------------------------------------------------

    def _set(self, live: _Live, **change: Any) -> None:
        record = replace(live.record, seq=live.record.seq + 1, at=self._clock(), **change)
        self._audit.record_run(record)
        with self._lock:
            live.record = record

    def _event(
        self, live: _Live, step: Step, attempt: int, what: str, actor: str, message: str, output: dict | None = None
    ) -> None:
        ev = StepEvent(
            live.record.id, live.next_event, self._clock(), step.index, step.name, step.kind.value, attempt, what,
            actor, message, output or {},
        )  # fmt: skip
        live.next_event += 1
        self._audit.record_event(ev)

    def _record(self, run_id: str) -> RunRecord:
        record = self._audit.run(run_id)
        if record is None:
            raise UnknownName(f"no run {run_id!r}")
        return record


def _validated(book: Runbook, params: Mapping[str, Any], target: str) -> dict[str, Any]:
    """The run's parameters, bound and checked as for any start; BadRunRequest says what is wrong."""
    if not target:
        raise BadRunRequest(f"{book.name} acts on a {book.target.value}: give its target")
    if len(target) > 512:
        raise BadRunRequest("target: longer than 512 characters")
    try:
        return book.bind_params(params)
    except ValueError as exc:
        raise BadRunRequest(str(exc)) from None
