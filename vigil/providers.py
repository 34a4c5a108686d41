"""How a route reaches the service that runs it: a placeholder dependency, answered by what the service bound.

A feature's routes declare a placeholder (`Depends(get_collector)`); its service lists what answers it
in `Service.providers`; `create_app` binds those here once, on the app's state, and the placeholder asks:

    async def get_collector(request: Request) -> Collector:
        return await provided(request, get_collector, unbound("no Collector bound: ..."))

Why not FastAPI's `dependency_overrides`, which the services used before: with any override set,
FastAPI builds each overridden dependency anew on every request, reading its signature each time
(measured: `GET /api/v1/rules` 1.3 ms a request against 0.7 once that work was done once). Here the
signature is read once, at binding. An override a test sets still replaces a placeholder, as FastAPI
has it.

A provider takes nothing, or the request (one parameter named `request`); it may be async. It runs on
the event loop, so it must answer at once (every provider returns an object the service holds, or reads
the request's cookie or token).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn, TypeVar

from fastapi import Request

T = TypeVar("T")
Provider = Callable[..., Any]
STATE_KEY = "providers"  # the attribute of `app.state` holding the app's `Providers`


class Providers:
    """The providers bound in one app, by placeholder; `bound` keeps each as its service gave it."""

    def __init__(self) -> None:
        self.bound: dict[Callable[..., Any], Provider] = {}
        self._calls: dict[Callable[..., Any], Callable[[Request], Awaitable[Any]]] = {}

    def bind(self, providers: Mapping[Callable[..., Any], Provider]) -> None:
        for placeholder, provider in providers.items():
            self.bound[placeholder] = provider
            self._calls[placeholder] = _caller(placeholder, provider)

    async def answer(self, request: Request, placeholder: Callable[..., T], missing: Callable[[], T]) -> T:
        call = self._calls.get(placeholder)
        return missing() if call is None else await call(request)


def _caller(placeholder: Callable[..., Any], provider: Provider) -> Callable[[Request], Awaitable[Any]]:
    params = list(inspect.signature(provider).parameters.values())
    if len(params) > 1 or (params and params[0].name != "request"):
        names = ", ".join(p.name for p in params)
        raise TypeError(
            f"the provider for {placeholder.__qualname__} takes ({names}): a provider takes nothing or `request`"
        )
    wants_request = bool(params)

    async def call(request: Request) -> Any:
        value = provider(request) if wants_request else provider()
        return await value if inspect.isawaitable(value) else value

    return call


def bind(state: Any, providers: Mapping[Callable[..., Any], Provider]) -> Providers:
    """Bind `providers` on an app's `state` (`app.state`), beside any bound before; answers the table."""
    table = getattr(state, STATE_KEY, None)
    if table is None:
        table = Providers()
        setattr(state, STATE_KEY, table)
    table.bind(providers)
    return table


async def provided(request: Request, placeholder: Callable[..., T], missing: Callable[[], T]) -> T:
    """What the app bound for `placeholder`, asked with this request; `missing()` where nothing is."""
    table = getattr(request.app.state, STATE_KEY, None)
    return missing() if table is None else await table.answer(request, placeholder, missing)


def unbound(message: str) -> Callable[[], NoReturn]:
    """A placeholder's answer when no service bound it and it has no default: a RuntimeError naming how."""

    def refuse() -> NoReturn:
        raise RuntimeError(message)

    return refuse


def fallback(value: T) -> Callable[[], T]:
    """A placeholder's default answer when no service bound it (e.g. None: "that service is not running")."""
    return lambda: value
