"""What the command lines that call a running Vigil's API share: the token's variable, a client that
sends it, and the message of an error answer (FastAPI's `{"detail": ...}`, or the raw text).

Each command keeps its own wording for 401/403 and an unreachable server: they say what to do there.
"""

from __future__ import annotations

from typing import Any

import httpx

TOKEN_ENV = "VIGIL_API_TOKEN"  # a bearer token of the API: one an admin made at /admin, or one of VIGIL_API_TOKENS


def bearer_client(url: str, token: str | None, timeout: float) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=timeout)


def error_detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except (ValueError, AttributeError):  # not JSON, or JSON that is not an object
        return response.text
