"""Users, roles, sessions, API tokens and CSRF: the `vigil.access` contract's implementation."""

from __future__ import annotations

from fastapi import APIRouter, Request

from vigil.access import Principal
from vigil.kernel import Health, ServiceContext


class Auth:
    """Placeholder until the auth lands: nobody is authenticated."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.router = APIRouter()

    def authenticate(self, request: Request) -> Principal | None:
        return None

    async def check_csrf(self, request: Request) -> None:
        from fastapi import HTTPException

        raise HTTPException(403, "CSRF protection is not configured")

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def health(self) -> Health:
        return True, {}
