"""Managing users and API tokens: what `/api/v1/users`, `/api/v1/tokens` and `/admin` share.

Checks every field (names, roles, passwords, lifetimes) and leaves hashing to `Passwords` and
storage to `AuthStore`; an API token is shown once, when made, and kept only as its SHA-256.
"""

from __future__ import annotations

import logging
import re
import secrets

from dashboard.auth.errors import BadInput
from dashboard.auth.passwords import Passwords, check_new_password
from dashboard.auth.store import ApiToken, AuthStore, User
from vigil.access import Principal, Role
from vigil.logs import event
from vigil.tokens import digest

log = logging.getLogger(__name__)

TOKEN_PREFIX = "vgl_"
MAX_TOKEN_DAYS = 3650
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_TOKEN_NAME = 128


def check_user_name(name: str) -> str:
    if not _USER.match(name):
        raise BadInput(f"name {name[:80]!r}: 1 to 64 letters, digits and . _ @ - (starting with a letter or digit)")
    return name


def parse_role(value: str) -> Role:
    try:
        return Role.parse(value)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def check_token_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_TOKEN_NAME or not name.isprintable():
        raise BadInput(f"token name: 1 to {MAX_TOKEN_NAME} printable characters, e.g. ci-deploy")
    return name


class Accounts:
    def __init__(self, store: AuthStore, passwords: Passwords) -> None:
        self.store = store
        self.passwords = passwords

    def users(self) -> list[User]:
        return self.store.users()

    def create_user(self, by: Principal, name: str, role: str, password: str, now: float) -> User:
        name, parsed = check_user_name(name), parse_role(role)
        check_new_password(password)
        self.store.add_user(name, parsed, self.passwords.hash(password), now)
        event(log, "user_created", user=name, role=parsed.label, by=by.name)
        return User(name, parsed, now, False)

    def update_user(
        self,
        by: Principal,
        name: str,
        *,
        role: str | None = None,
        password: str | None = None,
        disabled: bool | None = None,
    ) -> User:
        parsed = parse_role(role) if role is not None else None
        hashed = None
        if password is not None:
            check_new_password(password)
            hashed = self.passwords.hash(password)
        user = self.store.update_user(name, role=parsed, password_hash=hashed, disabled=disabled)
        given = (("role", role), ("password", password), ("disabled", disabled))
        changed = ",".join(k for k, v in given if v is not None)
        event(log, "user_changed", user=name, changed=changed or "nothing", by=by.name)
        return user

    def delete_user(self, by: Principal, name: str) -> None:
        self.store.delete_user(name)
        event(log, "user_deleted", user=name, by=by.name)

    def tokens(self) -> list[ApiToken]:
        return self.store.tokens()

    def create_token(
        self, by: Principal, name: str, role: str, expires_days: float | None, now: float
    ) -> tuple[str, ApiToken]:
        """(the token itself, shown once; what is kept of it)."""
        name, parsed = check_token_name(name), parse_role(role)
        if parsed > by.role:
            raise BadInput(f"role: a {by.role.label} cannot make an {parsed.label} token")
        if expires_days is not None and not 0 < expires_days <= MAX_TOKEN_DAYS:
            raise BadInput(f"expires_days: more than 0, at most {MAX_TOKEN_DAYS}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = now + expires_days * 86400 if expires_days is not None else None
        info = self.store.add_token(secrets.token_hex(8), name, parsed, digest(token), by.name, now, expires_at)
        event(log, "api_token_created", id=info.id, name=name, role=parsed.label, by=by.name)
        return token, info

    def revoke_token(self, by: Principal, token_id: str) -> None:
        if len(token_id) > 64:
            raise BadInput("token id too long")
        self.store.revoke_token(token_id)
        event(log, "api_token_revoked", id=token_id, by=by.name)
