"""Whether a failed store call means "the store is unavailable" (retry later) or "this data is bad" (refuse it).

The rule: a failure to reach or use the store (connection, transport, timeouts, the store's own
resource, access or schema problems) is retried from the WAL, because the same rows will go in
once the store is back. Anything else, including a conversion or Arrow error and an error the
engine raises about the rows themselves, is a data error: retrying the same rows fails the same
way, so the batch is split and only the requests that still fail are refused.

It lives in the store package because only the store knows its client's exception types.
"""

from __future__ import annotations

from clickhouse_connect.driver.exceptions import DatabaseError, InterfaceError, OperationalError, ProgrammingError

from vigil.store.client import StoreError

# ClickHouse error codes that are about the store's state, not the rows sent.
STORE_CODES = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE
        16,  # NO_SUCH_COLUMN_IN_TABLE (schema not migrated)
        60,  # UNKNOWN_TABLE
        74,  # CANNOT_READ_FROM_FILE_DESCRIPTOR
        75,  # CANNOT_WRITE_TO_FILE_DESCRIPTOR
        76,  # CANNOT_OPEN_FILE
        81,  # UNKNOWN_DATABASE
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY
        173,  # CANNOT_ALLOCATE_MEMORY
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        194,  # REQUIRED_PASSWORD
        195,  # IP_ADDRESS_NOT_ALLOWED
        198,  # DNS_ERROR
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        225,  # NO_ZOOKEEPER
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        243,  # NOT_ENOUGH_SPACE
        252,  # TOO_MANY_PARTS
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
        999,  # KEEPER_EXCEPTION
        1000,  # POCO_EXCEPTION
    }
)


def store_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the store could not take the rows now, whatever the rows were."""
    if isinstance(exc, (OSError, TimeoutError, StoreError)):
        return True
    if isinstance(exc, (OperationalError, InterfaceError, ProgrammingError)):
        return True
    if isinstance(exc, DatabaseError):
        # Without a code the engine's answer says nothing about the rows: assume the store.
        return exc.code is None or exc.code in STORE_CODES
    return False
