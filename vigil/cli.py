"""`vigil`: the command line. Each subcommand is one function; errors end as `vigil: error: ...`."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alerting import cli as alerting_cli
from gpu_agent import cli as agent_cli
from runbooks import cli as runbook_cli
from vigil import logs
from vigil.backfill import METRIC_NAMES
from vigil.errors import CliError
from vigil.kernel import AgentPlan, Feature, RunPlan, WorkloadPlan, parse_label
from vigil.logs import event
from vigil.settings import Settings, settings_markdown
from vigil.store import StoreError, open_store
from vigil.store.schema import SchemaContext, migrate, render_sql
from vigil.supervisor import Supervisor
from workload import cli as workload_cli

log = logging.getLogger("vigil")

# The feature packages with a subcommand and a child process of `vigil up`, in start order.
FEATURES: tuple[Feature, ...] = (workload_cli, agent_cli)


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"VIGIL_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise CliError(f"invalid settings: {problems}") from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _loopback_url(host: str, port: int) -> str:
    """How a process on this machine reaches a server listening on `host`."""
    host = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host`; a name other than localhost counts as reachable."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, allow_insecure: bool) -> None:
    """Refuse to listen beyond loopback with ingest open to anyone, unless told to, loudly."""
    if is_loopback(settings.host) or settings.ingest_tokens:
        return
    if not allow_insecure:
        raise CliError(
            f"--host {settings.host or '(all addresses)'} listens beyond this machine, and without "
            "VIGIL_INGEST_TOKENS anyone who can reach it may write metrics to /v1/metrics: set VIGIL_INGEST_TOKENS "
            "(comma-separated bearer tokens for the agents), or pass --allow-insecure to accept that"
        )
    event(
        log,
        "insecure_exposure",
        level=logging.WARNING,
        host=settings.host,
        problem="VIGIL_INGEST_TOKENS unset: /v1/metrics accepts anyone who can reach this address",
        overridden_by="--allow-insecure",
    )


def build_plan(args: argparse.Namespace, settings: Settings) -> RunPlan:
    """The one plan of this `vigil up`, from its flags and settings; bad flags end as a CliError naming them."""
    labels: dict[str, str] = {}
    for item in args.label or []:
        try:
            key, value = parse_label(item)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        labels[key] = value
    for flag, port in (("--workload-port", args.workload_port), ("--agent-control-port", args.agent_control_port)):
        if port is not None and not 1 <= port <= 65535:
            raise CliError(f"{flag} {port}: expected a port from 1 to 65535")
    data = Path(settings.data).resolve()
    workload = None
    if not args.no_workload:
        workload = WorkloadPlan(
            port=args.workload_port,
            url=_loopback_url("127.0.0.1", args.workload_port),
            control_token=settings.control_token,
            demo_traffic=not args.no_demo_traffic,
        )
    agent = None
    if not args.no_agent:
        # fixed for the whole run, so the URL survives the agent's restarts; runbooks find it in the plan
        port = args.agent_control_port or free_port()
        agent = AgentPlan(
            control_port=port, control_url=_loopback_url("127.0.0.1", port), control_file=data / "agent" / "control.url"
        )
    return RunPlan(
        host=settings.host,
        port=settings.port,
        url=_loopback_url(settings.host, settings.port),
        data=data,
        workload=workload,
        agent=agent,
        scrape_targets=(workload.metrics_url,) if workload else (),
        labels=tuple(labels.items()),
    )


def cmd_up(args: argparse.Namespace) -> int:
    from vigil import query_client
    from vigil.app import create_app
    from vigil.serve import serve

    settings = load_settings(data=args.data, port=args.port, host=args.host)
    check_exposure(settings, args.allow_insecure)
    if not settings.control_token:  # one per run, handed to the workload and the runbook engine
        settings = settings.model_copy(update={"control_token": secrets.token_urlsafe(24)})
    plan = build_plan(args, settings)
    store = open_store(settings.store_url, settings.clickhouse_cluster)
    supervisor: Supervisor | None = None
    port_file = query_client.port_file(settings.store_url)  # `vigil query --data` finds this server by it
    try:
        if port_file is not None:
            port_file.write_text(f"{settings.port}\n")
        migrate(store, SchemaContext.from_settings(settings))
        running = {"workload": plan.workload is not None, "agent": plan.agent is not None}
        specs = [feature.child(plan, settings) for feature in FEATURES if running.get(feature.NAME, True)]
        supervisor = Supervisor(specs)
        app = create_app(settings, store, plan, children=supervisor.health)
        supervisor.start()
        event(
            log,
            "vigil_up",
            url=plan.url,
            data=plan.data,
            children=",".join(s.name for s in specs) or "none",
            ports=",".join(f"{k}:{v}" for k, v in plan.ports.items()),
        )
        return 0 if serve(app, settings, app.state.registry) else 1
    finally:
        if supervisor:
            supervisor.stop()
        if port_file is not None:
            port_file.unlink(missing_ok=True)
        store.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings(data=args.data, clickhouse_cluster=args.cluster)
    ctx = SchemaContext.from_settings(settings)
    if args.print:
        sys.stdout.write(render_sql(ctx))
        return 0
    store = open_store(settings.store_url, settings.clickhouse_cluster)
    try:
        applied = migrate(store, ctx)
    finally:
        store.close()
    print(json.dumps({"applied": applied}))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """A read-only query or a named report: through the API of a running Vigil, else on the stopped store."""
    import os

    from vigil import query_client
    from vigil.reports import ReportAsk, run_report
    from vigil.store import ReadLimits

    if (args.sql is None) == (args.report is None):
        raise CliError("give either SQL or --report NAME")
    settings = load_settings(data=args.data)
    params: dict[str, str] = {}
    for item in args.param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CliError(f"--param {item!r}: expected NAME=VALUE")
        params[name] = value
    fmt = "json" if args.json else "csv" if args.csv else "table"
    url = args.url
    holder = query_client.lock_holder(settings.store_url)
    if url is None and holder:  # the port the holder recorded (`vigil up --port`), else VIGIL_PORT
        url = _loopback_url(settings.host, query_client.served_port(settings.store_url) or settings.port)
    elif url is None and not settings.store_url.startswith("chdb://"):  # a server store: is Vigil answering?
        running_at = _loopback_url(settings.host, settings.port)
        url = running_at if query_client.answers(running_at) else None
    if url is not None:
        running = f" (pid {holder} holds the store)" if holder else ""
        print(f"vigil query: through the API of the running Vigil at {url}{running}", file=sys.stderr)
        token = os.environ.get(query_client.TOKEN_ENV)
        if args.report:
            report = {"days": args.days, "group_by": args.group_by, "step": args.step}
            result = query_client.api_report(url, token, args.report, report)
        else:
            result = query_client.api_query(url, token, args.sql, params)
        query_client.print_result(result, fmt)
        return 0
    print(f"vigil query: directly on the store at {settings.store_url} (Vigil is not running)", file=sys.stderr)
    store = open_store(settings.store_url, settings.clickhouse_cluster)
    try:
        if args.report:
            now = time.time()
            ask = ReportAsk.last_days(args.report, args.days, now, group_by=args.group_by, step=args.step)
            result = run_report(store, ask, SchemaContext.from_settings(settings), now)
        else:
            limits = ReadLimits(settings.query_max_rows, settings.query_max_bytes, settings.query_timeout_s)
            result = store.query_readonly(args.sql, params, limits)
    except StoreError as exc:
        raise CliError(f"query failed: {exc}") from None
    finally:
        store.close()
    query_client.print_result(result, fmt)
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    """Simulated fleet history straight into the stopped store (see vigil/backfill.py)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from vigil import backfill
    from vigil.store import StoreLockedError

    settings = load_settings(data=args.data)
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    try:
        spec = backfill.FleetSpec(args.gpus, args.teams, args.days, args.step, args.clusters, args.seed, metrics)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    fleet = backfill.Fleet(spec, int(args.end if args.end is not None else time.time()))
    try:
        store = open_store(settings.store_url, settings.clickhouse_cluster)
    except StoreLockedError as exc:
        raise CliError(f"{exc}. `vigil backfill` writes straight into the store: stop `vigil up` first") from None
    columns = (
        TextColumn("backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeRemainingColumn(),
    )
    try:
        migrate(store, SchemaContext.from_settings(settings))
        with Progress(*columns, console=Console(stderr=True), disable=args.quiet) as progress:
            task = progress.add_task("backfill", total=fleet.samples)
            report = backfill.write(
                store, fleet, progress=lambda rows: progress.advance(task, rows), measure=args.measure
            )
    finally:
        store.close()
    summary = {**report.as_dict(), "start": fleet.start, "end": fleet.end, "gpus": spec.gpus, "teams": spec.teams}
    print(json.dumps(summary))
    if args.measure and summary["ratio"]:
        print(
            f"store insert alone: {summary['store_rows_per_s']:,} rows/s; backfill (generate + insert): "
            f"{summary['backfill_rows_per_s']:,} rows/s; ratio {summary['ratio']:.2f}",
            file=sys.stderr,
        )
    return 0


def cmd_drill(args: argparse.Namespace) -> int:
    import os

    from vigil import drill

    token = os.environ.get("VIGIL_API_TOKEN")
    if not token:
        raise CliError(
            "set VIGIL_API_TOKEN to an admin's or operator's API token (an admin's lets the drill act as --approver)"
        )
    faults = args.fault or list(drill.FAULTS)
    runner = drill.Drill(
        drill.Api(args.url, token),
        approver=args.approver,
        production=args.i_know_this_is_production,
        timeout_s=args.timeout,
        resolve_s=args.resolve_timeout,
        say=lambda line: print(line, file=sys.stderr),
    )
    rows = runner.run(faults)
    print(drill.table(rows))
    if args.json:
        args.json.write_text(json.dumps([drill.asdict(r) for r in rows], indent=2) + "\n")
    return 0 if all(r.outcome == "ok" for r in rows) else 2


def settings_tables() -> str:
    """The README's settings section: one table per settings class, `vigil up`'s first."""
    from gpu_agent.settings import AgentSettings
    from workload.settings import WorkloadSettings

    parts = []
    for title, cls in (
        ("`vigil up`", Settings),
        ("`vigil workload` (flags of the same names: `--max-num-seqs`, ...)", WorkloadSettings),
        ("`vigil agent` (flags of the same names: `--interval`, ...)", AgentSettings),
    ):
        parts.append(f"### {title}\n\n{settings_markdown(cls)}")
    return "\n".join(parts)


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(settings_tables())
        return 0
    settings = load_settings()
    print(
        settings.model_dump_json(indent=2, exclude={"ingest_tokens", "control_token", "api_tokens", "admin_password"})
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run Vigil: store, collector, dashboard, workload and agent on one port")
    up.add_argument("--data", type=Path, help="data directory (default ./.vigil; VIGIL_DATA)")
    up.add_argument("--port", type=int, help="listen port (default 8080; VIGIL_PORT)")
    up.add_argument("--host", help="listen address (default 127.0.0.1; VIGIL_HOST)")
    up.add_argument("--no-agent", action="store_true", help="do not start the local GPU agent")
    up.add_argument("--no-workload", action="store_true", help="do not start the reference workload")
    up.add_argument("--workload-port", type=int, default=8000, help="reference workload port (default 8000)")
    up.add_argument(
        "--agent-control-port",
        type=int,
        help="port of the local agent's control endpoint on 127.0.0.1 (default: a free port, fixed for the run)",
    )
    up.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="K=V",
        help="resource attribute of the local agent's series (repeatable), e.g. team=ml-platform, k8s.cluster.name=dev",
    )
    up.add_argument(
        "--no-demo-traffic", action="store_true", help="do not send the workload gentle demo traffic (a few req/s)"
    )
    up.add_argument(
        "--allow-insecure",
        action="store_true",
        help="listen beyond loopback without VIGIL_INGEST_TOKENS (ingest open to anyone who reaches it); warns",
    )
    up.set_defaults(func=cmd_up)

    mig = sub.add_parser("migrate", help="apply the store's migrations, or print them")
    mig.add_argument("--data", type=Path, help="data directory (default ./.vigil)")
    mig.add_argument("--cluster", help="render for this ClickHouse cluster (VIGIL_CLICKHOUSE_CLUSTER)")
    mig.add_argument("--print", action="store_true", help="print the DDL instead of applying it")
    mig.set_defaults(func=cmd_migrate)

    q = sub.add_parser(
        "query",
        help="a read-only SQL query or a named report: through a running Vigil's API (token from VIGIL_API_TOKEN), "
        "else directly on the stopped store",
    )
    q.add_argument("sql", nargs="?", help="SQL; bind values as {name:Type} and pass them with --param")
    q.add_argument("--param", action="append", metavar="NAME=VALUE", help="a query parameter (repeatable)")
    q.add_argument("--report", choices=("gpu-hours", "idle", "top-idle"), help="a named report instead of SQL")
    q.add_argument("--days", type=float, default=30.0, help="--report: the last N days (default 30)")
    q.add_argument("--group-by", default="team", help="--report: the resource attribute to group by (default team)")
    q.add_argument("--step", type=int, default=3600, help="--report: bucket seconds (default 3600)")
    q.add_argument("--data", type=Path, help="data directory (default ./.vigil)")
    q.add_argument(
        "--url",
        help="a running Vigil's URL (default, while Vigil holds the store: the port it recorded, on VIGIL_HOST)",
    )
    out = q.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="rows as a JSON array of arrays")
    out.add_argument("--csv", action="store_true", help="CSV with a header row")
    q.set_defaults(func=cmd_query)

    bf = sub.add_parser("backfill", help="write simulated fleet history into the stopped store (vigil.simulated=true)")
    bf.add_argument("--gpus", type=int, required=True, help="GPUs, 8 per node")
    bf.add_argument("--teams", type=int, required=True, help="teams, of different sizes (whole nodes each)")
    bf.add_argument("--days", type=float, required=True, help="days of history, ending now (or --end)")
    bf.add_argument("--step", type=int, default=60, help="seconds between points (default 60)")
    bf.add_argument("--clusters", type=int, default=1, help="k8s clusters the nodes spread over (default 1)")
    bf.add_argument("--seed", type=int, default=1, help="the same seed writes the same values (default 1)")
    bf.add_argument("--end", type=int, help="unix seconds the history ends at (default now)")
    bf.add_argument(
        "--metrics", default=",".join(METRIC_NAMES), help=f"comma-separated metrics (default {','.join(METRIC_NAMES)})"
    )
    bf.add_argument("--data", type=Path, help="data directory (default ./.vigil)")
    bf.add_argument(
        "--measure", action="store_true", help="also time the store's insert alone and print both rates and the ratio"
    )
    bf.add_argument("--quiet", action="store_true", help="no progress bar")
    bf.set_defaults(func=cmd_backfill)

    for feature in FEATURES:
        feature.register(sub)
    alerting_cli.register(sub)  # a command only: alerting runs in vigil up's process, as a service
    runbook_cli.register(sub)  # `vigil runbook check FILE`; the engine runs in vigil up's process, as a service

    dr = sub.add_parser(
        "drill",
        help="prove the loop on a running Vigil: inject each fault, see the alert, run its runbook, verify, clear",
    )
    dr.add_argument(
        "--fault",
        action="append",
        choices=["errors", "latency", "stall", "kv_pressure", "crash", "xid79", "thermal", "ecc"],
        help="a fault to drill (repeatable; default: every one, in this order)",
    )
    dr.add_argument("--url", default="http://127.0.0.1:8080", help="Vigil's URL (default http://127.0.0.1:8080)")
    dr.add_argument("--json", type=Path, metavar="FILE", help="also write the table as JSON to FILE")
    dr.add_argument("--approver", default="drill", help="the user the drill approves runbook steps as (default drill)")
    dr.add_argument("--timeout", type=float, default=300.0, help="seconds each fault may take in all (default 300)")
    dr.add_argument(
        "--resolve-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the alert to resolve after its runbook succeeded (default 120)",
    )
    dr.add_argument(
        "--i-know-this-is-production",
        action="store_true",
        help="drill a workload that is not the reference one, or GPUs that are not simulated",
    )
    dr.set_defaults(func=cmd_drill)

    st = sub.add_parser("settings", help="show the effective settings")
    st.add_argument("--markdown", action="store_true", help="print the settings table of the README")
    st.set_defaults(func=cmd_settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup()
    try:
        return args.func(args)
    except (CliError, StoreError) as exc:
        print(f"vigil: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
