"""What can go wrong in auth, typed; `dashboard/auth/http.py` is the one place these become HTTP statuses."""

from __future__ import annotations


class AuthError(Exception):
    """Base: the message is shown to the caller as it is, so it never carries a secret."""


class BadInput(AuthError):
    """A field is missing, malformed or out of bounds; the message names it."""


class TooLarge(AuthError):
    """A request body over its limit."""


class NotFound(AuthError):
    """No such user or token."""


class Conflict(AuthError):
    """The change would break an invariant: a user that exists already, or no admin left."""


class RateLimited(AuthError):
    """Too many failed logins from this address or for this user; try again after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Busy(AuthError):
    """Every password check slot is taken (each holds 64 MiB for a moment): retry shortly."""


class BadCredentials(AuthError):
    """Wrong user name or password; never says which."""
