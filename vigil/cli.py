"""`vigil`: the command line. Each subcommand is one function; errors end as `vigil: error: ...`."""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from gpu_agent import cli as agent_cli
from vigil import logs, tsv
from vigil.errors import CliError
from vigil.logs import event
from vigil.settings import Settings, settings_markdown
from vigil.store import StoreError, open_store
from vigil.store.schema import SchemaContext, migrate, render_sql
from vigil.supervisor import ChildSpec, Supervisor
from workload import cli as workload_cli

log = logging.getLogger("vigil")


class Feature(Protocol):
    """A service package's command line: `<package>/cli.py` of the workload, the agent, ...

    `NAME` is its subcommand and the name of its child process under `vigil up`; `register` adds
    the subcommand; `child` returns how `vigil up` runs it (given the parsed `up` arguments).
    """

    NAME: str

    def register(self, sub: argparse._SubParsersAction) -> None: ...

    def child(self, args: argparse.Namespace, settings: Settings) -> ChildSpec: ...


# The service packages with a subcommand and a child process of `vigil up`, in start order.
FEATURES: tuple[Feature, ...] = (workload_cli, agent_cli)


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"VIGIL_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise CliError(f"invalid settings: {problems}") from None


def schema_context(settings: Settings) -> SchemaContext:
    return SchemaContext(
        cluster=settings.clickhouse_cluster,
        raw_ttl_days=settings.raw_ttl_days,
        rollup_1m_ttl_days=settings.rollup_1m_ttl_days,
        rollup_1h_ttl_days=settings.rollup_1h_ttl_days,
        idempotency_window_hours=settings.idempotency_window_hours,
    )


def cmd_up(args: argparse.Namespace) -> int:
    from vigil.app import create_app
    from vigil.serve import serve

    settings = load_settings(data=args.data, port=args.port, host=args.host)
    if not settings.control_token:  # one per run, handed to the workload and the runbook engine
        settings = settings.model_copy(update={"control_token": secrets.token_urlsafe(24)})
    store = open_store(settings.store_url, settings.clickhouse_cluster)
    supervisor: Supervisor | None = None
    try:
        migrate(store, schema_context(settings))
        app = create_app(settings, store)
        skipped = {"agent": args.no_agent, "workload": args.no_workload}
        specs = [feature.child(args, settings) for feature in FEATURES if not skipped.get(feature.NAME)]
        supervisor = Supervisor(specs)
        supervisor.start()
        event(
            log,
            "vigil_up",
            url=f"http://{settings.host}:{settings.port}",
            data=settings.data.resolve(),
            children=",".join(s.name for s in specs) or "none",
        )
        return 0 if serve(app, settings, app.state.registry) else 1
    finally:
        if supervisor:
            supervisor.stop()
        store.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings(data=args.data, clickhouse_cluster=args.cluster)
    ctx = schema_context(settings)
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
    """A read-only query on the store; the embedded one must not be open in another process."""
    settings = load_settings(data=args.data)
    params: dict[str, str] = {}
    for item in args.param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CliError(f"--param {item!r}: expected NAME=VALUE")
        params[name] = value
    store = open_store(settings.store_url, settings.clickhouse_cluster)
    try:
        result = store.client.query(args.sql, parameters=params, settings={"readonly": 1})
    except Exception as exc:
        raise CliError(f"query failed: {exc}") from None
    finally:
        store.close()
    if args.json:
        print(json.dumps([list(row) for row in result.result_rows], default=str))
        return 0
    print(tsv.row(result.column_names))
    for row in result.result_rows:
        print(tsv.row(row))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(settings_markdown())
        return 0
    settings = load_settings()
    print(settings.model_dump_json(indent=2, exclude={"ingest_tokens", "control_token"}))
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
        "--no-demo-traffic", action="store_true", help="do not send the workload gentle demo traffic (a few req/s)"
    )
    up.set_defaults(func=cmd_up)

    mig = sub.add_parser("migrate", help="apply the store's migrations, or print them")
    mig.add_argument("--data", type=Path, help="data directory (default ./.vigil)")
    mig.add_argument("--cluster", help="render for this ClickHouse cluster (VIGIL_CLICKHOUSE_CLUSTER)")
    mig.add_argument("--print", action="store_true", help="print the DDL instead of applying it")
    mig.set_defaults(func=cmd_migrate)

    q = sub.add_parser("query", help="run a read-only SQL query on the store (embedded: while Vigil is stopped)")
    q.add_argument("sql", help="SQL; bind values as {name:Type} and pass them with --param")
    q.add_argument("--param", action="append", metavar="NAME=VALUE", help="a query parameter (repeatable)")
    q.add_argument("--data", type=Path, help="data directory (default ./.vigil)")
    q.add_argument("--json", action="store_true", help="rows as a JSON array of arrays")
    q.set_defaults(func=cmd_query)

    for feature in FEATURES:
        feature.register(sub)

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
