"""An app with the real `Auth` (SQLite in a temporary folder, a cheap argon2) and probe routes guarded by `require`."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import CollectorRegistry

from dashboard.auth import Auth
from dashboard.auth.passwords import Passwords
from vigil.access import Principal, Role, authenticate, csrf_checker, require
from vigil.app import SecurityHeaders
from vigil.kernel import RunPlan, ServiceContext
from vigil.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ADMIN_PASSWORD = "correct horse battery"
T0 = 1_750_000_000.0


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> int:
        return int(self.now * 1e9)


@dataclass
class Harness:
    auth: Auth
    app: FastAPI
    clock: Clock
    data: Path
    clients: list[TestClient] = field(default_factory=list)

    def client(self, host: str = "127.0.0.1", **kwargs: Any) -> TestClient:
        c = TestClient(self.app, client=(host, 5000), follow_redirects=False, **kwargs)
        self.clients.append(c)
        return c

    def login(self, user: str = "admin", password: str = ADMIN_PASSWORD, host: str = "127.0.0.1") -> TestClient:
        c = self.client(host)
        r = c.post("/login", data={"username": user, "password": password, "csrf_token": login_token(c)})
        assert r.status_code == 303, r.text
        return c


def login_token(c: TestClient, path: str = "/login") -> str:
    """The CSRF token of the login form (and the nonce cookie the client now holds)."""
    return csrf_of(c.get(path).text)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def cheap_passwords() -> Passwords:
    return Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


READER = Depends(require(Role.VIEWER))
WRITER = Depends(require(Role.OPERATOR, write=True))
PAGE = Depends(require(Role.VIEWER, page=True))


def probes() -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/probe")
    def read(who: Principal = READER) -> dict[str, str]:
        return {"name": who.name, "role": who.role.label, "via": who.via}

    @router.post("/api/v1/probe")
    def write(who: Principal = WRITER) -> dict[str, str]:
        return {"name": who.name}

    @router.get("/page")
    def page(who: Principal = PAGE) -> dict[str, str]:
        return {"name": who.name}

    return router


def make_harness(tmp_path: Path, **settings: Any) -> Harness:
    clock = Clock()
    values = {"admin_password": ADMIN_PASSWORD, "api_tokens": ["static-tok"], "data": tmp_path, **settings}
    ctx = ServiceContext(
        settings=Settings(**values),
        store=None,  # type: ignore[arg-type]  # auth never touches the metrics store
        registry=CollectorRegistry(),
        plan=RunPlan(host="127.0.0.1", port=8080, url="http://127.0.0.1:8080", data=tmp_path),
        clock=clock,
    )
    auth = Auth(ctx, passwords=cheap_passwords())
    auth.start()
    app = FastAPI()
    app.add_middleware(SecurityHeaders)
    app.include_router(auth.router)
    app.include_router(probes())
    app.dependency_overrides[authenticate] = auth.authenticate_request  # as DashboardService binds it
    app.dependency_overrides[csrf_checker] = lambda: auth.check_csrf
    return Harness(auth, app, clock, tmp_path)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = make_harness(tmp_path)
    yield h
    h.auth.close()
