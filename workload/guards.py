"""HTTP guards of the workload: a request-body cap, and noticing a client that went away.

Both work on the ASGI channel itself, below FastAPI: the body cap must act before anything parses
a body, and disconnects are only visible as the `http.disconnect` message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
T = TypeVar("T")


def body_limit_for(max_model_len: int) -> int:
    """The largest useful body: a prompt of `max_model_len` bytes (the tokenizer is one token per byte),
    each escaped by JSON at worst to six bytes (`\\u00XX`), plus 8 KiB for the other fields."""
    return 6 * max_model_len + 8192


class BodyLimit:
    """Refuse a body over `max_bytes` with 413 before it is buffered: by Content-Length when the
    client sends one, else as soon as the streamed chunks pass the cap.

    The body (at most `max_bytes`) is read here and replayed to the app, so the app never holds
    more; later `receive()` calls go to the server as before, for disconnect detection.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send, f"{declared.decode(errors='replace')} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before its body arrived: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, f"over {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal pending
            if pending is not None:
                message, pending = pending, None
                return message
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, size: str) -> None:
        message = (
            f"request body is too large ({size}); the limit is {self.max_bytes} bytes, enough for a prompt "
            "that fills the model's context (set by --max-body-bytes)"
        )
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": 413}
        payload = json.dumps({"error": error}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class ClientGone(Exception):
    """The client disconnected before its response was ready."""


async def disconnected(receive: Receive) -> None:
    """Return when the server reports the client gone (call only once the body has been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_gone(work: Awaitable[T], gone: asyncio.Future[None]) -> T:
    """Await `work`; if the client disconnects first, cancel it and raise `ClientGone`."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task.done():
        return task.result()
    task.cancel()
    raise ClientGone
