"""How each kind of step runs, once, and what a dry run says it would do: the engine's step layer.

An attempt answers an `Outcome` within its `Deadline`; the engine adds retries, the audit rows and the lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runbooks.actions import ActionFailed, ActionRefused, ActionTimedOut, Actuators
from runbooks.deadline import Deadline
from runbooks.model import ACTIONS, CheckExpr, Runbook, Step, StepKind, TargetKind, bind_args

CheckFn = Callable[[CheckExpr], tuple[bool, list[dict[str, Any]]]]
"""Reads a (bound) check from the store: (passed, the values read)."""


@dataclass
class Outcome:
    ok: bool
    event: str  # succeeded, failed, refused, timed_out, cancelled
    message: str = ""
    output: dict[str, Any] = field(default_factory=dict)
    retry: bool = True  # False: not retried whatever the event (an attempt that would not stop)

    @property
    def retryable(self) -> bool:
        return self.retry and self.event in ("failed", "timed_out")


class StepRunner:
    def __init__(self, actuators: Actuators, check: CheckFn) -> None:
        self._actuators = actuators
        self._check = check

    def attempt(self, book: Runbook, step: Step, target: str, values: Mapping[str, Any], deadline: Deadline) -> Outcome:
        """One attempt at an action, check or wait_for, within `deadline` (approvals are the engine's)."""
        if step.kind is StepKind.NOTE:
            return Outcome(True, "succeeded", step.summary(values))
        if step.kind is StepKind.ACTION:
            return self._action(book.target, step, target, values, deadline)
        assert step.check is not None
        check = step.check.bound(values)
        if step.kind is StepKind.CHECK:
            passed, read = self._check(check)
            return Outcome(passed, "succeeded" if passed else "failed", _said(check, passed), {"values": read})
        reads = 0
        while True:
            passed, read = self._check(check)
            reads += 1
            if passed:
                return Outcome(True, "succeeded", _said(check, True), {"values": read, "reads": reads})
            if deadline.stopped:
                return Outcome(False, "cancelled", "cancelled while waiting", {"values": read, "reads": reads})
            left = deadline.left()
            if left <= 0:
                message = f"not true within {step.timeout_s:g}s: {_said(check, False)}"
                return Outcome(False, "timed_out", message, {"values": read, "reads": reads})
            if deadline.wait(min(step.every_s, left)):
                return Outcome(False, "cancelled", "cancelled while waiting", {"values": read, "reads": reads})

    def _action(
        self, kind: TargetKind, step: Step, target: str, values: Mapping[str, Any], deadline: Deadline
    ) -> Outcome:
        assert step.action is not None
        try:
            args = bind_args(step, values, ACTIONS[kind][step.action])
        except ValueError as exc:
            return Outcome(False, "refused", str(exc))
        try:
            answer = self._actuators.perform(kind, target, step.action, args, deadline)
        except ActionRefused as exc:
            return Outcome(False, "refused", str(exc), {"args": args})
        except ActionTimedOut as exc:
            return Outcome(False, "cancelled" if deadline.stopped else "timed_out", str(exc), {"args": args})
        except ActionFailed as exc:
            return Outcome(False, "failed", str(exc), {"args": args})
        return Outcome(True, "succeeded", f"{step.action} done", {"args": args, "answer": answer})

    def plan(self, book: Runbook, step: Step, target: str, values: Mapping[str, Any]) -> Outcome:
        """What the step would do, changing nothing: an action's refusal shows now; a check is read once."""
        would = step.summary(values)
        if step.kind is StepKind.ACTION:
            assert step.action is not None
            try:
                args = bind_args(step, values, ACTIONS[book.target][step.action])
            except ValueError as exc:
                return Outcome(False, "refused", str(exc), {"would": would})
            refusal = self._actuators.preflight(book.target, target, step.action, args)
            if refusal:
                return Outcome(False, "refused", f"would be refused: {refusal}", {"would": would, "args": args})
            return Outcome(True, "planned", f"would {would}", {"would": would, "args": args})
        if step.kind in (StepKind.CHECK, StepKind.WAIT_FOR):
            assert step.check is not None
            try:
                passed, read = self._check(step.check.bound(values))
            except Exception as exc:
                return Outcome(True, "planned", f"would check {would} (cannot read now: {exc})", {"would": would})
            now = "true" if passed else "false"
            return Outcome(
                True, "planned", f"would check {would}; now {now}", {"would": would, "now": passed, "values": read}
            )
        if step.kind is StepKind.APPROVE:
            return Outcome(True, "planned", f"would wait for an operator to approve: {would}", {"would": would})
        return Outcome(True, "planned", would, {"would": would})


def _said(check: CheckExpr, passed: bool) -> str:
    return f"{check.describe()}: {'true' if passed else 'false'}"
