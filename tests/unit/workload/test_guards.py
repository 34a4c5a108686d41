"""The body cap and the disconnect watch, driven through their ASGI interface without a server."""

import asyncio
import json

from workload.guards import BodyLimit, ClientGone, body_limit_for, disconnected, unless_gone
from workload.model import ModelConfig
from workload.settings import MODEL_CONTEXT, WorkloadSettings


async def echo(scope, receive, send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def call(app, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, bytes, int]:
    """Status, body, and how many body chunks the app pulled from the client."""
    pulled = 0
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        return messages[pulled - 1]

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "headers": headers}, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), pulled


def test_a_declared_oversize_body_is_refused_without_reading_it() -> None:
    status, body, pulled = call(BodyLimit(echo, 1000), [(b"content-length", b"67108864")], [b"x" * 10])
    assert status == 413 and pulled == 0
    error = json.loads(body)["error"]
    assert error["code"] == 413 and error["type"] == "invalid_request_error" and "1000 bytes" in error["message"]


def test_a_streamed_body_is_cut_off_at_the_cap() -> None:
    status, _, pulled = call(BodyLimit(echo, 1000), [], [b"x" * 600] * 100)
    assert status == 413 and pulled == 2


def test_a_body_under_the_cap_reaches_the_app_whole() -> None:
    status, body, _ = call(BodyLimit(echo, 1000), [(b"content-length", b"900")], [b"a" * 500, b"b" * 400])
    assert status == 200 and body == b"a" * 500 + b"b" * 400


def test_a_bad_content_length_is_refused() -> None:
    assert call(BodyLimit(echo, 1000), [(b"content-length", b"-5")], [b""])[0] == 413


def test_the_default_cap_fits_a_full_context_prompt_escaped_at_worst() -> None:
    assert ModelConfig.max_model_len == MODEL_CONTEXT
    worst = len(json.dumps({"prompt": "\x01" * MODEL_CONTEXT, "max_tokens": 1, "temperature": 0.7, "seed": 1}))
    assert worst <= WorkloadSettings().max_body_bytes == body_limit_for(MODEL_CONTEXT) < 64 * 1024


def test_unless_gone_cancels_the_work_when_the_client_leaves() -> None:
    async def scenario() -> bool:
        messages = asyncio.Queue()
        gone = asyncio.ensure_future(disconnected(messages.get))
        work = asyncio.Event()
        await messages.put({"type": "http.disconnect"})
        try:
            await unless_gone(work.wait(), gone)
        except ClientGone:
            return True
        return False

    assert asyncio.run(scenario())


def test_unless_gone_returns_the_result_while_the_client_stays() -> None:
    async def scenario() -> int:
        gone = asyncio.get_running_loop().create_future()

        async def answer() -> int:
            return 42

        return await unless_gone(answer(), gone)

    assert asyncio.run(scenario()) == 42
