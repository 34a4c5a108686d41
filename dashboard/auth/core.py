"""`Auth`: who is asking (a bearer token or the login cookie), logins, sessions and the CSRF check.

What `vigil.access` declares and `DashboardService` binds: `authenticate(request)` answers the
principal and leaves it, with the session's CSRF token, on `request.state` for `render()`;
`check_csrf(request)` guards writes made with the login cookie.
"""

from __future__ import annotations

import logging
import secrets
import sys
from pathlib import Path

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from dashboard.auth import csrf
from dashboard.auth.accounts import TOKEN_PREFIX, Accounts
from dashboard.auth.errors import AuthError, BadCredentials, BadInput, RateLimited
from dashboard.auth.http import SESSION_COOKIE, is_form, read_form, status_of
from dashboard.auth.passwords import Passwords
from dashboard.auth.ratelimit import FailureWindow
from dashboard.auth.store import AuthStore
from vigil.access import Principal, Role
from vigil.kernel import Health, ServiceContext
from vigil.logs import event
from vigil.tokens import BearerTokens, TokenRefused, digest

log = logging.getLogger(__name__)

ADMIN = "admin"
STATIC_TOKEN_USER = "api-token"  # the name a VIGIL_API_TOKENS caller acts under
MAX_USERNAME = 256
MAX_PASSWORD_FIELD = 1024
MAX_COOKIE = 128  # ours are 43 characters; a longer one is not ours and is not looked up


class Auth:
    """Users, roles, sessions, API tokens and CSRF for every route of `vigil up`."""

    def __init__(self, ctx: ServiceContext, *, passwords: Passwords | None = None) -> None:
        """`passwords`: tests hand in a cheap hasher; the default is argon2id at its recommended cost."""
        from dashboard.auth.routes import build_router  # the routes call back into this class

        self.ctx = ctx
        settings = ctx.settings
        self.passwords = passwords or Passwords()
        self.static_tokens = BearerTokens(settings.api_tokens)
        self.by_address = FailureWindow(settings.login_max_failures, settings.login_window_s)
        self.by_user = FailureWindow(settings.login_max_failures, settings.login_window_s)
        self.session_s = settings.session_hours * 3600
        self._store: AuthStore | None = None
        self._secret = b""
        self.router = build_router(self)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def data(self) -> Path:
        return self.ctx.plan.data

    @property
    def store(self) -> AuthStore:
        if self._store is None:
            raise RuntimeError("auth not started")
        return self._store

    @property
    def accounts(self) -> Accounts:
        return Accounts(self.store, self.passwords)

    @property
    def secret(self) -> bytes:
        return self._secret

    def now(self) -> float:
        return self.ctx.clock() / 1e9

    def start(self) -> None:
        self._store = AuthStore(self.data / "auth.sqlite3")
        self._secret = csrf.load_secret(self.data / "auth.secret")
        self._bootstrap_admin()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def health(self) -> Health:
        return True, {"login_failures_tracked": len(self.by_address) + len(self.by_user)}

    def _bootstrap_admin(self) -> None:
        """`VIGIL_ADMIN_PASSWORD` resets `admin` at each start; without it, a first start makes one and says it once."""
        wanted = self.ctx.settings.admin_password.get_secret_value()
        if wanted:
            held = self.store.credentials(ADMIN)
            user = self.store.user(ADMIN)
            if held and user and user.role is Role.ADMIN and self.passwords.verify(held[1], wanted):
                return  # unchanged: its sessions stay
            self.store.set_admin(ADMIN, self.passwords.hash(wanted), self.now())
            event(log, "admin_password_set", user=ADMIN, source="VIGIL_ADMIN_PASSWORD")
            return
        if any(u.role is Role.ADMIN and not u.disabled for u in self.store.users()):
            return
        password = secrets.token_urlsafe(18)
        self.store.set_admin(ADMIN, self.passwords.hash(password), self.now())
        event(log, "admin_password_generated", user=ADMIN, printed="stderr, once")
        rule = "=" * 78
        sys.stderr.write(
            f"\n{rule}\n"
            f"  Vigil made the user '{ADMIN}' with this password (shown this once; only its hash is kept):\n\n"
            f"      {password}\n\n"
            f"  Log in at {self.ctx.plan.url}/login. Change it at /admin, or set VIGIL_ADMIN_PASSWORD.\n"
            f"{rule}\n\n"
        )
        sys.stderr.flush()

    # -- who is asking -------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Principal | None:
        """The caller: a bearer token when the request has an Authorization header, else the login cookie."""
        who, token = self._identify(request)
        request.state.principal = who
        request.state.csrf_token = token
        return who

    async def authenticate_request(self, request: Request) -> Principal | None:
        """`authenticate` as the routes' dependency: on the event loop when the answer needs no read of the
        auth database (a static token, nothing offered), else in the threadpool as a plain function would
        run. Every request asks this first, and each threadpool hop costs it 0.1-0.5 ms."""
        if self._reads_database(request):
            return await run_in_threadpool(self.authenticate, request)
        return self.authenticate(request)

    def _reads_database(self, request: Request) -> bool:
        """Whether `_identify` may read the auth database for `request` (its branches, erring towards yes)."""
        if self._store is None:
            return False
        authorization = request.headers.get("authorization")
        if authorization is not None:
            return authorization.partition(" ")[2].strip().startswith(TOKEN_PREFIX)
        return bool(request.cookies.get(SESSION_COOKIE))

    def _identify(self, request: Request) -> tuple[Principal | None, str]:
        if self._store is None:
            return None, ""
        authorization = request.headers.get("authorization")
        if authorization is not None:  # a script: the cookie, if any, is not looked at
            return self._bearer(authorization), ""
        session_id = request.cookies.get(SESSION_COOKIE, "")
        if not session_id or len(session_id) > MAX_COOKIE:
            return None, ""
        found = self.store.session_user(digest(session_id), self.now())
        if found is None:
            return None, ""
        return Principal(found[0], found[1], "session"), csrf.session_token(self._secret, session_id)

    def _bearer(self, authorization: str) -> Principal | None:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 512:
            return None
        if token.startswith(TOKEN_PREFIX):
            found = self.store.token_user(digest(token), self.now())
            return Principal(found[0], found[1], "token") if found else None
        try:
            self.static_tokens.verify(authorization)
        except TokenRefused:
            return None
        return Principal(STATIC_TOKEN_USER, Role.ADMIN, "token")

    async def check_csrf(self, request: Request) -> None:
        """403 unless the request carries its session's CSRF token (header `X-CSRF-Token` or form field)."""
        session_id = request.cookies.get(SESSION_COOKIE, "")
        offered = request.headers.get(csrf.HEADER)
        if offered is None and is_form(request):
            try:
                offered = (await read_form(request)).get(csrf.FIELD)
            except AuthError as exc:
                raise HTTPException(status_of(exc), str(exc)) from None
        if not session_id or not csrf.same(offered, csrf.session_token(self._secret, session_id)):
            raise HTTPException(403, "CSRF token missing or wrong: reload the page and try again")

    # -- logging in and out --------------------------------------------------------------------

    def login(self, username: str, password: str, address: str) -> str:
        """A new session id for a right password; RateLimited, BadCredentials or BadInput otherwise."""
        if not username:
            raise BadInput("username: required")
        if len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD_FIELD:
            raise BadInput(f"username at most {MAX_USERNAME} characters, password at most {MAX_PASSWORD_FIELD}")
        now = self.now()
        for what, key, limiter in (("address", address, self.by_address), ("user", username, self.by_user)):
            wait = limiter.retry_after(key, now)
            if wait:
                event(log, "login_rate_limited", level=logging.WARNING, by=what, user=username[:64], address=address)
                raise RateLimited(f"too many failed logins for this {what}; try again in {wait} s", wait)
        held = self.store.credentials(username)
        if not self.passwords.verify(held[1] if held else None, password):  # same work for unknown users
            self.by_address.fail(address, now)
            self.by_user.fail(username, now)
            event(log, "login_failed", level=logging.WARNING, user=username[:64], address=address)
            raise BadCredentials("wrong user name or password")
        self.by_user.clear(username)
        session_id = secrets.token_urlsafe(32)
        self.store.add_session(digest(session_id), username, now, now + self.session_s)
        event(log, "login", user=username, address=address)
        return session_id

    def logout(self, request: Request) -> None:
        session_id = request.cookies.get(SESSION_COOKIE, "")
        if session_id and len(session_id) <= MAX_COOKIE:
            self.store.end_session(digest(session_id))
