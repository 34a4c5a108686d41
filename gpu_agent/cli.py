"""`vigil agent`: the GPU agent's command line, and how `vigil up` runs it as a child process.

`vigil agent ...` re-executes itself as `python -m gpu_agent ...` before doing anything: `vigil`'s
own command line imports the store, the web server and friends, which an agent on every GPU node
has no use for. The child `vigil up` starts runs `python -m gpu_agent` directly. The flags come from
`AgentSettings` (`gpu_agent/settings.py`), whose pydantic-settings import is the one library the
agent carries for its command line (about 10 MB resident).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from vigil.flags import FlagError, add_flags, settings_from
from vigil.kernel import ChildSpec

if TYPE_CHECKING:
    from gpu_agent.model import ProbeReport
    from gpu_agent.settings import AgentSettings
    from vigil.kernel import RunPlan
    from vigil.settings import Settings

NAME = "agent"
TOKEN_ENV = "VIGIL_AGENT_TOKEN"
UP_SIMULATED_GPUS = 4  # what `vigil up` simulates where NVML does not answer

DESCRIPTION = """\
Sample GPUs through NVML (or simulate them with --simulate N) and engine /metrics (--scrape), and
export OTLP/HTTP to a collector. Failed exports wait in the spool and are replayed in order, each
batch with its own idempotency key, so nothing is lost or stored twice."""


class UsageError(Exception):
    """A flag's value is wrong; the message names the flag."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every `AgentSettings` field as a flag, plus the probe's own flags."""
    from gpu_agent.settings import AgentSettings

    add_flags(p, AgentSettings)
    g = p.add_argument_group("probe")
    g.add_argument("--probe", action="store_true", help="print which fields each GPU supports, then exit")
    g.add_argument("--json", action="store_true", help="with --probe: print JSON")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="run the GPU agent: NVML or simulated GPUs plus engine /metrics, exported over OTLP",
        description=DESCRIPTION,
    )
    add_arguments(p)
    p.set_defaults(func=cmd_agent)


def child(plan: RunPlan, settings: Settings) -> ChildSpec:
    """How `vigil up` runs the agent: real GPUs where NVML answers, else simulated ones, scraping the plan's engines."""
    assert plan.agent is not None, "vigil up runs the agent only when the plan has one"
    agent = plan.agent
    argv = [
        sys.executable,
        "-m",
        "gpu_agent",
        "--collector",
        plan.url,
        "--simulate-if-no-gpu",
        str(UP_SIMULATED_GPUS),
        "--spool",
        str(plan.data / "agent" / "spool"),
        "--drain-timeout",
        "3",  # the supervisor allows 5 s at stop; what is left stays in the spool
        "--control",
        f"127.0.0.1:{agent.control_port}",
        "--control-file",
        str(agent.control_file),
    ]
    for url in plan.scrape_targets:
        argv += ["--scrape", url]
    if plan.scrape_targets:
        argv += ["--scrape-interval", "1"]
    for key, value in plan.labels:
        argv += ["--label", f"{key}={value}"]
    env = {TOKEN_ENV: settings.ingest_tokens[0]} if settings.ingest_tokens else {}  # never on argv: ps shows argv
    return ChildSpec(NAME, argv, env, health_url=agent.health_url)


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


def config_from(args: argparse.Namespace) -> AgentSettings:
    """Flags over `VIGIL_AGENT_*` variables over defaults; a bad value is refused naming its flag."""
    from gpu_agent.settings import AgentSettings

    try:
        config = settings_from(AgentSettings, args)
    except FlagError as exc:
        raise UsageError(str(exc)) from None
    if not getattr(args, "probe", False) and not config.collector:
        raise UsageError(
            "--collector URL is required (the URL of `vigil up`, e.g. http://127.0.0.1:8080; "
            "or VIGIL_AGENT_COLLECTOR), or use --probe"
        )
    return config


# ---- --probe -----------------------------------------------------------------------------------------


def probe(config: AgentSettings, as_json: bool) -> int:
    from gpu_agent.agent import start_backend
    from gpu_agent.scrape import Target

    backend, report = start_backend(config)
    try:
        engines = []
        for url in config.scrape:
            target = Target(url, config.scrape_timeout)
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
