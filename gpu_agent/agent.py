"""The agent: a sampling loop on the main thread, export, scrapes, XID events and control beside it.

Threads and what joins them:
- main: the sampling loop. Each cycle reads the backend (cheap fields always; processes, ECC and
  other slow fields every `slow_interval_s`; a re-probe every `probe_interval_s`), takes the
  finished engine scrapes, makes the cycle's one collection and hands it to the exporter, which
  never blocks it. K cycles (`--cycles K`) are K collections: K points per series.
- otlp-export: posts batches, spools what fails and replays the spool (`gpu_agent.export`);
- one scrape thread per `--scrape` URL (`gpu_agent.scrape`);
- xid-events: NVML's event set (`gpu_agent.xid`);
- control: the local HTTP endpoint, when `--control` is given (`gpu_agent.control`).
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol

import vigil
from gpu_agent.attribution import Attribution
from gpu_agent.control import ControlServer
from gpu_agent.export import Exporter, Poster
from gpu_agent.model import Load, ProbeReport, Snapshot
from gpu_agent.scrape import ScrapeLoop, ScrapeResult, Target
from gpu_agent.settings import AgentSettings
from gpu_agent.spool import DiskSpool, MemorySpool, Spool
from gpu_agent.telemetry import Telemetry
from vigil import names as n
from vigil.logs import event

log = logging.getLogger(__name__)

MAX_BATCH_AGE_S = 13 * 86400.0  # the collector refuses points older than 14 days


class Backend(Protocol):
    name: str
    simulated: bool

    def start(self) -> ProbeReport: ...

    def report(self) -> ProbeReport: ...

    def sample(self, out: Snapshot, slow: bool) -> None: ...

    def reprobe(self) -> None: ...

    def close(self) -> None: ...

    def lost_gpus(self) -> list[str]: ...


def start_backend(config: AgentSettings) -> tuple[Backend, ProbeReport]:
    """The simulated backend with `--simulate`, else NVML, falling back to simulated GPUs where NVML
    does not answer and `--simulate-if-no-gpu N` asks for it. Raises BackendUnavailable otherwise."""
    from gpu_agent.model import BackendUnavailable
    from gpu_agent.simulated import SimulatedBackend

    if config.simulate:
        backend: Backend = SimulatedBackend(config.simulate, config.hostname, config.faults, seed=config.seed)
        return backend, backend.start()
    from gpu_agent.nvml import NvmlBackend

    nvml = NvmlBackend(Attribution(config.proc_root, config.pod_resources_socket))
    try:
        return nvml, nvml.start()
    except BackendUnavailable as exc:
        if not config.simulate_if_no_gpu:
            raise
        event(
            log,
            "nvml_unavailable",
            level=logging.WARNING,
            error=str(exc),
            fallback=f"{config.simulate_if_no_gpu} simulated GPUs, labelled vigil.simulated=true",
        )
    backend = SimulatedBackend(config.simulate_if_no_gpu, config.hostname, config.faults, seed=config.seed)
    return backend, backend.start()


def resource_attributes(config: AgentSettings, report: ProbeReport, simulated: bool) -> dict[str, str]:
    return {
        **config.labels,
        "service.name": "vigil-gpu-agent",
        "service.version": vigil.__version__,
        n.HOST_NAME: config.hostname,
        **report.host_attributes,
        n.SIMULATED: "true" if simulated else "false",
    }


class SamplingLoop:
    def __init__(
        self,
        backend: Backend,
        telemetry: Telemetry,
        exporter: Exporter,
        scrapers: list[ScrapeLoop],
        interval_s: float,
        slow_interval_s: float,
        probe_interval_s: float,
    ) -> None:
        self.backend = backend
        self.telemetry = telemetry
        self.exporter = exporter
        self.scrapers = scrapers
        self.interval_s = interval_s
        self.slow_every = max(1, round(slow_interval_s / interval_s))
        self.probe_every = max(1, round(probe_interval_s / interval_s)) if probe_interval_s > 0 else 0
        self.cycles = 0
        self.behind = 0
        self.last_cycle_at = time.monotonic()
        self.sample_us: deque[float] = deque(maxlen=4096)  # the backend's share of each cycle
        self.cycle_us: deque[float] = deque(maxlen=4096)  # the whole cycle: sample, scrapes in, collect
        self._loads: dict[str, Load] = {}
        self._sample_error = ""

    def run(self, cycles: int | None, stop: threading.Event) -> int:
        next_at = time.monotonic()
        while not stop.is_set() and (cycles is None or self.cycles < cycles):
            self.cycle()
            if cycles is not None and self.cycles >= cycles:
                break
            next_at += self.interval_s
            now = time.monotonic()
            if next_at < now:  # a cycle overran: start the next now instead of bursting to catch up
                self.behind += 1
                if self.behind == 1:
                    event(
                        log,
                        "sampling_behind",
                        level=logging.WARNING,
                        interval_s=self.interval_s,
                        cycle_ms=round(self.cycle_us[-1] / 1000, 1),
                    )
                next_at = now
            stop.wait(next_at - now)
        return self.cycles

    def cycle(self) -> None:
        started = time.perf_counter()
        self.cycles += 1
        index = self.cycles - 1
        if self.probe_every and index and index % self.probe_every == 0:
            self.backend.reprobe()
        results = [r for s in self.scrapers for r in s.take()]
        self._observe_load(results)
        snapshot = Snapshot()
        try:
            self.backend.sample(snapshot, slow=index % self.slow_every == 0)
        except Exception as exc:  # a bug or a driver surprise: keep what was read, keep sampling, say it once
            if str(exc) != self._sample_error:
                self._sample_error = str(exc)
                log.exception("sample_failed")
        else:
            self._sample_error = ""
        sampled = time.perf_counter()
        telemetry = self.telemetry
        if results:
            telemetry.set_gauge(n.AGENT_SCRAPE_UP, [(1 if r.ok else 0, {n.LLM_ENDPOINT: r.endpoint}) for r in results])
            telemetry.set_gauge(
                n.AGENT_SCRAPE_DURATION, [(r.duration_s, {n.LLM_ENDPOINT: r.endpoint}) for r in results]
            )
        else:
            telemetry.set_gauge(n.AGENT_SCRAPE_UP, [])
            telemetry.set_gauge(n.AGENT_SCRAPE_DURATION, [])
        if self.cycle_us:
            telemetry.set_gauge(n.AGENT_CYCLE_DURATION, [(self.cycle_us[-1] / 1e6, {})])
        spool = self.exporter.spool
        telemetry.set_gauge(n.AGENT_SPOOL_BATCHES, [(len(spool), {})])
        telemetry.set_gauge(n.AGENT_SPOOL_BYTES, [(spool.bytes, {})])
        data = telemetry.collect(snapshot, [m for r in results for m in r.metrics])
        self.exporter.submit(data)
        done = time.perf_counter()
        self.sample_us.append((sampled - started) * 1e6)
        self.cycle_us.append((done - started) * 1e6)
        self.last_cycle_at = time.monotonic()

    def _observe_load(self, results: list[ScrapeResult]) -> None:
        observe = getattr(self.backend, "observe_load", None)
        if observe is None or not self.scrapers:
            return
        for r in results:
            self._loads[r.endpoint] = r.load if r.ok and r.load is not None else Load(0.0, 0.0, 0.0)
        if not self._loads:
            return  # nothing scraped yet
        loads = list(self._loads.values())
        observe(
            Load(
                running=sum(x.running for x in loads),
                waiting=sum(x.waiting for x in loads),
                kv_cache_usage=max(x.kv_cache_usage for x in loads),
            )
        )

    def costs(self) -> dict[str, float]:
        def stats(values: deque[float], prefix: str) -> dict[str, float]:
            if not values:
                return {}
            ordered = sorted(values)
            return {
                f"{prefix}_p50_us": round(statistics.median(ordered), 1),
                f"{prefix}_p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
                f"{prefix}_max_us": round(ordered[-1], 1),
            }

        return {**stats(self.sample_us, "sample"), **stats(self.cycle_us, "cycle")}


def open_spool(config: AgentSettings) -> Spool:
    if config.spool is None:
        return MemorySpool(config.spool_max_bytes)
    return DiskSpool(config.spool, config.spool_max_bytes)


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class AgentError(Exception):
    """The agent could not do what it was asked; the message says what and what to do."""


def run(config: AgentSettings, stop: threading.Event) -> dict[str, Any]:
    """Run until `stop` is set or `config.cycles` are done, then drain. Returns the summary;
    raises AgentError when batches could not be delivered."""
    spool = open_spool(config)
    try:
        backend, report = start_backend(config)
    except BaseException:
        spool.close()
        raise
    telemetry = Telemetry(resource_attributes(config, report, backend.simulated))
    exporter = Exporter(
        Poster(config.collector, config.token or None, config.export_timeout, config.ca_file),
        spool,
        telemetry,
        max_age_s=MAX_BATCH_AGE_S,
    )
    scrapers = [ScrapeLoop(Target(url, config.scrape_timeout), config.scrape_interval) for url in config.scrape]
    loop = SamplingLoop(
        backend,
        telemetry,
        exporter,
        scrapers,
        config.interval,
        config.slow_interval,
        config.probe_interval,
    )
    control: ControlServer | None = None
    drained = False
    try:
        control = _control(config, loop, backend, exporter)
        exporter.start()
        for scraper in scrapers:
            scraper.start()
        unsupported = sorted({p.field for d in report.devices for p in d.unsupported})
        event(
            log,
            "agent_started",
            backend=report.backend,
            simulated=backend.simulated,
            gpus=len(report.devices),
            unsupported=",".join(unsupported) or "none",
            collector=config.collector,
            spool=config.spool or "memory",
            spooled_batches=len(spool),
            scrape=",".join(config.scrape) or "none",
            interval_s=config.interval,
            control=control.url if control else "off",
        )
        loop.run(config.cycles, stop)
        for scraper in scrapers:  # no new engine data while draining
            scraper.stop()
        drained = exporter.drain(config.drain_timeout)
    finally:
        for scraper in scrapers:
            scraper.stop()
        exporter.close()
        if control is not None:
            control.stop()
        backend.close()
        telemetry.shutdown()
        left_batches, left_bytes = len(spool), spool.bytes
        spool.close()
    stats = exporter.stats
    summary: dict[str, Any] = {
        "cycles": loop.cycles,
        "batches_sent": stats.batches_sent,
        "points_sent": stats.points_sent,
        "batches_replayed": stats.batches_replayed,
        "export_failures": stats.failures,
        "points_rejected": stats.points_rejected,
        "batches_dropped": sum(stats.dropped.values()),
        "left_in_spool": left_batches,
        **loop.costs(),
    }
    event(log, "agent_stopped", **summary, **{f"dropped_{k}": v for k, v in stats.dropped.items()})
    if not drained:
        where = (
            f"they stay in the spool {config.spool} and are replayed at the next start"
            if spool.durable
            else "they are lost: give --spool DIR to keep them across restarts"
        )
        raise AgentError(
            f"could not deliver {left_batches} batches ({left_bytes} bytes) to {config.collector} within "
            f"--drain-timeout {config.drain_timeout:g} s (last error: {stats.last_error or 'none'}); {where}"
        )
    if stats.dropped:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(stats.dropped.items()))
        raise AgentError(
            f"{sum(stats.dropped.values())} batches ({stats.dropped_points} points) were dropped: {reasons}"
        )
    return summary


def _control(config: AgentSettings, loop: SamplingLoop, backend: Backend, exporter: Exporter) -> ControlServer | None:
    if config.control is None:
        return None

    def health() -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - loop.last_cycle_at
        ok = age <= max(3 * config.interval, 5.0)
        return ok, {
            "status": "ok" if ok else "stalled",
            "backend": backend.name,
            "simulated": backend.simulated,
            "cycles": loop.cycles,
            "last_cycle_age_s": round(age, 3),
            "lost_gpus": backend.lost_gpus(),
            "spooled_batches": len(exporter.spool),
            "batches_sent": exporter.stats.batches_sent,
            "last_export_error": exporter.stats.last_error,
        }

    try:
        server = ControlServer(config.control, health, lambda: backend.report().as_dict(), backend)
    except OSError as exc:
        host, port = config.control
        raise AgentError(f"--control {host}:{port}: cannot listen: {exc}") from None
    server.start()
    if config.control_file is not None:
        write_atomically(config.control_file, server.url + "\n")
    return server
