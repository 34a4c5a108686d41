"""vigil.store.faults: "the store is unavailable, retry" against "these rows are bad, refuse them"."""

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from vigil.store import StoreError, store_unavailable


def db_error(code: int | None) -> DatabaseError:
    exc = DatabaseError("engine said no")
    exc.code = code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("exc", "unavailable"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (StoreError("closed"), True),
        (OperationalError("connection reset"), True),
        (db_error(None), True),  # no code: nothing says the rows are at fault
        (db_error(241), True),  # MEMORY_LIMIT_EXCEEDED
        (db_error(252), True),  # TOO_MANY_PARTS
        (db_error(6), False),  # CANNOT_PARSE_TEXT: the rows
        (db_error(70), False),  # CANNOT_CONVERT_TYPE: the rows
        (OverflowError("int too large"), False),  # Arrow could not build the column
        (ValueError("bad"), False),
    ],
)
def test_unavailable_means_retry_and_everything_else_is_the_data(exc: BaseException, unavailable: bool) -> None:
    assert store_unavailable(exc) is unavailable
