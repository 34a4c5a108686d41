"""Who is asking, and may they: the contract every service's routes share for login, roles and CSRF.

The dashboard owns users, sessions, API tokens and CSRF tokens (`dashboard/auth`); the routes of
other services (alerting, runbooks) only declare what they need:

    @router.get("/api/v1/alerts")
    def alerts(who: Principal = Depends(require(Role.VIEWER))): ...

    @router.post("/api/v1/silences")
    def silence(who: Principal = Depends(require(Role.OPERATOR, write=True))): ...

    @router.get("/alerts")  # a page: an anonymous visitor is sent to /login instead of a 401
    def page(who: Principal = Depends(require(Role.VIEWER, page=True))): ...

`authenticate` and `csrf_checker` are placeholders: the dashboard's service binds the real ones
(`vigil.providers`). Without it nobody is authenticated, so every guarded route refuses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request

from vigil.providers import fallback, provided


class Role(IntEnum):
    """Ordered: each role may do what the ones below it may."""

    VIEWER = 1  # reads
    OPERATOR = 2  # also silences alerts, runs and approves runbooks
    ADMIN = 3  # also manages users and API tokens

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValueError(f"role {value!r}: expected one of viewer, operator, admin") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `via` says how: a login cookie needs a CSRF token to change state."""

    name: str
    role: Role
    via: Literal["session", "token"]


async def authenticate(request: Request) -> Principal | None:
    """Placeholder: the caller, or None when anonymous. The dashboard's auth binds the real one."""
    return await provided(request, authenticate, fallback(None))


CsrfCheck = Callable[[Request], Awaitable[None]]
"""Raises HTTPException(403) unless the request carries its session's CSRF token."""


async def _no_csrf(request: Request) -> None:
    raise HTTPException(403, "CSRF protection is not configured")


async def csrf_checker(request: Request) -> CsrfCheck:
    """Placeholder: the dashboard's auth binds the real check."""
    return await provided(request, csrf_checker, fallback(_no_csrf))


class LoginRequired(HTTPException):
    """An anonymous visitor to a page: answered with a redirect to the login form."""

    def __init__(self, next_path: str) -> None:
        super().__init__(303, "login required", headers={"Location": f"/login?next={quote(next_path, safe='/')}"})


def require(role: Role, *, write: bool = False, page: bool = False) -> Callable[..., object]:
    """A dependency that answers the principal when it holds `role`.

    Anonymous: 401 (JSON, with `WWW-Authenticate: Bearer`), or a redirect to `/login` for a page.
    Too low a role: 403. `write=True`: a request authenticated by the login cookie must also carry
    the session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`); a bearer token needs none.
    """

    async def dependency(
        request: Request,
        who: Principal | None = Depends(authenticate),  # noqa: B008
        check_csrf: CsrfCheck = Depends(csrf_checker),  # noqa: B008
    ) -> Principal:
        if who is None:
            if page:
                raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
            raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
        if who.role < role:
            raise HTTPException(403, f"the {role.label} role is required; {who.name} is {who.role.label}")
        if write and who.via == "session":
            await check_csrf(request)
        return who

    return dependency
