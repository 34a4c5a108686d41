"""`vigil agent`: the GPU agent's command line, and how `vigil up` runs it as a child process.

`vigil agent ...` re-executes itself as `python -m gpu_agent ...` before doing anything: `vigil`'s
own command line imports the store, pydantic and friends (about 75 MB resident), which an agent on
every GPU node has no use for. The child `vigil up` starts runs `python -m gpu_agent` directly.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vigil.supervisor import ChildSpec

if TYPE_CHECKING:
    from gpu_agent.agent import AgentConfig
    from gpu_agent.model import ProbeReport
    from vigil.settings import Settings

NAME = "agent"
TOKEN_ENV = "VIGIL_AGENT_TOKEN"
UP_SIMULATED_GPUS = 4  # what `vigil up` simulates where NVML does not answer
_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")
_RESERVED = {"vigil.simulated", "service.name", "service.version"}

DESCRIPTION = """\
Sample GPUs through NVML (or simulate them with --simulate N) and engine /metrics (--scrape), and
export OTLP/HTTP to a collector. Failed exports wait in the spool and are replayed in order, each
batch with its own idempotency key, so nothing is lost or stored twice."""


class UsageError(Exception):
    """A flag's value is wrong; the message names the flag."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("collector")
    g.add_argument(
        "--collector", metavar="URL", help="collector base URL, e.g. http://127.0.0.1:8080 (POSTs to /v1/metrics)"
    )
    g.add_argument("--token", metavar="T", help=f"bearer token for the collector (default: ${TOKEN_ENV})")
    g.add_argument("--ca-file", metavar="PATH", help="CA bundle for an https collector with a private CA")
    g.add_argument(
        "--export-timeout", type=float, default=10.0, metavar="S", help="timeout of one export request (default 10)"
    )
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--simulate",
        type=int,
        metavar="N",
        help="simulate N GPUs instead of reading NVML (labelled vigil.simulated=true)",
    )
    g.add_argument(
        "--simulate-if-no-gpu",
        type=int,
        metavar="N",
        help="read NVML, but simulate N GPUs where NVML does not initialise (what `vigil up` does)",
    )
    g.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between cycles (default 1)")
    g.add_argument(
        "--slow-interval",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds between reads of process lists, ECC, row remaps, PCIe throughput (default 10)",
    )
    g.add_argument(
        "--probe-interval",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds between looks for new or recovered GPUs (default 300; 0 = never)",
    )
    g.add_argument(
        "--cycles", type=int, metavar="K", help="sample K cycles, drain the spool, exit (0 when all delivered)"
    )
    g.add_argument("--hostname", metavar="NAME", help="host.name of every series (default: this host's name)")
    g.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="K=V",
        help="resource attribute on every series (repeatable): team, cluster, ...",
    )
    g = p.add_argument_group("engines")
    g.add_argument(
        "--scrape", action="append", default=[], metavar="URL", help="an engine's Prometheus /metrics URL (repeatable)"
    )
    g.add_argument(
        "--scrape-interval", type=float, default=5.0, metavar="S", help="seconds between scrapes (default 5)"
    )
    g.add_argument("--scrape-timeout", type=float, default=3.0, metavar="S", help="timeout of one scrape (default 3)")
    g = p.add_argument_group("spool")
    g.add_argument(
        "--spool", type=Path, metavar="DIR", help="keep undelivered batches here across restarts (default: in memory)"
    )
    g.add_argument(
        "--spool-max-mb",
        type=float,
        default=256.0,
        metavar="MB",
        help="spool size bound; oldest dropped first (default 256)",
    )
    g.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="at exit, how long to try to deliver what is left (default 30)",
    )
    g = p.add_argument_group("probe, faults, control")
    g.add_argument("--probe", action="store_true", help="print which fields each GPU supports, then exit")
    g.add_argument("--json", action="store_true", help="with --probe: print JSON")
    g.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a simulated fault (repeatable): xid:gpu=1,code=48 | thermal:gpu=0,after=30 | "
        "ecc:gpu=2,ecc=uncorrected,count=3 | fall-off-bus:gpu=3",
    )
    g.add_argument(
        "--control", metavar="HOST:PORT", help="serve /healthz, /probe and /faults here (port 0: any free port)"
    )
    g.add_argument("--control-file", type=Path, metavar="PATH", help="write the control endpoint's URL to this file")
    g = p.add_argument_group("attribution")
    g.add_argument(
        "--proc-root", type=Path, default=Path("/proc"), metavar="DIR", help="the host's /proc (default /proc)"
    )
    g.add_argument(
        "--pod-resources-socket",
        type=Path,
        metavar="PATH",
        help="kubelet pod-resources socket (default /var/lib/kubelet/pod-resources/kubelet.sock, used when present)",
    )
    g.add_argument("--seed", type=int, help=argparse.SUPPRESS)  # reproducible simulations in tests


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="run the GPU agent: NVML or simulated GPUs plus engine /metrics, exported over OTLP",
        description=DESCRIPTION,
    )
    add_arguments(p)
    p.set_defaults(func=cmd_agent)


def child(args: argparse.Namespace, settings: Settings) -> ChildSpec:
    """How `vigil up` runs the agent: real GPUs where NVML answers, else simulated ones, scraping the workload."""
    data = Path(settings.data).resolve() / "agent"
    host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    argv = [
        sys.executable,
        "-m",
        "gpu_agent",
        "--collector",
        f"http://{host}:{settings.port}",
        "--simulate-if-no-gpu",
        str(UP_SIMULATED_GPUS),
        "--spool",
        str(data / "spool"),
        "--drain-timeout",
        "3",  # the supervisor allows 5 s at stop; what is left stays in the spool
        "--control",
        "127.0.0.1:0",
        "--control-file",
        str(data / "control.url"),
    ]
    if not getattr(args, "no_workload", False):
        argv += ["--scrape", f"http://127.0.0.1:{args.workload_port}/metrics", "--scrape-interval", "1"]
    env = {TOKEN_ENV: settings.ingest_tokens[0]} if settings.ingest_tokens else {}  # never on argv: ps shows argv
    return ChildSpec(NAME, argv, env)


def cmd_agent(args: argparse.Namespace) -> int:
    if sys.argv[1:2] == [NAME]:  # started as `vigil agent ...`: shed vigil's imports (see the module doc)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "gpu_agent", *sys.argv[2:]])
    return run_args(args)


def main(argv: list[str] | None = None) -> int:
    from vigil import logs

    parser = argparse.ArgumentParser(prog="vigil agent", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logs.setup()
    return run_args(args)


def run_args(args: argparse.Namespace) -> int:
    from gpu_agent.agent import AgentError, run
    from gpu_agent.model import BackendUnavailable
    from gpu_agent.spool import SpoolError

    try:
        config = config_from(args)
        if args.probe:
            return probe(config, args.json)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        run(config, stop)
        return 0
    except (UsageError, AgentError, BackendUnavailable, SpoolError) as exc:
        print(f"vigil agent: error: {exc}", file=sys.stderr)
        return 1


def config_from(args: argparse.Namespace) -> AgentConfig:
    """Flags → AgentConfig, refusing bad values with the flag's name."""
    from gpu_agent.agent import AgentConfig
    from gpu_agent.attribution import DEFAULT_POD_RESOURCES_SOCKET
    from gpu_agent.model import Fault

    def positive(flag: str, value: float | None, minimum: float = 0.0, allow_zero: bool = False) -> None:
        if value is None:
            return
        if value < minimum or (value == 0 and not allow_zero):
            raise UsageError(
                f"{flag} must be {'at least ' + format(minimum, 'g') if minimum else 'positive'}, not {value:g}"
            )

    positive("--interval", args.interval, 0.05)
    positive("--slow-interval", args.slow_interval, 0.05)
    positive("--probe-interval", args.probe_interval, allow_zero=True)
    positive("--scrape-interval", args.scrape_interval, 0.1)
    positive("--scrape-timeout", args.scrape_timeout, 0.1)
    positive("--export-timeout", args.export_timeout, 0.1)
    positive("--drain-timeout", args.drain_timeout, allow_zero=True)
    positive("--spool-max-mb", args.spool_max_mb, 0.01)
    for flag, value in (
        ("--cycles", args.cycles),
        ("--simulate", args.simulate),
        ("--simulate-if-no-gpu", args.simulate_if_no_gpu),
    ):
        if value is not None and not 1 <= value <= 1_000_000:
            raise UsageError(f"{flag} must be a positive whole number, not {value}")
    if args.simulate is not None and args.simulate > 1024:
        raise UsageError("--simulate takes at most 1024 GPUs")
    if not args.probe and not args.collector:
        raise UsageError(
            "--collector URL is required (the URL of `vigil up`, e.g. http://127.0.0.1:8080), or use --probe"
        )
    if args.collector and not re.match(r"^https?://[^/\s]+", args.collector):
        raise UsageError(f"--collector {args.collector!r}: expected an http:// or https:// URL")
    for url in args.scrape:
        if not re.match(r"^https?://[^/\s]+", url):
            raise UsageError(f"--scrape {url!r}: expected an http:// or https:// URL of a /metrics page")
    labels: dict[str, str] = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--label {item!r}: expected KEY=VALUE, e.g. --label team=inference")
        if not _LABEL_KEY.match(key):
            raise UsageError(f"--label {item!r}: a key is letters, digits and . _ - / (starting with a letter or _)")
        if key in _RESERVED:
            raise UsageError(f"--label {key}: reserved; the agent sets it")
        if key == "host.name":
            raise UsageError("--label host.name: use --hostname NAME")
        labels[key] = value
    faults = []
    for spec in args.fault:
        if not (args.simulate or args.simulate_if_no_gpu):
            raise UsageError("--fault works with simulated GPUs only: add --simulate N")
        try:
            fault = Fault.parse(spec)
        except ValueError as exc:
            raise UsageError(f"--fault {spec!r}: {exc}") from None
        if args.simulate and fault.gpu >= args.simulate:
            raise UsageError(
                f"--fault {spec!r}: gpu={fault.gpu} but --simulate {args.simulate} has GPUs 0..{args.simulate - 1}"
            )
        faults.append(fault)
    control = None
    if args.control:
        host, sep, port = args.control.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise UsageError(f"--control {args.control!r}: expected HOST:PORT, e.g. 127.0.0.1:9402")
        control = (host.strip("[]") or "127.0.0.1", int(port))
    socket_path = args.pod_resources_socket or DEFAULT_POD_RESOURCES_SOCKET
    return AgentConfig(
        collector=args.collector or "",
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        simulate=args.simulate,
        simulate_if_no_gpu=args.simulate_if_no_gpu,
        interval_s=args.interval,
        slow_interval_s=args.slow_interval,
        probe_interval_s=args.probe_interval,
        cycles=args.cycles,
        scrape=list(args.scrape),
        scrape_interval_s=args.scrape_interval,
        scrape_timeout_s=args.scrape_timeout,
        spool=args.spool,
        spool_max_bytes=int(args.spool_max_mb * 1024 * 1024),
        drain_timeout_s=args.drain_timeout,
        export_timeout_s=args.export_timeout,
        labels=labels,
        hostname=args.hostname or socket.gethostname(),
        faults=faults,
        control=control,
        control_file=args.control_file,
        proc_root=args.proc_root,
        pod_resources_socket=socket_path,
        ca_file=args.ca_file,
        seed=args.seed,
    )


# ---- --probe -----------------------------------------------------------------------------------------


def probe(config: AgentConfig, as_json: bool) -> int:
    from gpu_agent.agent import start_backend
    from gpu_agent.scrape import Target

    backend, report = start_backend(config)
    try:
        engines = []
        for url in config.scrape:
            target = Target(url, config.scrape_timeout_s)
            result = target.scrape()
            target.close()
            engines.append(
                {
                    "endpoint": url,
                    "ok": result.ok,
                    "engine": result.engine,
                    "error": result.error,
                    "common": dict(sorted((m.name, v) for m, v in result.common.items())),
                }
            )
    finally:
        backend.close()
    if as_json:
        print(json.dumps({**report.as_dict(), "engines": engines}, indent=2))
    else:
        print(format_probe(report, engines))
    return 0


def _device_label(attrs: dict[str, str]) -> str:
    index = attrs.get("gpu.index", "?")
    gi = attrs.get("gpu.mig.gpu_instance_id")
    return f"GPU {index}" if gi is None else f"GPU {index} MIG {gi}"


def format_probe(report: ProbeReport, engines: list[dict[str, Any]] | None = None) -> str:
    """The probe as tables people read: devices, then fields by device."""
    lines = [f"backend: {report.backend}"]
    for key, value in sorted(report.host_attributes.items()):
        lines.append(f"  {key}: {value}")
    lines.append("")
    rows = [("device", "uuid", "model", "pci bus id", "profile")]
    for d in report.devices:
        a = d.attributes
        rows.append(
            (
                _device_label(a),
                a.get("gpu.mig.uuid", a.get("gpu.uuid", "")),
                a.get("gpu.model", ""),
                a.get("gpu.pci_bus_id", ""),
                a.get("gpu.mig.profile", "-"),
            )
        )
    lines.extend(_table(rows))
    lines.append("")
    fields: list[str] = []
    for d in report.devices:
        for f in d.fields:
            if f.field not in fields:
                fields.append(f.field)
    header = ("field", *(_device_label(d.attributes) for d in report.devices))
    table = [header]
    for name in fields:
        row = [name]
        for d in report.devices:
            found = next((f for f in d.fields if f.field == name), None)
            if found is None:
                row.append("-")
            elif found.support == "supported":
                row.append(f"yes {found.cost_us:g} µs" if found.cost_us is not None else "yes")
            else:
                row.append(str(found.support))
        table.append(tuple(row))
    lines.extend(_table(table))
    unsupported = sorted({(f.field, f.detail) for d in report.devices for f in d.unsupported})
    if unsupported:
        lines.append("")
        lines.append("skipped (probed once, never sampled):")
        lines.extend(f"  {name}: {detail}" for name, detail in unsupported)
    for note in report.notes:
        lines.append(f"note: {note}")
    for e in engines or []:
        lines.append("")
        if e["ok"]:
            lines.append(f"engine at {e['endpoint']}: {e['engine'] or 'unknown'}")
            lines.extend(f"  {k} = {v:g}" for k, v in e["common"].items())
        else:
            lines.append(f"engine at {e['endpoint']}: not answering ({e['error']})")
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
