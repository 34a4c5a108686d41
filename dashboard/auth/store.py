"""Users, API tokens and sessions in one SQLite file beside the metrics store, never inside it.

Viewers may run read-only SQL on the metrics store (`POST /api/v1/query`); password hashes must
never be reachable from there, so auth keeps its own file, `<data>/auth.sqlite3`, mode 0600.
Secrets are held only as digests: argon2id for passwords, SHA-256 for API tokens and session ids
(both 32 random bytes, so a fast digest is enough). One connection behind one lock: FastAPI runs
sync routes and dependencies in threads, and each statement here takes microseconds.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dashboard.auth.errors import Conflict, NotFound
from vigil.access import Role

FILE_MODE = 0o600
LAST_USED_EVERY_S = 60.0  # a token's last use is written at most this often, not on every request

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_sha256 BLOB NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    last_used_at REAL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    id_sha256 BLOB PRIMARY KEY,
    user TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);
"""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    created_at: float
    disabled: bool


@dataclass(frozen=True)
class ApiToken:
    id: str
    name: str
    role: Role
    created_by: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked: bool


def create_private(path: Path) -> None:
    """Create `path` (if absent) readable by this user only, and tighten it if it was looser."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
    if path.stat().st_mode & 0o077:
        path.chmod(FILE_MODE)


class AuthStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        create_private(path)  # SQLite gives its -wal and -shm files the database file's mode
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._tx() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self, atomic: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection under the lock; `atomic`: the statements inside commit together or not at all."""
        with self._lock:
            if not atomic:
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def ping(self) -> None:
        with self._tx() as db:
            db.execute("SELECT 1").fetchone()

    # -- users ---------------------------------------------------------------------------------

    def users(self) -> list[User]:
        with self._tx() as db:
            rows = db.execute("SELECT name, role, created_at, disabled FROM users ORDER BY name").fetchall()
        return [User(n, Role.parse(r), c, bool(d)) for n, r, c, d in rows]

    def user(self, name: str) -> User | None:
        with self._tx() as db:
            row = db.execute("SELECT role, created_at, disabled FROM users WHERE name = ?", (name,)).fetchone()
        return User(name, Role.parse(row[0]), row[1], bool(row[2])) if row else None

    def credentials(self, name: str) -> tuple[Role, str] | None:
        """The role and password hash of an enabled user, or None."""
        with self._tx() as db:
            row = db.execute(
                "SELECT role, password_hash FROM users WHERE name = ? AND disabled = 0", (name,)
            ).fetchone()
        return (Role.parse(row[0]), row[1]) if row else None

    def add_user(self, name: str, role: Role, password_hash: str, now: float) -> None:
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                    (name, role.label, password_hash, now),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"user {name!r} exists already") from None

    def set_admin(self, name: str, password_hash: str, now: float) -> None:
        """Create or reset the bootstrap admin: the admin role, enabled, this password; its sessions end."""
        with self._tx(atomic=True) as db:
            db.execute(
                "INSERT INTO users (name, role, password_hash, created_at) VALUES (?, 'admin', ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET role = 'admin', password_hash = excluded.password_hash, disabled = 0",
                (name, password_hash, now),
            )
            db.execute("DELETE FROM sessions WHERE user = ?", (name,))

    def update_user(
        self,
        name: str,
        *,
        role: Role | None = None,
        password_hash: str | None = None,
        disabled: bool | None = None,
    ) -> User:
        """Change what is given; a new password or disabling ends the user's sessions."""
        with self._tx(atomic=True) as db:
            row = db.execute("SELECT role, created_at, disabled FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no user {name!r}")
            new_role = role if role is not None else Role.parse(row[0])
            new_disabled = disabled if disabled is not None else bool(row[2])
            if new_role < Role.ADMIN or new_disabled:
                self._keep_an_admin(db, name)
            db.execute(
                "UPDATE users SET role = ?, disabled = ?, password_hash = COALESCE(?, password_hash) WHERE name = ?",
                (new_role.label, int(new_disabled), password_hash, name),
            )
            if password_hash is not None or new_disabled:
                db.execute("DELETE FROM sessions WHERE user = ?", (name,))
        return User(name, new_role, row[1], new_disabled)

    def delete_user(self, name: str) -> None:
        with self._tx(atomic=True) as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
                raise NotFound(f"no user {name!r}")
            self._keep_an_admin(db, name)
            db.execute("DELETE FROM users WHERE name = ?", (name,))
            db.execute("DELETE FROM sessions WHERE user = ?", (name,))

    @staticmethod
    def _keep_an_admin(db: sqlite3.Connection, losing: str) -> None:
        (left,) = db.execute(
            "SELECT count() FROM users WHERE role = 'admin' AND disabled = 0 AND name != ?", (losing,)
        ).fetchone()
        (was_admin,) = db.execute(
            "SELECT count() FROM users WHERE name = ? AND role = 'admin' AND disabled = 0", (losing,)
        ).fetchone()
        if was_admin and not left:
            raise Conflict(f"{losing!r} is the last enabled admin: make another admin first")

    # -- sessions ------------------------------------------------------------------------------

    def add_session(self, id_sha256: bytes, user: str, now: float, expires_at: float) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))  # expired ones go as new ones come
            db.execute(
                "INSERT INTO sessions (id_sha256, user, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (id_sha256, user, now, expires_at),
            )

    def session_user(self, id_sha256: bytes, now: float) -> tuple[str, Role] | None:
        """The enabled user of a live session, with the role the user holds now."""
        with self._tx() as db:
            row = db.execute(
                "SELECT u.name, u.role FROM sessions s JOIN users u ON u.name = s.user "
                "WHERE s.id_sha256 = ? AND s.expires_at > ? AND u.disabled = 0",
                (id_sha256, now),
            ).fetchone()
        return (row[0], Role.parse(row[1])) if row else None

    def end_session(self, id_sha256: bytes) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE id_sha256 = ?", (id_sha256,))

    def count_sessions(self, now: float) -> int:
        with self._tx() as db:
            return int(db.execute("SELECT count() FROM sessions WHERE expires_at > ?", (now,)).fetchone()[0])

    # -- API tokens ----------------------------------------------------------------------------

    def add_token(
        self, token_id: str, name: str, role: Role, sha256: bytes, created_by: str, now: float, expires_at: float | None
    ) -> ApiToken:
        with self._tx() as db:
            db.execute(
                "INSERT INTO api_tokens (id, name, role, token_sha256, created_by, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_id, name, role.label, sha256, created_by, now, expires_at),
            )
        return ApiToken(token_id, name, role, created_by, now, expires_at, None, False)

    def tokens(self) -> list[ApiToken]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, name, role, created_by, created_at, expires_at, last_used_at, revoked "
                "FROM api_tokens ORDER BY created_at, id"
            ).fetchall()
        return [ApiToken(i, n, Role.parse(r), b, c, e, u, bool(v)) for i, n, r, b, c, e, u, v in rows]

    def revoke_token(self, token_id: str) -> None:
        with self._tx() as db:
            if not db.execute("UPDATE api_tokens SET revoked = 1 WHERE id = ?", (token_id,)).rowcount:
                raise NotFound(f"no API token {token_id!r}")

    def token_user(self, sha256: bytes, now: float) -> tuple[str, Role] | None:
        """The name and role of a live token (not revoked, not expired); notes its use."""
        with self._tx() as db:
            row = db.execute(
                "SELECT id, name, role, last_used_at FROM api_tokens WHERE token_sha256 = ? AND revoked = 0 "
                "AND (expires_at IS NULL OR expires_at > ?)",
                (sha256, now),
            ).fetchone()
            if row is None:
                return None
            if row[3] is None or now - row[3] >= LAST_USED_EVERY_S:
                db.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, row[0]))
        return row[1], Role.parse(row[2])
