"""Users, roles, sessions, API tokens and CSRF: the `vigil.access` contract's implementation."""

from dashboard.auth.core import Auth

__all__ = ["Auth"]
