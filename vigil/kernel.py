"""The kernel every feature builds on: how `vigil up` runs a feature, as a child or a service.

- `ChildSpec` and `Feature`: a feature package with a subcommand and a child process of `vigil up`
  (the workload, the agent);
- `Service` and `ServiceContext`: a feature that runs inside `vigil up`'s process (the collector;
  alerting and the dashboard next), because the embedded store opens in one process only;
- `RunPlan`: the one typed, immutable plan `vigil up` builds from its flags and settings and hands
  to every child and service, so no feature reads another's flags.

Feature packages import this module and the shared ones (settings, store, names, logs, errors),
never the composition root (`vigil/cli.py`, `vigil/app.py`, `vigil/supervisor.py`). It imports
nothing heavy at run time: the agent imports it and stays lean.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from fastapi import APIRouter
    from prometheus_client import CollectorRegistry

    from vigil.settings import Settings
    from vigil.store import Store

Health = tuple[bool, dict[str, Any]]
"""`(ok, details)`: what a service or a child reports to `/healthz`; details must be JSON-ready."""

# Resource attributes a label may not set: the agent sets them itself (host.name has --hostname).
RESERVED_LABELS = frozenset({"vigil.simulated", "service.name", "service.version", "host.name"})
_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")


def parse_label(item: str, flag: str | None = "--label") -> tuple[str, str]:
    """`K=V` → `(K, V)`; a ValueError says what a label looks like (naming `flag` where one is given)."""
    where = f"{flag} " if flag else ""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"{where}{item!r}: expected KEY=VALUE, e.g. {where}team=ml-platform")
    if not _LABEL_KEY.match(key):
        raise ValueError(f"{where}{item!r}: a key is letters, digits and . _ - / (starting with a letter or _)")
    if key == "host.name":
        raise ValueError(f"{where}{key}: use --hostname NAME (VIGIL_AGENT_HOSTNAME) to set it")
    if key in RESERVED_LABELS:
        raise ValueError(f"{where}{key}: reserved; the agent sets it")
    return key, value


@dataclass(frozen=True)
class WorkloadPlan:
    """The reference workload `vigil up` runs: where it listens and the token of its `/control` API."""

    port: int
    url: str
    control_token: str = field(repr=False)  # a secret: kept out of logs and reprs
    demo_traffic: bool = True

    @property
    def health_url(self) -> str:
        return f"{self.url}/health"

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"


@dataclass(frozen=True)
class AgentPlan:
    """The local GPU agent: its control endpoint (`/healthz`, `/probe`, `/faults`) on a fixed port.

    The port is fixed for the whole run (chosen free at start unless given), so the URL stays valid
    across restarts of the agent; the agent also writes it to `control_file`, for tools that read files.
    """

    control_port: int
    control_url: str
    control_file: Path

    @property
    def health_url(self) -> str:
        return f"{self.control_url}/healthz"


@dataclass(frozen=True)
class RunPlan:
    """What one `vigil up` runs and where: built once, then handed to children and services."""

    host: str  # the address `vigil up` listens on
    port: int  # its port (collector, API, /healthz)
    url: str  # its base URL as children on this machine reach it
    data: Path  # the data directory, absolute
    workload: WorkloadPlan | None = None  # None: not run (--no-workload)
    agent: AgentPlan | None = None  # None: not run (--no-agent)
    scrape_targets: tuple[str, ...] = ()  # engine /metrics URLs the local agent scrapes
    labels: tuple[tuple[str, str], ...] = ()  # resource attributes of the local agent's series

    @property
    def ports(self) -> dict[str, int]:
        ports = {"vigil": self.port}
        if self.workload:
            ports["workload"] = self.workload.port
        if self.agent:
            ports["agent_control"] = self.agent.control_port
        return ports


@dataclass(frozen=True)
class ChildSpec:
    """How the supervisor runs one child process and how it tells whether the child is healthy."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None  # probed with GET; 200 means healthy. None: alive means healthy
    start_grace_s: float = 120.0  # a child may fail probes this long after a start before it counts as unhealthy


class Feature(Protocol):
    """A feature package's command line (`<package>/cli.py` of the workload, the agent, ...).

    `NAME` is its subcommand and the name of its child process under `vigil up`; `register` adds the
    subcommand; `child` returns how `vigil up` runs it, from the run plan and the settings alone.
    """

    NAME: str

    def register(self, sub: argparse._SubParsersAction) -> None: ...

    def child(self, plan: RunPlan, settings: Settings) -> ChildSpec: ...


@dataclass(frozen=True)
class ServiceContext:
    """Everything a service is built from; nothing else is handed in."""

    settings: Settings
    store: Store  # open and migrated
    registry: CollectorRegistry  # `vigil up`'s own /metrics
    plan: RunPlan
    clock: Callable[[], int] = time.time_ns  # wall time in nanoseconds; tests pass a fake


class Service(Protocol):
    """A feature that runs inside `vigil up`'s process.

    `create_app` builds each registered service from one `ServiceContext`, mounts its `routers`,
    binds its `providers` (`vigil.providers`: a placeholder dependency its routers declare → the
    function giving this service's object, so routers need no app-wide globals),
    calls `start()` before the first request and `close(timeout_s)` after the last, in reverse order.
    `health()` must answer from memory at once: `/healthz` calls it from a probe thread every second.
    """

    name: str
    routers: Sequence[APIRouter]
    providers: Mapping[Callable[..., Any], Callable[..., Any]]

    def start(self) -> None: ...

    def close(self, timeout_s: float) -> None: ...

    def health(self) -> Health: ...


ServiceFactory = Callable[[ServiceContext], Service]
"""A registered service: usually its class."""
