"""The rule evaluator waits for a person's history read, and never longer than its allowance."""

from __future__ import annotations

import threading
import time

from vigil.store.foreground import Foreground


def test_idle_store_does_not_hold_the_evaluator() -> None:
    gate = Foreground(quiet_s=0.0)
    done = threading.Event()
    threading.Thread(target=lambda: (gate.wait_quiet(time.monotonic() + 3600), done.set()), daemon=True).start()
    assert done.wait(30)  # an hour's allowance, yet it returns at once: nothing is being read


def test_background_waits_until_the_read_in_flight_ends() -> None:
    gate = Foreground(quiet_s=0.0)
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def read() -> None:
        with gate.reading():
            inside.set()
            release.wait(30)
            order.append("read done")

    reader = threading.Thread(target=read)
    reader.start()
    inside.wait(30)
    waiter = threading.Thread(target=lambda: (gate.wait_quiet(time.monotonic() + 60), order.append("evaluator")))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and order == []  # still held back by the read
    release.set()
    reader.join(30)
    waiter.join(30)
    assert order == ["read done", "evaluator"]


def test_the_allowance_bounds_the_wait_even_while_reads_go_on() -> None:
    gate = Foreground(quiet_s=0.0)
    with gate.reading():
        waited = gate.wait_quiet(time.monotonic() + 0.05)  # returns at its deadline, read still in flight
    assert waited >= 0.0
