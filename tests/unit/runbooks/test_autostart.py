"""Automatic starts: a rate limit per runbook and target, and the fleet-wide circuit breaker."""

from __future__ import annotations

from runbooks.autostart import AutoGuard


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_past_n_runs_an_hour_tells_once_and_closes_as_they_age() -> None:
    clock, opened = Clock(), []
    guard = AutoGuard(3, 0, clock, lambda limit, at: opened.append((limit, at)))
    for i in range(3):
        assert guard.admit("rb", f"t{i}") is None
        clock.now += 60
    reason = guard.admit("rb", "t9")
    assert reason is not None and reason.startswith("circuit breaker open: 3 automatic runs in the last hour")
    assert guard.admit("other", "t10") is not None  # fleet-wide: every runbook and target
    assert opened == [(3, clock.now)] and guard.open  # told once, not once per refusal
    clock.now += 3600 - 3 * 60 + 1  # the first start ages out
    assert not guard.open
    assert guard.admit("rb", "t9") is None


def test_one_runbook_on_one_target_is_rate_limited() -> None:
    clock = Clock()
    guard = AutoGuard(100, 600, clock)
    assert guard.admit("rb", "a") is None
    clock.now += 599
    assert (guard.admit("rb", "a") or "").startswith("rate limited: rb started on a 599s ago")
    assert guard.admit("rb", "b") is None and guard.admit("other", "a") is None
    clock.now += 1
    assert guard.admit("rb", "a") is None


def test_a_start_that_did_not_happen_does_not_count() -> None:
    guard = AutoGuard(1, 600, Clock())
    assert guard.admit("rb", "a") is None
    guard.forget("rb", "a")
    assert guard.admit("rb", "a") is None
