"""The agent's settings: each one declared once, as a flag (`--interval`) and a variable (`VIGIL_AGENT_INTERVAL`).

`vigil agent --help` and the flags themselves are generated from this class (`vigil.flags`); a
flag overrides its variable, which overrides the default. List settings are repeatable flags, or
one variable with the items separated by commas (`VIGIL_AGENT_SCRAPE=http://a/metrics,http://b/metrics`,
`VIGIL_AGENT_LABELS=team=ml-platform,k8s.cluster.name=dev`) or, for faults, by semicolons.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gpu_agent.attribution import DEFAULT_POD_RESOURCES_SOCKET
from gpu_agent.model import Fault
from vigil.flags import Flag
from vigil.kernel import parse_label

_URL = re.compile(r"^https?://[^/\s]+")
_COUNT = {"ge": 1, "le": 1_000_000}

COLLECTOR, SAMPLING, ENGINES, SPOOL, CONTROL, ATTRIBUTION = (
    "collector",
    "sampling",
    "engines",
    "spool",
    "faults and control",
    "attribution",
)


def _items(value: object, separator: str = ",") -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(separator) if item.strip()]
    return value


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_AGENT_", extra="ignore")

    # -- collector
    collector: Annotated[str, Flag("URL", COLLECTOR)] = Field(
        "", description="Collector base URL, e.g. http://127.0.0.1:8080 (the agent POSTs to /v1/metrics)."
    )
    token: Annotated[str, Flag("T", COLLECTOR)] = Field(
        "", description="Bearer token for the collector; prefer the variable, since ps shows flags."
    )
    ca_file: Annotated[str | None, Flag("PATH", COLLECTOR)] = Field(
        None, description="CA bundle for an https collector with a private CA."
    )
    export_timeout: Annotated[float, Flag("S", COLLECTOR)] = Field(
        10.0, ge=0.1, description="Timeout of one export request, in seconds."
    )
    # -- sampling
    simulate: Annotated[int | None, Flag("N", SAMPLING)] = Field(
        None, ge=1, le=1024, description="Simulate N GPUs instead of reading NVML (labelled vigil.simulated=true)."
    )
    simulate_if_no_gpu: Annotated[int | None, Flag("N", SAMPLING)] = Field(
        None, **_COUNT, description="Read NVML, but simulate N GPUs where NVML does not initialise."
    )
    interval: Annotated[float, Flag("S", SAMPLING)] = Field(1.0, ge=0.05, description="Seconds between cycles.")
    slow_interval: Annotated[float, Flag("S", SAMPLING)] = Field(
        10.0, ge=0.05, description="Seconds between reads of process lists, ECC, row remaps and PCIe throughput."
    )
    probe_interval: Annotated[float, Flag("S", SAMPLING)] = Field(
        300.0, ge=0, description="Seconds between looks for new or recovered GPUs; 0 is never."
    )
    cycles: Annotated[int | None, Flag("K", SAMPLING)] = Field(
        None, **_COUNT, description="Sample K cycles, drain the spool and exit (0 when all was delivered)."
    )
    hostname: Annotated[str, Flag("NAME", SAMPLING)] = Field(
        default_factory=socket.gethostname, description="host.name of every series (default: this host's name)."
    )
    labels: Annotated[dict[str, str], NoDecode, Flag("K=V", SAMPLING, name="label")] = Field(
        default_factory=dict,
        description="Resource attribute on every series, e.g. team=ml-platform or k8s.cluster.name=dev.",
    )
    # -- engines
    scrape: Annotated[list[str], NoDecode, Flag("URL", ENGINES)] = Field(
        default_factory=list, description="An engine's Prometheus /metrics URL."
    )
    scrape_interval: Annotated[float, Flag("S", ENGINES)] = Field(5.0, ge=0.1, description="Seconds between scrapes.")
    scrape_timeout: Annotated[float, Flag("S", ENGINES)] = Field(3.0, ge=0.1, description="Timeout of one scrape.")
    # -- spool
    spool: Annotated[Path | None, Flag("DIR", SPOOL)] = Field(
        None, description="Keep undelivered batches here across restarts (default: in memory)."
    )
    spool_max_mb: Annotated[float, Flag("MB", SPOOL)] = Field(
        256.0, ge=0.01, description="Spool size bound; the oldest batches are dropped first."
    )
    drain_timeout: Annotated[float, Flag("S", SPOOL)] = Field(
        30.0, ge=0, description="At exit, seconds to try to deliver what is left."
    )
    # -- faults and control
    faults: Annotated[list[Fault], NoDecode, Flag("SPEC", CONTROL, name="fault")] = Field(
        default_factory=list,
        description="Inject a simulated fault: xid:gpu=1,code=48 | thermal:gpu=0,after=30 | "
        "ecc:gpu=2,ecc=uncorrected,count=3 | fall-off-bus:gpu=3.",
    )
    control: Annotated[tuple[str, int] | None, Flag("HOST:PORT", CONTROL)] = Field(
        None, description="Serve /healthz, /probe and /faults here (port 0: any free port)."
    )
    control_file: Annotated[Path | None, Flag("PATH", CONTROL)] = Field(
        None, description="Write the control endpoint's URL to this file."
    )
    # -- attribution
    proc_root: Annotated[Path, Flag("DIR", ATTRIBUTION)] = Field(Path("/proc"), description="The host's /proc.")
    pod_resources_socket: Annotated[Path, Flag("PATH", ATTRIBUTION)] = Field(
        DEFAULT_POD_RESOURCES_SOCKET, description="The kubelet's pod-resources socket, used when present."
    )
    seed: Annotated[int | None, Flag(hidden=True)] = Field(
        None, description="Seed of the simulation, for reproducible tests."
    )

    @field_validator("collector")
    @classmethod
    def _collector_url(cls, value: str) -> str:
        if value and not _URL.match(value):
            raise ValueError("expected an http:// or https:// URL, e.g. http://127.0.0.1:8080")
        return value

    @field_validator("scrape", mode="before")
    @classmethod
    def _scrape_items(cls, value: object) -> object:
        return _items(value)

    @field_validator("scrape")
    @classmethod
    def _scrape_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not _URL.match(url):
                raise ValueError(f"{url!r}: expected an http:// or https:// URL of a /metrics page")
        return urls

    @field_validator("labels", mode="before")
    @classmethod
    def _label_pairs(cls, value: object) -> object:
        if isinstance(value, dict):
            return value
        labels: dict[str, str] = {}
        for item in _items(value):  # type: ignore[union-attr]
            key, text = parse_label(str(item), flag=None)  # the error names the flag or variable
            labels[key] = text
        return labels

    @field_validator("faults", mode="before")
    @classmethod
    def _parse_faults(cls, value: object) -> object:
        faults = []
        for item in _items(value, ";"):  # type: ignore[union-attr]
            if isinstance(item, Fault):
                faults.append(item)
                continue
            try:
                faults.append(Fault.parse(str(item)))
            except ValueError as exc:
                raise ValueError(f"{item!r}: {exc}") from None
        return faults

    @field_validator("control", mode="before")
    @classmethod
    def _host_port(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9402")
        return (host.strip("[]") or "127.0.0.1", int(port))

    @model_validator(mode="after")
    def _faults_need_simulated_gpus(self) -> AgentSettings:
        for fault in self.faults:
            if not (self.simulate or self.simulate_if_no_gpu):
                raise ValueError("--fault works with simulated GPUs only: add --simulate N")
            if self.simulate and fault.gpu >= self.simulate:
                raise ValueError(
                    f"--fault gpu={fault.gpu}, but --simulate {self.simulate} has GPUs 0..{self.simulate - 1}"
                )
        return self

    @property
    def spool_max_bytes(self) -> int:
        return int(self.spool_max_mb * 1024 * 1024)
