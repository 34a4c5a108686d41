"""What the dashboard's integration tests share: a caller the tests switch between roles, bound the way the
dashboard's auth binds one (principal and CSRF token on `request.state`), and the app with a rule file.

`vigil.access.authenticate` answers the test's `Caller`, or an admin for the API token; the CSRF check
compares the form field or header with the session's token, as the dashboard's `Auth` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from vigil.access import Principal, Role, authenticate, csrf_checker
from vigil.app import create_app
from vigil.kernel import RunPlan
from vigil.settings import Settings
from vigil.store import Store


@dataclass
class Caller:
    """Who the bound `authenticate` answers as; None is anonymous."""

    principal: Principal | None = None


def as_(caller: Caller, role: Role, via: str = "session") -> None:
    caller.principal = Principal(f"{role.label}-1", role, via)  # type: ignore[arg-type]


def bind_caller(app: FastAPI, caller: Caller, token: str, csrf: str, *, own_csrf_check: bool = False) -> None:
    """Bearer `token` is an admin script; otherwise `caller`, whose sessions carry `csrf` (or keep the
    dashboard service's own CSRF check with `own_csrf_check`)."""

    def who(request: Request) -> Principal | None:
        if request.headers.get("authorization") == f"Bearer {token}":  # scripts, as VIGIL_API_TOKENS
            return Principal("api-token", Role.ADMIN, "token")
        request.state.principal = caller.principal
        request.state.csrf_token = csrf if caller.principal and caller.principal.via == "session" else ""
        return caller.principal

    async def check(request: Request) -> None:
        form = await request.form()
        if (form.get("csrf_token") or request.headers.get("x-csrf-token")) != csrf:
            raise HTTPException(403, "CSRF token missing or wrong")

    app.dependency_overrides[authenticate] = who
    if not own_csrf_check:
        app.dependency_overrides[csrf_checker] = lambda: check


def rules_app(store: Store, data: Path, services: tuple[Any, ...], rules: str, token: str) -> FastAPI:
    """The app of `services` with `rules` as its only rule file (no default pack) and `token` for scripts."""
    rules_dir = data / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    (rules_dir / "test.yaml").write_text(rules)
    settings = Settings(data=data, rules_dir=rules_dir, default_rules=False, api_tokens=[token])
    plan = RunPlan(host="127.0.0.1", port=1, url="http://127.0.0.1:1", data=data)
    return create_app(settings, store, plan, services=services)
