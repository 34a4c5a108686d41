"""The one place auth's errors become HTTP statuses, and bounded reading of the bodies auth accepts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit

from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError

from dashboard.auth.errors import (
    AuthError,
    BadCredentials,
    BadInput,
    Busy,
    Conflict,
    NotFound,
    RateLimited,
    TooLarge,
)

STATUS: dict[type[AuthError], int] = {
    BadInput: 400,
    BadCredentials: 401,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    RateLimited: 429,
    Busy: 503,
}
SESSION_COOKIE = "vigil_session"
LOGIN_COOKIE = "vigil_login_csrf"  # the login form's nonce, path /login
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 64
M = TypeVar("M", bound=BaseModel)


def status_of(exc: AuthError) -> int:
    return next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 400)


def headers_of(exc: AuthError) -> dict[str, str]:
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, BadCredentials):
        return {"WWW-Authenticate": "Bearer"}
    return {}


@contextmanager
def as_http() -> Iterator[None]:
    """For JSON routes: an AuthError leaves as `{"detail": message}` with its status."""
    try:
        yield
    except AuthError as exc:
        raise HTTPException(status_of(exc), str(exc), headers=headers_of(exc) or None) from None


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused past `max_bytes` before more is read; kept on the request for later readers."""
    cached = getattr(request, "_body", None)
    if cached is not None:
        return cached
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"body over {max_bytes} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            raise TooLarge(f"body over {max_bytes} bytes")
    request._body = bytes(raw)  # Starlette's form(), body() and stream() read this once it is set
    return request._body


def is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == FORM_TYPE


async def read_form_pairs(request: Request, max_bytes: int = MAX_FORM_BYTES) -> list[tuple[str, str]]:
    """An HTML form's fields in order, every value of each, from a bounded urlencoded body."""
    if not is_form(request):
        raise BadInput(f"send the form as {FORM_TYPE}")
    raw = await read_body(request, max_bytes)
    try:
        return parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"form: {exc}") from None


async def read_form(request: Request, max_bytes: int = MAX_FORM_BYTES) -> dict[str, str]:
    """An HTML form's fields (first value of each), from a bounded urlencoded body."""
    form: dict[str, str] = {}
    for key, value in await read_form_pairs(request, max_bytes):
        form.setdefault(key, value)
    return form


async def read_json(request: Request, model: type[M], max_bytes: int = MAX_FORM_BYTES) -> M:
    """A JSON body as `model`; BadInput names the first field that is wrong."""
    raw = await read_body(request, max_bytes)
    try:
        return model.model_validate(json.loads(raw or b"null"))
    except json.JSONDecodeError as exc:
        raise BadInput(f"body: not JSON ({exc.msg} at position {exc.pos})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadInput(f"{where}: {first['msg']}") from None


def local_path(target: str | None) -> str:
    """`target` when it is a path on this site, else `/`: a login's `next` is never an open redirect."""
    if not target or len(target) > 2048 or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 or c == "\\" for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target
