"""The collector as a service of `vigil up`: its router, its start and drain, its health."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter

from collector import router as ingest
from collector.service import Collector
from vigil.kernel import Health, ServiceContext


class CollectorService:
    """`POST /v1/metrics` backed by one `Collector`, which its router receives as a dependency."""

    name = "collector"

    def __init__(self, ctx: ServiceContext) -> None:
        self.collector = Collector(ctx.settings, ctx.store, ctx.registry, clock=ctx.clock)
        self.routers: Sequence[APIRouter] = (ingest.router,)
        self.providers: Mapping[Callable[..., Any], Callable[..., Any]] = {ingest.get_collector: self._get}

    def _get(self) -> Collector:
        return self.collector

    def start(self) -> None:
        self.collector.start()

    def close(self, timeout_s: float) -> None:
        self.collector.close(timeout_s)

    def health(self) -> Health:
        return self.collector.health()
