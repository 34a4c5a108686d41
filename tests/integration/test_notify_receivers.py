"""Real HTTP receivers on loopback that fail in the ways receivers fail; each notification lands once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from alerting.config import AlertingConfig, IntegrationConfig, ReceiverConfig, RouteConfig
from alerting.notify.pipeline import Pipeline
from alerting.notify.send import Backoff
from tests.receivers import serve_on_loopback
from tests.unit.alerting.notify.helpers import alert
from vigil.store import Store
from vigil.store.schema import NOTIFICATION_LOG, SILENCES


class Receiver:
    """Answers each POST with the next of `script` (a status, or "hang"), then 200; keeps what it accepted."""

    def __init__(self, script: list[object]) -> None:
        self.script = list(script)
        self.accepted: list[tuple[float, dict]] = []
        self.posts = 0
        self.posted_at: list[float] = []  # time.monotonic() of each POST's arrival
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.posts += 1
                receiver.posted_at.append(time.monotonic())
                step = receiver.script.pop(0) if receiver.script else 200
                if step == "hang":
                    receiver.release.wait(30)
                    return
                self.send_response(int(step))  # type: ignore[call-overload]
                if step == 429:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                if step == 200:
                    receiver.accepted.append((time.monotonic(), body))

            def log_message(self, *args: object) -> None:
                pass

        self.server, self.url = serve_on_loopback(Handler)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def config(urls: dict[str, str], timeout_s: float = 10.0) -> AlertingConfig:
    route = RouteConfig(receiver="all", group_by=("alertname",), group_wait_s=0.1, group_interval_s=0.5,
                        repeat_interval_s=3600)  # fmt: skip
    hooks = tuple(IntegrationConfig(kind="webhook", url=u, timeout_s=timeout_s) for u in urls.values())
    return AlertingConfig(route=route, receivers={"all": ReceiverConfig("all", hooks)})


def wait_for(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_500_429_then_200_each_deliver_exactly_once(receivers: list[Receiver]) -> None:
    flaky = Receiver([500, 500, 200])
    limited = Receiver([429, 200])
    receivers += [flaky, limited]
    p = Pipeline(config({"flaky": flaky.url, "limited": limited.url}), None, None, backoff=Backoff(0.05, 0.2))
    p.start()
    try:
        now = time.time()
        a = alert(gpu="0", at=now)
        p.notify([a], now)
        wait_for(lambda: flaky.accepted and limited.accepted)
        for _ in range(10):  # the evaluator keeps handing it in; nothing new to say
            p.notify([a], time.time())
            time.sleep(0.1)
        assert (flaky.posts, len(flaky.accepted)) == (3, 1)
        assert (limited.posts, len(limited.accepted)) == (2, 1)
        p.notify([alert(gpu="0", at=now, resolved_at=time.time())], time.time())
        wait_for(lambda: len(flaky.accepted) == 2 and len(limited.accepted) == 2)
        assert [body["status"] for _, body in flaky.accepted] == ["firing", "resolved"]
    finally:
        p.close(5)


def test_retry_after_is_honoured_and_failing_receivers_do_not_delay_a_healthy_one(receivers: list[Receiver]) -> None:
    limited = Receiver([429, 200])  # Retry-After: 1
    failing = Receiver([500, 500, 500, 200])
    healthy = Receiver([])
    receivers += [limited, failing, healthy]
    urls = {"limited": limited.url, "failing": failing.url, "healthy": healthy.url}
    p = Pipeline(config(urls), None, None, backoff=Backoff(0.3, 1.0))
    p.start()
    try:
        p.notify([alert(gpu="0", at=time.time())], time.time())
        wait_for(lambda: limited.accepted and failing.accepted and healthy.accepted)
        # Ordering, not a stopwatch: the healthy one had it before either failing one was retried.
        assert healthy.accepted[0][0] < limited.posted_at[1] and healthy.accepted[0][0] < failing.posted_at[1]
        assert limited.posted_at[1] - limited.posted_at[0] >= 1.0, "Retry-After: 1 waits a second"
        time.sleep(0.5)
        assert [len(r.accepted) for r in (limited, failing, healthy)] == [1, 1, 1]
        assert (failing.posts, limited.posts, healthy.posts) == (4, 2, 1)
    finally:
        p.close(5)


def test_a_hung_receiver_does_not_delay_a_healthy_one(receivers: list[Receiver]) -> None:
    hung = Receiver(["hang"])
    healthy = Receiver([])
    receivers += [hung, healthy]
    p = Pipeline(
        config({"hung": hung.url, "healthy": healthy.url}, timeout_s=3.0), None, None, backoff=Backoff(0.05, 0.2)
    )
    p.start()
    try:
        start = time.monotonic()
        p.notify([alert(gpu="0", at=time.time())], time.time())
        wait_for(lambda: healthy.accepted)
        # Generous bound, and the point: the healthy one did not wait out the hung one's 3 s timeout.
        assert healthy.accepted[0][0] - start < 2.5
        wait_for(lambda: hung.accepted)  # timed out, retried, delivered
        assert hung.accepted[0][0] - start >= 3.0
        assert len(hung.accepted) == 1 and len(healthy.accepted) == 1
    finally:
        p.close(5)


def test_silences_and_the_log_survive_a_restart(store: Store, receivers: list[Receiver]) -> None:
    store.command(f"TRUNCATE TABLE {SILENCES}")
    store.command(f"TRUNCATE TABLE {NOTIFICATION_LOG}")
    hook = Receiver([])
    receivers.append(hook)
    now = time.time()
    first = Pipeline(config({"hook": hook.url}), store, None)
    first.start()
    silence = first.silences.create([("host", "=", "b")], now, now + 3600, "alice", "maintenance")
    first.notify([alert(gpu="0", at=now)], now)
    wait_for(lambda: hook.accepted)
    first.close(5)

    second = Pipeline(config({"hook": hook.url}), store, None)
    second.start()
    try:
        assert [s.id for s in second.silences.list(time.time())] == [silence.id]
        assert second.silences.expire(silence.id, time.time())
        second.notify([alert(gpu="0", at=now)], time.time())  # still firing after the restart
        time.sleep(1.5)  # a group's first flush is 0.1 s: a second page would be here by now
        assert len(hook.accepted) == 1
        second.notify([alert(gpu="0", at=now, resolved_at=time.time())], time.time())
        wait_for(lambda: len(hook.accepted) == 2)  # no lost resolve
        assert hook.accepted[1][1]["status"] == "resolved"
    finally:
        second.close(5)
    third = Pipeline(config({"hook": hook.url}), store, None)
    third.silences.load(time.time())
    assert third.silences.list(time.time()) == []  # the expiry was kept too
