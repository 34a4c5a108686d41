"""`vigil runbook check FILE...`: validate runbook files as the service loads them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from runbooks.loader import RunbookFileError, check_file

NAME = "runbook"


def register(sub: argparse._SubParsersAction) -> None:
    rb = sub.add_parser("runbook", help="check runbook files")
    cmds = rb.add_subparsers(dest="runbook_command", required=True)
    ck = cmds.add_parser("check", help="validate runbook files; errors name file:line")
    ck.add_argument("files", nargs="+", type=Path, metavar="FILE")
    ck.add_argument("--json", action="store_true", help="print {file: {ok, runbook, steps, error}} as JSON")
    ck.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    report: dict[str, dict[str, Any]] = {}
    for path in args.files:
        try:
            book = check_file(path)
            report[str(path)] = {"ok": True, "runbook": book.name, "steps": len(book.steps), "error": None}
        except RunbookFileError as exc:
            report[str(path)] = {"ok": False, "runbook": None, "steps": 0, "error": str(exc)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for path, result in report.items():
            if result["ok"]:
                print(f"{path}: ok: {result['runbook']} ({result['steps']} steps)")
            else:
                print(result["error"])
    return 0 if all(r["ok"] for r in report.values()) else 1
