from __future__ import annotations

import pytest

from alerting.notify.dedup import Entry, NotificationLog, needs_update

A, B = "a", "b"
F = frozenset


@pytest.mark.parametrize(
    ("entry", "firing", "resolved", "send_resolved", "now", "expected"),
    [
        (None, F({A}), F(), True, 0.0, True),  # first notification
        (None, F(), F({A}), True, 0.0, False),  # resolved before anything was sent: nothing to say
        (Entry(F({A}), F(), 0.0), F({A}), F(), True, 10.0, False),  # same as last time
        (Entry(F({A}), F(), 0.0), F({A, B}), F(), True, 10.0, True),  # a new firing alert
        (Entry(F({A, B}), F(), 0.0), F({A}), F({B}), True, 10.0, True),  # B resolved, receiver wants it
        (Entry(F({A, B}), F(), 0.0), F({A}), F({B}), False, 10.0, False),  # ... receiver does not
        (Entry(F({A}), F(), 0.0), F(), F({A}), False, 10.0, True),  # all resolved: clear the log regardless
        (Entry(F(), F({A}), 0.0), F(), F({A}), True, 10.0, False),  # told already
        (Entry(F({A}), F(), 0.0), F({A}), F(), True, 100.0, True),  # repeat_interval passed
    ],
)
def test_needs_update_as_alertmanager(
    entry: Entry | None, firing: frozenset, resolved: frozenset, send_resolved: bool, now: float, expected: bool
) -> None:
    assert needs_update(entry, firing, resolved, send_resolved, 100.0, now) is expected


def test_the_log_in_memory_is_bounded_in_bytes() -> None:
    nflog = NotificationLog(None, max_bytes=1000)
    for i in range(100):
        nflog.record("r", f"g{i}", Entry(F({A}), F(), float(i)))
    assert nflog.get("r", "g99") is not None and nflog.get("r", "g0") is None
