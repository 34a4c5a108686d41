"""`vigil alerting check FILE...` and `vigil alerting silence add|list|expire` (against a running Vigil)."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from alerting.rules import UP_INTERVALS_S, RuleError, check_file
from alerting.source import parse_duration
from vigil.api_client import TOKEN_ENV, bearer_client, error_detail
from vigil.errors import CliError

NAME = "alerting"
_SILENCE_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_.\-/]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


def register(sub: argparse._SubParsersAction) -> None:
    al = sub.add_parser("alerting", help="check rule files; add, list and expire silences")
    cmds = al.add_subparsers(dest="alerting_command", required=True)

    ck = cmds.add_parser("check", help="validate rule and SLO files; warn of windows too short for their metric")
    ck.add_argument("files", nargs="+", type=Path, metavar="FILE")
    ck.add_argument(
        "--interval",
        action="append",
        default=[],
        metavar="PREFIX=S",
        help="seconds between samples of metrics named PREFIX... (default: vigil up's, e.g. llm.=1 gpu.=1)",
    )
    ck.add_argument("--json", action="store_true", help="print {file: {ok, rules, warnings, error}} as JSON")
    ck.set_defaults(func=cmd_check)

    si = cmds.add_parser("silence", help="silences on a running Vigil (token from VIGIL_API_TOKEN)")
    verbs = si.add_subparsers(dest="silence_command", required=True)
    add = verbs.add_parser("add", help="mute alerts whose labels match every matcher")
    add.add_argument("matchers", nargs="+", metavar="MATCHER", help='e.g. alertname=GpuLost host.name=~"node-1.*"')
    add.add_argument("--duration", default="1h", help="how long, e.g. 30m, 2h (default 1h)")
    add.add_argument("--comment", required=True, help="why: shown to whoever finds the silence")
    add.add_argument("--created-by", default=os.environ.get("USER", "vigil"), help="who (default $USER)")
    ls = verbs.add_parser("list", help="the silences, active and pending")
    ls.add_argument("--expired", action="store_true", help="include expired silences")
    ex = verbs.add_parser("expire", help="end a silence now")
    ex.add_argument("id")
    for p in (add, ls, ex):
        p.add_argument("--url", default="http://127.0.0.1:8080", help="Vigil's URL (default http://127.0.0.1:8080)")
        p.add_argument("--json", action="store_true", help="print the API's JSON")
        p.set_defaults(func=cmd_silence)


def _intervals(items: Sequence[str]) -> dict[str, float]:
    out = dict(UP_INTERVALS_S)
    for item in items:
        prefix, sep, seconds = item.partition("=")
        try:
            out[prefix] = float(seconds)
        except ValueError:
            sep = ""
        if not sep or not prefix:
            raise CliError(f"--interval {item!r}: expected PREFIX=SECONDS, e.g. llm.=5")
    return out


def cmd_check(args: argparse.Namespace) -> int:
    intervals = _intervals(args.interval)
    report: dict[str, dict[str, Any]] = {}
    for path in args.files:
        try:
            report[str(path)] = {"ok": True, "warnings": check_file(path, intervals), "error": None}
        except RuleError as exc:
            report[str(path)] = {"ok": False, "warnings": [], "error": str(exc)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for path, result in report.items():
            print(f"{path}: {'error' if result['error'] else 'ok'}")
            for line in [result["error"], *result["warnings"]]:
                if line:
                    print(f"  {'error' if line == result['error'] else 'warning'}: {line}")
    return 0 if all(r["ok"] for r in report.values()) else 1


def parse_silence_matcher(text: str) -> dict[str, Any]:
    """`key=value`, `key!=value`, `key=~re`, `key!~re` (value optionally quoted) → an Alertmanager v2 matcher."""
    match = _SILENCE_MATCHER.match(text)
    if not match:
        raise CliError(
            f'matcher {text!r}: write KEY=VALUE, KEY!=VALUE, KEY=~REGEX or KEY!~REGEX, e.g. alertname="GpuLost"'
        )
    key, op, value = match.groups()
    return {"name": key, "value": value, "isRegex": "~" in op, "isEqual": not op.startswith("!")}


def _client(args: argparse.Namespace) -> httpx.Client:
    return bearer_client(args.url, os.environ.get(TOKEN_ENV), timeout=10.0)


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach Vigil at {client.base_url}: {exc}; is `vigil up` running? (--url)") from None
    if response.status_code == 401:
        raise CliError(
            f"401 from {client.base_url}: set {TOKEN_ENV} to an API token (an admin makes one at /admin) "
            "or to one of the server's VIGIL_API_TOKENS"
        )
    if response.status_code == 403:
        raise CliError(f"403 from {method} {path}: {TOKEN_ENV}'s token lacks the role (silences need operator)")
    if response.status_code >= 400:
        raise CliError(f"{response.status_code} from {method} {path}: {error_detail(response)}")
    return response.json() if response.content else {}


def cmd_silence(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.silence_command == "add":
            try:
                duration = parse_duration(args.duration)
            except ValueError as exc:
                raise CliError(f"--duration: {exc}") from None
            body = {
                "matchers": [parse_silence_matcher(m) for m in args.matchers],
                "duration_s": duration,
                "createdBy": args.created_by,
                "comment": args.comment,
            }
            result = _call(client, "POST", "/api/v1/silences", json=body)
            print(json.dumps(result) if args.json else result.get("silenceID", result))
        elif args.silence_command == "list":
            params = {"include_expired": "1"} if args.expired else {}  # the API's name (api.list_silences)
            result = _call(client, "GET", "/api/v1/silences", params=params)
            silences = result.get("silences", result) if isinstance(result, dict) else result
            print(json.dumps(silences, indent=2) if args.json else silence_table(silences))
        else:
            result = _call(client, "DELETE", f"/api/v1/silence/{args.id}")
            print(json.dumps(result) if args.json else f"expired {args.id}")
    return 0


def _matcher_text(m: dict[str, Any]) -> str:
    op = ("=" if m.get("isEqual", True) else "!") + ("~" if m.get("isRegex") else "")
    op = "!=" if op == "!" else op
    return f'{m.get("name")}{op}"{m.get("value")}"'


def _when(value: Any) -> str:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value or "")


def silence_table(silences: Sequence[dict[str, Any]]) -> str:
    """Silences as a table a person reads: id, state, matchers, until, by, comment."""
    rows = [("ID", "STATE", "MATCHERS", "ENDS", "CREATED BY", "COMMENT")]
    for s in silences:
        state = s.get("status", {}).get("state", "") if isinstance(s.get("status"), dict) else s.get("state", "")
        matchers = " ".join(_matcher_text(m) for m in s.get("matchers", []))
        rows.append(
            (
                str(s.get("id", "")),
                state,
                matchers,
                _when(s.get("endsAt")),
                s.get("createdBy", ""),
                s.get("comment", ""),
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
