"""The client factory and the Store handle every service uses.

`chdb:///path` opens the embedded engine in this process; `http(s)://user:pass@host:8123/db`
talks to a server or cluster. Both give the same clickhouse-connect `Client` API, so nothing
above this module knows which one it has.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from vigil.logs import event
from vigil.pidlock import LockHeld, PidLock
from vigil.store.foreground import Foreground
from vigil.store.handles import HistoryHandles

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreError(Exception):
    """The store could not be opened or answered with an error."""


class StoreLockedError(StoreError):
    """Another process holds the embedded store."""


class StoreQueryError(StoreError):
    """The store refused or failed a query; the message is the engine's."""


class QueryRefused(StoreQueryError):
    """Typed SQL that would write, change a setting, hold several statements or write a file."""


class QueryTooLarge(StoreQueryError):
    """The answer passed its row or byte limit; the store stopped the query."""


class QueryTimedOut(StoreQueryError):
    """The query ran past its time limit; the store stopped it."""


@dataclass(frozen=True)
class ReadLimits:
    """What one typed query may cost. Set on the reader's session, under `readonly=1`, so the
    query cannot lift them itself (`SETTINGS max_result_rows = 0` is refused as a setting change)."""

    max_rows: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    timeout_s: float = 10.0

    def settings(self) -> dict[str, Any]:
        # readonly last: once it is set the session may change no other setting
        return {
            "max_result_rows": self.max_rows,
            "max_result_bytes": self.max_bytes,
            "result_overflow_mode": "throw",
            "max_execution_time": self.timeout_s,
            "timeout_overflow_mode": "throw",
            "readonly": 1,
        }


_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)
_READONLY_CODE, _TIMEOUT_CODE, _TOO_LARGE_CODES = 164, 159, (158, 307, 396)


def embedded_path(url: str) -> Path | None:
    """The directory of a `chdb://` URL, or None for a server URL."""
    if not url.startswith("chdb://"):
        return None
    rest = url[len("chdb://") :]
    if not rest or rest in (":memory:", "memory"):
        raise StoreError("an in-memory chdb store cannot be shared or kept; give a directory: chdb:///path")
    return Path(rest).expanduser().resolve()


def make_client(url: str, settings: dict[str, Any] | None = None) -> Client:
    """Build a clickhouse-connect client from a store URL."""
    path = embedded_path(url)
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        try:
            return clickhouse_connect.get_client(interface="chdb", path=str(path), settings=settings)
        except Exception as exc:
            if "EmbeddedServer" in str(exc) or "code: 36" in str(exc).lower():
                raise StoreLockedError(f"the embedded store {path} is open in another process") from exc
            raise StoreError(f"could not open the embedded store {path}: {exc}") from exc
    args = server_client_args(url)
    try:
        return clickhouse_connect.get_client(**args, settings=settings)
    except Exception as exc:
        raise StoreError(f"could not reach ClickHouse at {args['host']}:{args['port']}: {exc}") from exc


def server_client_args(url: str) -> dict[str, Any]:
    """clickhouse-connect's arguments for a server store's `http(s)://user:pass@host:port/db` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise StoreError(f"VIGIL_CLICKHOUSE_URL: unsupported scheme {parts.scheme!r}; use chdb:// or http(s)://")
    return {
        "interface": parts.scheme,
        "host": parts.hostname or "localhost",
        "port": parts.port or (8443 if parts.scheme == "https" else 8123),
        "username": unquote(parts.username or "default"),
        "password": unquote(parts.password or ""),
        "database": parts.path.strip("/") or "default",
        # No session: a session runs one query at a time (the server answers SESSION_IS_LOCKED), and one
        # client serves the collector's writers, the rule evaluator and every dashboard request at once.
        # Settings go with each query instead, so a reader's `readonly=1` still holds for every one.
        "autogenerate_session_id": False,
    }


@dataclass(frozen=True)
class QueryResult:
    """A query's answer with its column names, for callers that print what they did not write."""

    column_names: tuple[str, ...]
    result_rows: list[tuple[Any, ...]]  # named as clickhouse-connect names it, so callers read either


class Store:
    """An open store. The clickhouse-connect client stays private: every read and write goes
    through these methods, so the insert settings and the read-only guard live in one place."""

    def __init__(self, client: Client, url: str, cluster: str = "", lock: PidLock | None = None) -> None:
        self._client = client
        self.url = url
        self.cluster = cluster
        self._lock = lock
        self._readers: dict[ReadLimits, Client] = {}
        self._reader_lock = threading.Lock()
        self._history = HistoryHandles(lambda: make_client(url), _close_quietly)
        self.foreground = Foreground()  # history reads mark themselves here; the rule evaluator yields to them

    def __repr__(self) -> str:
        return f"Store(url={redact(self.url)!r}, cluster={self.cluster!r})"

    @property
    def embedded(self) -> bool:
        return self.url.startswith("chdb://")

    @staticmethod
    def _insert_settings(dedup_token: str | None) -> dict[str, Any]:
        # Rollup views aggregate each block already; merging it again on insert is wasted work.
        settings: dict[str, Any] = {"optimize_on_insert": 0}
        if dedup_token:
            settings["insert_deduplication_token"] = dedup_token
            settings["insert_deduplicate"] = 1
            settings["deduplicate_blocks_in_dependent_materialized_views"] = 1
        return settings

    def insert_columns(
        self,
        table: str,
        columns: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        dedup_token: str | None = None,
    ) -> None:
        """Insert Python column lists. `dedup_token` makes a retried insert a no-op."""
        self._client.insert(
            table,
            columns,
            column_names=list(column_names),
            column_oriented=True,
            settings=self._insert_settings(dedup_token),
        )

    def insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        """Insert a pyarrow Table (columns by name). `dedup_token` makes a retried insert a no-op."""
        self._client.insert_arrow(table, data, settings=self._insert_settings(dedup_token))

    def query_rows(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Rows of a query whose values are bound as `{name:Type}` parameters."""
        return self._client.query(sql, parameters=parameters or {}, settings=settings).result_rows

    def read_rows(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """`query_rows` for the dashboard's reads, on an embedded store through a handle of their own
        (`vigil.store.handles`), so they do not queue behind rule evaluation and inserts. A server
        store's client already runs requests side by side, so it is used as it is."""
        if not self.embedded:
            return self.query_rows(sql, parameters, settings)
        return self._history.query(sql, parameters or {}, settings)

    def read_together(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Each call's answer, the calls run at once on an embedded store's history handles; one after
        another on a server store, which already answers different requests side by side."""
        if not self.embedded:
            return [call() for call in calls]
        return self._history.together(calls)

    def command(
        self, sql: str, parameters: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> Any:
        return self._client.command(sql, parameters=parameters or {}, settings=settings)

    def query_readonly(
        self, sql: str, parameters: dict[str, Any] | None = None, limits: ReadLimits | None = None
    ) -> QueryResult:
        """Run SQL someone typed, with the store refusing any write (`readonly=1`) and stopping the
        query past `limits`.

        Raises `QueryRefused` for a write, a setting change, several statements or INTO OUTFILE,
        `QueryTooLarge` / `QueryTimedOut` past a limit, `StoreQueryError` for anything else the
        engine refuses; each with a message that says what to change.
        """
        limits = limits or ReadLimits()
        # Its own client per limits, whose session is read-only for good: the engine then refuses
        # every statement that writes, even the first of several (a per-query SETTINGS clause
        # reaches only the last one). A reader whose query failed is dropped and reopened.
        with self._reader_lock:
            reader = self._readers.get(limits) or make_client(self.url, settings=limits.settings())
            self._readers[limits] = reader
            try:
                self._check_single_select(reader, sql)
                result = reader.query(sql, parameters=parameters or {})
            except StoreQueryError:
                raise
            except Exception as exc:
                del self._readers[limits]
                _close_quietly(reader)
                raise _typed_query_error(exc, limits) from None
        return QueryResult(tuple(result.column_names), list(result.result_rows))

    @staticmethod
    def _check_single_select(reader: Client, sql: str) -> None:
        """The engine's own parser says whether `sql` is one statement, and shows an INTO OUTFILE,
        which chdb would write to this process's disk even read-only."""
        try:
            formatted = reader.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": sql}).result_rows
        except Exception as exc:
            if "Multi-statements are not allowed" in str(exc):
                raise QueryRefused("one statement per query: remove the `;` and what follows it") from None
            raise StoreQueryError(_engine_message(exc)) from None
        if _OUTFILE.search(str(formatted[0][0])):
            raise QueryRefused("INTO OUTFILE writes a file on the server; read the rows from the answer instead")

    def ping(self) -> bool:
        try:
            return self._client.ping()
        except Exception:
            return False

    def close(self) -> None:
        try:
            for reader in self._readers.values():
                _close_quietly(reader)
            self._history.close()
            self._client.close()
        finally:
            if self._lock:
                self._lock.release()
                self._lock = None
            event(log, "store_closed", url=redact(self.url))


def _engine_message(exc: BaseException) -> str:
    """The engine's sentence without the driver's wrapping (the SQL echoed back, stack hints)."""
    text = str(exc).strip()
    found = re.search(r"Code: \d+\. DB::Exception: (?:Code: \d+\. DB::Exception: )?(.*)", text, re.DOTALL)
    return (found.group(1) if found else text).split("\n")[0].strip()


def _engine_code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    found = re.search(r"Code: (\d+)\.", str(exc))
    return int(found.group(1)) if found else None


def _typed_query_error(exc: BaseException, limits: ReadLimits) -> StoreQueryError:
    code, message = _engine_code(exc), _engine_message(exc)
    if code == _READONLY_CODE:
        return QueryRefused(f"read-only: the store refused it ({message}); only reads run here")
    if code in _TOO_LARGE_CODES:
        return QueryTooLarge(
            f"the answer passed the limit of {limits.max_rows} rows or {limits.max_bytes} bytes "
            "(VIGIL_QUERY_MAX_ROWS, VIGIL_QUERY_MAX_BYTES): aggregate, add a LIMIT or narrow the range"
        )
    if code == _TIMEOUT_CODE:
        return QueryTimedOut(
            f"the query ran past {limits.timeout_s:g} s (VIGIL_QUERY_TIMEOUT_S) and was stopped: "
            "read a rollup (vigil_metrics_gauge_1h_v2) or narrow the range"
        )
    return StoreQueryError(message)


def _close_quietly(client: Client) -> None:
    try:
        client.close()
    except Exception as exc:
        event(log, "store_client_close_failed", error=str(exc))


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def open_store(url: str, cluster: str = "") -> Store:
    """Open the store at `url`, taking the single-process lock for an embedded one."""
    lock = None
    path = embedded_path(url)
    if path is not None:
        try:
            lock = PidLock(path.parent / f"{path.name}.lock").acquire()
        except LockHeld as held:
            raise StoreLockedError(
                f"the embedded store {path} is in use by another Vigil process (pid {held.holder}); "
                "stop it first, or give this one another data directory with --data"
            ) from None
    try:
        client = make_client(url)
    except Exception:
        if lock:
            lock.release()
        raise
    event(log, "store_opened", url=redact(url), embedded=path is not None, cluster=cluster or "-")
    return Store(client, url, cluster, lock)
