"""`vigil.providers`: a placeholder dependency answers what its service bound, its default where nothing
is bound, and a test's own override where one is set; a provider of the wrong shape is refused at binding."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from vigil.providers import Providers, bind, fallback, provided, unbound


async def thing(request: Request) -> str | None:
    return await provided(request, thing, fallback(None))


async def required(request: Request) -> str:
    return await provided(request, required, unbound("no service bound: mount it through its service"))


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/thing")
    async def get_thing(value: str | None = Depends(thing)) -> dict[str, Any]:
        return {"value": value}

    @app.get("/required")
    async def get_required(value: str = Depends(required)) -> dict[str, Any]:
        return {"value": value}

    return app


def _get(app: FastAPI, path: str, **headers: str) -> httpx.Response:
    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(ask())


def test_nothing_bound_answers_the_default_or_refuses_naming_how_to_bind() -> None:
    app = _app()
    assert _get(app, "/thing").json() == {"value": None}
    with pytest.raises(RuntimeError, match="no service bound: mount it through its service"):
        _get(app, "/required")  # a route of a service that was never mounted: a 500 naming the fix


def test_a_bound_provider_answers_with_or_without_the_request_sync_or_async() -> None:
    app = _app()

    async def from_request(request: Request) -> str:
        return request.headers.get("x-who", "nobody")

    table = bind(app.state, {thing: lambda: "plain"})
    bind(app.state, {required: from_request})  # a second service's providers, beside the first's
    assert isinstance(table, Providers) and set(table.bound) == {thing, required}
    assert _get(app, "/thing").json() == {"value": "plain"}
    assert _get(app, "/required", **{"x-who": "ops"}).json() == {"value": "ops"}
    assert app.dependency_overrides == {}


def test_a_test_override_still_replaces_the_placeholder() -> None:
    app = _app()
    bind(app.state, {thing: lambda: "bound"})
    app.dependency_overrides[thing] = lambda: "overridden"
    assert _get(app, "/thing").json() == {"value": "overridden"}


def test_a_provider_taking_anything_but_the_request_is_refused_at_binding() -> None:
    app = _app()
    with pytest.raises(TypeError, match=r"thing takes \(store\)"):
        bind(app.state, {thing: lambda store: store})
    with pytest.raises(TypeError, match=r"takes \(request, extra\)"):
        bind(app.state, {thing: lambda request, extra: extra})
