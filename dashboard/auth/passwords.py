"""Password hashes (argon2id), checked a few at a time, and at the same cost whether the user exists or not."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from dashboard.auth.errors import BadInput, Busy

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; a cap keeps a megabyte "password" from being hashed at all
# Each check holds argon2's 64 MiB for ~50 ms: a burst of logins is queued, not allowed to take the machine's memory.
CONCURRENT_CHECKS = 2
CHECK_WAIT_S = 10.0


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise BadInput(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise BadInput(f"password: at most {MAX_PASSWORD} characters")


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()  # argon2id, RFC 9106's second recommended parameters
        self._slots = threading.BoundedSemaphore(CONCURRENT_CHECKS)
        # verified against when the user is unknown or disabled, so the answer takes as long as for a real one
        self._dummy = self._hasher.hash("vigil: no such user")

    def hash(self, password: str) -> str:
        with self._slot():
            return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`; with `stored` None, the same work against a dummy hash, then False."""
        with self._slot():
            try:
                return self._hasher.verify(stored or self._dummy, password) and stored is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=CHECK_WAIT_S):
            raise Busy("too many password checks at once; retry in a few seconds")
        try:
            yield
        finally:
            self._slots.release()
