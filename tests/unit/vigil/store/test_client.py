import pytest

from vigil.store import StoreError, make_client
from vigil.store.client import embedded_path, redact, server_client_args


def test_embedded_paths() -> None:
    assert str(embedded_path("chdb:///var/lib/vigil/ch")) == "/var/lib/vigil/ch"
    assert embedded_path("http://ch:8123/db") is None
    with pytest.raises(StoreError, match="in-memory"):
        embedded_path("chdb://")


def test_unsupported_scheme_names_the_setting() -> None:
    with pytest.raises(StoreError, match=r"^VIGIL_CLICKHOUSE_URL: unsupported scheme 'ftp'"):
        make_client("ftp://ch/db")


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match=r"could not reach ClickHouse at 127\.0\.0\.1:1"):
        make_client("http://vigil:secret@127.0.0.1:1/vigil")


def test_passwords_are_redacted_in_logs() -> None:
    assert redact("http://vigil:s3cret@ch:8123/db") == "http://vigil:***@ch:8123/db"
    assert redact("chdb:///x") == "chdb:///x"


def test_a_server_store_asks_without_a_session_so_requests_run_side_by_side() -> None:
    """A ClickHouse session runs one query at a time (SESSION_IS_LOCKED), and one client serves the
    collector, the rule evaluator and the dashboard at once: the client must not open one."""
    args = server_client_args("https://vigil:p%40ss@ch.example:9443/fleet")
    assert args["autogenerate_session_id"] is False and "session_id" not in args
    assert (args["host"], args["port"], args["password"], args["database"]) == ("ch.example", 9443, "p@ss", "fleet")
