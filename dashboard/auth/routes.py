"""The auth's routes: `/login`, `/logout`, the JSON API for users and tokens, and the `/admin` page.

Bodies are read inside the handlers, after the caller is known and with a size cap, never by
FastAPI before the auth dependency: an anonymous request never makes the server hold a large body.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from dashboard.auth import csrf
from dashboard.auth.errors import AuthError, BadInput
from dashboard.auth.http import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    as_http,
    headers_of,
    local_path,
    read_form,
    read_json,
    status_of,
)
from dashboard.auth.store import ApiToken, User
from dashboard.render import render
from vigil.access import Principal, Role, require

if TYPE_CHECKING:
    from dashboard.auth.core import Auth

MAX_LOGIN_FORM = 8 * 1024
LOGIN_COOKIE_S = 3600


def rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def user_json(u: User) -> dict[str, Any]:
    return {"name": u.name, "role": u.role.label, "createdAt": rfc3339(u.created_at), "disabled": u.disabled}


def token_json(t: ApiToken) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "role": t.role.label,
        "createdBy": t.created_by,
        "createdAt": rfc3339(t.created_at),
        "expiresAt": rfc3339(t.expires_at),
        "lastUsedAt": rfc3339(t.last_used_at),
        "revoked": t.revoked,
    }


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    role: str = Field(max_length=16)
    password: str = Field(max_length=1024)


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str | None = Field(None, max_length=16)
    password: str | None = Field(None, max_length=1024)
    disabled: bool | None = None


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=128)
    role: str = Field(max_length=16)
    expires_days: float | None = None


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"  # plain HTTP on loopback must still log in


def build_router(auth: Auth) -> APIRouter:
    router = APIRouter()
    api = APIRouter(prefix="/api/v1", tags=["auth"])
    admin_read = Depends(require(Role.ADMIN))
    admin_write = Depends(require(Role.ADMIN, write=True))
    admin_page = Depends(require(Role.ADMIN, page=True))
    admin_form = Depends(require(Role.ADMIN, write=True, page=True))

    # -- login ---------------------------------------------------------------------------------

    def login_form(request: Request, next_path: str, error: str | None = None, status: int = 200) -> Response:
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not (16 <= len(nonce) <= 64):
            nonce = secrets.token_urlsafe(24)
        request.state.principal = None
        request.state.csrf_token = csrf.login_token(auth.secret, nonce)
        response = render(request, "login.html", status=status, next=next_path, error=error)
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=LOGIN_COOKIE_S,
            path="/login",
            httponly=True,
            samesite="lax",
            secure=_secure(request),
        )
        return response

    @router.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/") -> Response:
        who = auth.authenticate(request)
        if who is not None and who.via == "session":
            return RedirectResponse(local_path(next), 303)
        return login_form(request, local_path(next))

    @router.post("/login", include_in_schema=False)
    async def login_submit(request: Request) -> Response:
        try:
            form = await read_form(request, MAX_LOGIN_FORM)
        except AuthError as exc:
            return login_form(request, "/", str(exc), status_of(exc))
        next_path = local_path(form.get("next"))
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not csrf.same(form.get(csrf.FIELD), csrf.login_token(auth.secret, nonce)):
            return login_form(request, next_path, "The login form expired or came from another site: try again.", 403)
        address = request.client.host if request.client else "unknown"
        try:
            session_id = await run_in_threadpool(
                auth.login, form.get("username", "").strip(), form.get("password", ""), address
            )
        except AuthError as exc:
            response = login_form(request, next_path, str(exc), status_of(exc))
            response.headers.update(headers_of(exc))
            return response
        response = RedirectResponse(next_path, 303)
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=int(auth.session_s),
            path="/",
            httponly=True,
            samesite="lax",
            secure=_secure(request),
        )
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    @router.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        # Not `require`: a visitor whose session has already ended is sent to /login, not refused.
        who = await run_in_threadpool(auth.authenticate, request)
        if who is not None and who.via == "session":
            await auth.check_csrf(request)
            await run_in_threadpool(auth.logout, request)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))
        return response

    # -- users and tokens (JSON) ---------------------------------------------------------------

    @api.get("/users", summary="Users and their roles (admin)")
    def list_users(who: Principal = admin_read) -> dict[str, Any]:
        return {"users": [user_json(u) for u in auth.accounts.users()]}

    @api.post("/users", status_code=201, summary="Create a user: {name, role, password} (admin)")
    async def create_user(request: Request, who: Principal = admin_write) -> dict[str, Any]:
        with as_http():
            body = await read_json(request, UserIn)
            user = await run_in_threadpool(
                auth.accounts.create_user, who, body.name, body.role, body.password, auth.now()
            )
        return user_json(user)

    @api.patch("/users/{name}", summary="Change a user's role, password or disabled flag (admin)")
    async def update_user(name: str, request: Request, who: Principal = admin_write) -> dict[str, Any]:
        with as_http():
            body = await read_json(request, UserPatch)
            user = await run_in_threadpool(
                lambda: auth.accounts.update_user(
                    who, name, role=body.role, password=body.password, disabled=body.disabled
                )
            )
        return user_json(user)

    @api.delete("/users/{name}", summary="Delete a user and end its sessions (admin)")
    def delete_user(name: str, who: Principal = admin_write) -> dict[str, Any]:
        with as_http():
            auth.accounts.delete_user(who, name)
        return {}

    @api.get("/tokens", summary="API tokens (never the tokens themselves) (admin)")
    def list_tokens(who: Principal = admin_read) -> dict[str, Any]:
        return {"tokens": [token_json(t) for t in auth.accounts.tokens()]}

    @api.post("/tokens", status_code=201, summary="Create an API token: {name, role, expires_days?}; shown once")
    async def create_token(request: Request, who: Principal = admin_write) -> JSONResponse:
        with as_http():
            body = await read_json(request, TokenIn)
            token, info = auth.accounts.create_token(who, body.name, body.role, body.expires_days, auth.now())
        body_out = {**token_json(info), "token": token}
        return JSONResponse(body_out, status_code=201, headers={"Cache-Control": "no-store"})

    @api.delete("/tokens/{token_id}", summary="Revoke an API token (admin)")
    def revoke_token(token_id: str, who: Principal = admin_write) -> dict[str, Any]:
        with as_http():
            auth.accounts.revoke_token(who, token_id)
        return {}

    # -- the admin page ------------------------------------------------------------------------

    def admin(request: Request, status: int = 200, **extra: Any) -> Response:
        context = {"users": auth.accounts.users(), "tokens": auth.accounts.tokens(), "roles": [r.label for r in Role]}
        context.update({"error": None, "done": None, "new_token": None, **extra})
        return render(request, "admin.html", status=status, rfc3339=rfc3339, **context)

    @router.get("/admin", include_in_schema=False)
    def admin_view(request: Request, done: str | None = None, who: Principal = admin_page) -> Response:
        return admin(request, done=done[:200] if done else None)

    @router.post("/admin/users", include_in_schema=False)
    async def admin_create_user(request: Request, who: Principal = admin_form) -> Response:
        try:
            form = await read_form(request)
            name = form.get("name", "")
            await run_in_threadpool(
                auth.accounts.create_user, who, name, form.get("role", ""), form.get("password", ""), auth.now()
            )
        except AuthError as exc:
            return await run_in_threadpool(admin, request, status_of(exc), error=str(exc))
        return RedirectResponse("/admin?" + urlencode({"done": f"created user {name}"}), 303)

    @router.post("/admin/users/{name}", include_in_schema=False)
    async def admin_change_user(name: str, request: Request, who: Principal = admin_form) -> Response:
        try:
            form = await read_form(request)
            action = form.get("action", "")
            if action == "delete":
                await run_in_threadpool(auth.accounts.delete_user, who, name)
            elif action in ("role", "password", "disable", "enable"):
                changes: dict[str, Any] = {
                    "role": {"role": form.get("role", "")},
                    "password": {"password": form.get("password", "")},
                    "disable": {"disabled": True},
                    "enable": {"disabled": False},
                }[action]
                await run_in_threadpool(lambda: auth.accounts.update_user(who, name, **changes))
            else:
                raise BadInput(f"action {action[:40]!r}: one of role, password, disable, enable, delete")
        except AuthError as exc:
            return await run_in_threadpool(admin, request, status_of(exc), error=str(exc))
        return RedirectResponse("/admin?" + urlencode({"done": f"{action}: {name}"}), 303)

    @router.post("/admin/tokens", include_in_schema=False)
    async def admin_create_token(request: Request, who: Principal = admin_form) -> Response:
        try:
            form = await read_form(request)
            days = form.get("expires_days", "").strip()
            try:
                expires_days = float(days) if days else None
            except ValueError:
                expires_days = -1.0  # refused by create_token with the field's bounds
            token, info = auth.accounts.create_token(
                who, form.get("name", ""), form.get("role", ""), expires_days, auth.now()
            )
        except AuthError as exc:
            return await run_in_threadpool(admin, request, status_of(exc), error=str(exc))
        # shown on this page only: a redirect would put the token in a URL
        return await run_in_threadpool(admin, request, new_token={"token": token, "name": info.name})

    @router.post("/admin/tokens/{token_id}/revoke", include_in_schema=False)
    async def admin_revoke_token(token_id: str, request: Request, who: Principal = admin_form) -> Response:
        try:
            await run_in_threadpool(auth.accounts.revoke_token, who, token_id)
        except AuthError as exc:
            return await run_in_threadpool(admin, request, status_of(exc), error=str(exc))
        return RedirectResponse("/admin?done=revoked+token", 303)

    router.include_router(api)
    return router
