"""`vigil query`'s two paths and its output: through a running Vigil's API, or straight on a stopped store.

Running means: the embedded store's lock is held (by `vigil up`), or, for a server store, Vigil's
`/healthz` answers. Which path is used is said on stderr, so a reader knows whose limits applied.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx

from vigil import csvcell
from vigil.api_client import TOKEN_ENV, bearer_client, error_detail
from vigil.errors import CliError
from vigil.pidlock import LockHeld, PidLock
from vigil.store import QueryResult
from vigil.store.client import embedded_path
from vigil.tsv import row as tsv_row


def lock_holder(store_url: str) -> str | None:
    """The pid holding the embedded store's lock, or None when it is free (or the store is a server)."""
    path = embedded_path(store_url)
    if path is None or not path.exists():
        return None
    try:
        PidLock(path.parent / f"{path.name}.lock").acquire().release()
    except LockHeld as held:
        return held.holder
    except OSError:
        return None
    return None


PORT_FILE = "vigil.port"  # beside an embedded store: the port of the `vigil up` that holds it, while it runs


def port_file(store_url: str) -> Path | None:
    """Where `vigil up` records its port beside an embedded store; None for a server store."""
    path = embedded_path(store_url)
    return None if path is None else path.parent / PORT_FILE


def served_port(store_url: str) -> int | None:
    """The port the `vigil up` holding this embedded store recorded, if it did and the file names one."""
    path = port_file(store_url)
    try:
        text = path.read_text().strip() if path is not None else ""
    except OSError:
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2.0).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def _client(url: str, token: str | None) -> httpx.Client:
    return bearer_client(url, token, timeout=120.0)


def _answer(response: httpx.Response, url: str) -> QueryResult:
    if response.status_code == 401:
        raise CliError(f"401 from {url}: set {TOKEN_ENV} to one of the server's VIGIL_API_TOKENS or an API token")
    if response.status_code >= 400:
        raise CliError(f"query failed ({response.status_code}): {error_detail(response)}")
    body = response.json()
    return QueryResult(tuple(body["columns"]), [tuple(r) for r in body["rows"]])


def api_query(url: str, token: str | None, sql: str, params: dict[str, Any]) -> QueryResult:
    try:
        with _client(url, token) as client:
            response = client.post("/api/v1/query", json={"sql": sql, "params": params, "format": "json"})
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach Vigil at {url}: {exc} (--url)") from None
    return _answer(response, url)


def api_report(url: str, token: str | None, name: str, query: dict[str, Any]) -> QueryResult:
    try:
        with _client(url, token) as client:
            response = client.get(f"/api/v1/reports/{name}", params=query)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach Vigil at {url}: {exc} (--url)") from None
    return _answer(response, url)


def _text(value: object) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return "" if value is None else str(value)


def print_result(result: QueryResult, fmt: str, out: TextIO = sys.stdout) -> None:
    """`json`: an array of row arrays; `csv`: a header and rows; `table`: aligned columns on a terminal,
    TabSeparated with a header (ClickHouse's escaping, one row per line) when piped."""
    rows: Sequence[Sequence[Any]] = result.result_rows
    if fmt == "json":
        out.write(json.dumps([list(r) for r in rows], default=str) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(csvcell.row(result.column_names))
        writer.writerows(csvcell.row(v if isinstance(v, (int, float)) else _text(v) for v in r) for r in rows)
    elif out.isatty():
        cells = [list(result.column_names), *([_text(v) for v in r] for r in rows)]
        widths = [max(len(c[i]) for c in cells) for i in range(len(result.column_names))]
        for i, line in enumerate(cells):
            out.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n")
            if i == 0:
                out.write("  ".join("-" * w for w in widths) + "\n")
    else:
        out.write(tsv_row(result.column_names) + "\n")
        for r in rows:
            out.write(tsv_row(r) + "\n")
