"""Bearer tokens, held only as SHA-256 digests and compared in constant time against every one.

One mechanism for every API that takes `Authorization: Bearer <token>`: the collector's ingest
tokens, the alerting API's tokens, the workload's control token. Each caller turns a refusal into
its own error answer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


class TokenRefused(Exception):
    """The request carried no bearer token, or one that is not ours; the message says which."""


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class BearerTokens:
    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = [digest(t) for t in tokens if t]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def verify(self, authorization: str | None) -> bytes:
        """The digest of the offered token when it is one of ours; raises TokenRefused otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRefused("missing bearer token")
        offered = digest(token.strip())
        ok = False
        for known in self._digests:  # no early exit: every digest is compared
            ok |= hmac.compare_digest(offered, known)
        if not ok:
            raise TokenRefused("bearer token not recognised")
        return offered
