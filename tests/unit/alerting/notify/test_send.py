from __future__ import annotations

import threading

import httpx
import pytest

from alerting.config import IntegrationConfig
from alerting.notify.dedup import Entry
from alerting.notify.message import Notification, Request
from alerting.notify.metrics import NotifyMetrics
from alerting.notify.send import Backoff, Outgoing, Sender, retry_after


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0", 0.0), ("100000", 300.0), ("Thu, 01 Jan 1970 00:00:10 GMT", 5.0), ("soon", None), (None, None)],
)
def test_retry_after_in_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert retry_after(header, now=5.0) == seconds


def outgoing(key: str = "g") -> Outgoing:
    n = Notification("r", "r/webhook/0", key, {}, (), (), "", 0.0)
    return Outgoing(n, Request("http://receiver/hook", b"{}"), Entry(frozenset(), frozenset(), 0.0), 0.0)


@pytest.mark.parametrize(
    ("answers", "posts", "delivered", "status"),
    [
        ([500, 503, 200], 3, 1, "sent"),  # retried, delivered once
        ([429, 200], 2, 1, "sent"),
        ([404], 1, 0, "failed"),  # other 4xx is final
        ([200], 1, 1, "sent"),
    ],
)
def test_retries_by_status(answers: list[int], posts: int, delivered: int, status: str) -> None:
    seen: list[int] = []
    done = threading.Event()
    replies = iter(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        code = next(replies)
        seen.append(code)
        if len(seen) == len(answers):
            done.set()
        return httpx.Response(code, headers={"Retry-After": "0"} if code == 429 else {})

    metrics = NotifyMetrics(None)
    recorded: list[Outgoing] = []
    sender = Sender(
        "r/webhook/0",
        IntegrationConfig(kind="webhook", url="http://receiver/hook"),
        metrics,
        recorded.append,
        backoff=Backoff(initial_s=0.001, max_s=0.002),
        client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    sender.start()
    sender.submit(outgoing())
    assert done.wait(10)
    sender.close(5)
    assert len(seen) == posts and len(recorded) == delivered
    assert metrics.notifications.labels(receiver="r/webhook/0", status=status)._value.get() == 1


def test_a_full_queue_drops_the_oldest_and_a_group_keeps_only_its_newest() -> None:
    metrics = NotifyMetrics(None)
    sender = Sender("r", IntegrationConfig(kind="webhook", url="http://x"), metrics, lambda out: None, max_items=2)
    for key in ("a", "b", "a", "c"):
        sender.submit(outgoing(key))
    assert sender.queued == 2
    assert sender.pending("b") is None and sender.pending("a") is not None
    assert metrics.dropped.labels(stage="send_queue")._value.get() == 1
    sender.close(1)
