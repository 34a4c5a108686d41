"""CSRF tokens: HMAC of the session id under a server secret; the login form's, HMAC of a cookie nonce.

A session's token needs no storage and changes with the session; a page from another site can
read neither the cookie nor the page, so it cannot send the token. Before login there is no
session: the form carries HMAC(secret, nonce) and a cookie carries the nonce (a signed double
submit, so a cookie planted by a neighbouring subdomain is worth nothing without the secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from vigil.logs import event

log = logging.getLogger(__name__)

SECRET_BYTES = 32
HEADER = "X-CSRF-Token"
FIELD = "csrf_token"


def load_secret(path: Path) -> bytes:
    """The server's CSRF secret from `path`, made (0600) at first start; kept so logins survive restarts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
            event(log, "auth_secret_mode_fixed", level=logging.WARNING, path=path)
        secret = path.read_bytes()
        if len(secret) >= SECRET_BYTES:
            return secret
        path.unlink()  # truncated (a crash between create and write): a new one only logs everyone out
        return load_secret(path)
    with os.fdopen(fd, "wb") as f:
        secret = secrets.token_bytes(SECRET_BYTES)
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    return secret


def _mac(secret: bytes, purpose: str, value: str) -> str:
    digest = hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def session_token(secret: bytes, session_id: str) -> str:
    return _mac(secret, "session", session_id)


def login_token(secret: bytes, nonce: str) -> str:
    return _mac(secret, "login", nonce)


def same(offered: str | None, expected: str) -> bool:
    """Constant-time equality; a missing or empty offer never matches."""
    if not offered:
        return False
    return hmac.compare_digest(offered.encode(), expected.encode())
