"""The auth's routes on the real `Auth` (SQLite, argon2, CSRF): who may do what, and what a refusal looks like."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.auth import core, csrf
from dashboard.auth.http import LOGIN_COOKIE, SESSION_COOKIE
from tests.unit.dashboard.conftest import ADMIN_PASSWORD, Harness, csrf_of, login_token

STATIC = {"Authorization": "Bearer static-tok"}


def test_anonymous_api_gets_401_json_and_a_page_a_redirect_to_login(harness: Harness) -> None:
    c = harness.client()
    r = c.get("/api/v1/probe")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"] == "application/json" and r.json()["detail"]
    r = c.get("/page?x=1")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/page%3Fx%3D1"
    r = c.get("/admin")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/admin")
    for path in ("/api/v1/users", "/api/v1/tokens"):
        assert c.get(path).status_code == 401


def test_login_sets_a_session_cookie_with_the_right_flags(harness: Harness) -> None:
    c = harness.client()
    token = login_token(c)
    r = c.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token, "next": "/page"})
    assert r.status_code == 303 and r.headers["location"] == "/page"
    (cookie,) = [h for h in r.headers.get_list("set-cookie") if h.startswith(f"{SESSION_COOKIE}=")]
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "samesite"} <= flags and "secure" not in flags  # plain HTTP on loopback
    assert "samesite=lax" in cookie.lower() and "path=/" in cookie.lower()
    assert c.get("/page").json() == {"name": "admin"}
    assert c.get("/api/v1/probe").json() == {"name": "admin", "role": "admin", "via": "session"}
    # over TLS the cookie is Secure
    s = harness.client(base_url="https://testserver")
    r = s.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": login_token(s)})
    assert r.status_code == 303
    assert any("secure" in h.lower() for h in r.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x", ""])
def test_next_is_never_an_open_redirect(harness: Harness, target: str) -> None:
    c = harness.client()
    data = {"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": login_token(c), "next": target}
    r = c.post("/login", data=data)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_the_login_form_needs_its_csrf_token(harness: Harness) -> None:
    c = harness.client()
    login_token(c)  # the nonce cookie, but not the form's token
    r = c.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": "forged"})
    assert r.status_code == 403 and SESSION_COOKIE not in c.cookies
    other = harness.client()  # a token from the page, but no nonce cookie (another site's form)
    token = login_token(other)
    r = harness.client().post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})
    assert r.status_code == 403


def test_wrong_password_and_unknown_user_answer_alike(harness: Harness) -> None:
    c = harness.client()
    pages = []
    for user in ("admin", "nobody"):
        r = c.post("/login", data={"username": user, "password": "wrong password!", "csrf_token": login_token(c)})
        assert r.status_code == 401 and SESSION_COOKIE not in c.cookies
        pages.append(r.text.replace(csrf_of(r.text), ""))
    assert pages[0] == pages[1] and "wrong user name or password" in pages[0]


def test_bad_login_input_is_refused_with_a_message(harness: Harness) -> None:
    c = harness.client()
    token = login_token(c)
    r = c.post("/login", data={"username": "x" * 300, "password": "p", "csrf_token": token})
    assert r.status_code == 400 and "at most 256" in r.text
    r = c.post("/login", data={"username": "", "password": "p", "csrf_token": token})
    assert r.status_code == 400 and "username: required" in r.text
    r = c.post("/login", content=b"a=" + b"x" * 9000, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    r = c.post("/login", json={"username": "admin"})
    assert r.status_code == 400 and "x-www-form-urlencoded" in r.text


def test_login_rate_limit_per_address_and_per_user(tmp_path: Any) -> None:
    from tests.unit.dashboard.conftest import make_harness

    h = make_harness(tmp_path, login_max_failures=3, login_window_s=60)
    try:
        c = h.client("10.0.0.1")

        def attempt(client: Any, user: str, password: str) -> Any:
            data = {"username": user, "password": password, "csrf_token": login_token(client)}
            return client.post("/login", data=data)

        for i in range(3):
            assert attempt(c, f"user{i}", "wrong password!").status_code == 401
        r = attempt(c, "admin", ADMIN_PASSWORD)  # right, but this address is over its limit
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60 and "address" in r.text
        # per user: three addresses, one failure each, lock the user everywhere
        for i in range(3):
            assert attempt(h.client(f"10.0.1.{i}"), "admin", "wrong password!").status_code == 401
        r = attempt(h.client("10.0.2.1"), "admin", ADMIN_PASSWORD)
        assert r.status_code == 429 and "user" in r.text
        h.clock.now += 61  # the window passes
        assert attempt(h.client("10.0.2.1"), "admin", ADMIN_PASSWORD).status_code == 303
        assert attempt(c, "admin", ADMIN_PASSWORD).status_code == 303
    finally:
        h.auth.close()


def test_session_writes_need_the_csrf_token_and_bearer_writes_do_not(harness: Harness) -> None:
    c = harness.login()
    assert c.post("/api/v1/probe").status_code == 403
    assert c.post("/api/v1/probe", headers={"X-CSRF-Token": "nope"}).status_code == 403
    page = c.get("/admin").text
    token = csrf_of(page)
    assert f'<meta name="csrf-token" content="{token}">' in page
    assert c.post("/api/v1/probe", headers={"X-CSRF-Token": token}).status_code == 200
    assert c.post("/api/v1/probe", data={"csrf_token": token}).status_code == 200  # as a form field
    # another session's token is not this one's
    other = harness.login()
    assert other.post("/api/v1/probe", headers={"X-CSRF-Token": token}).status_code == 403
    assert harness.client().post("/api/v1/probe", headers=STATIC).status_code == 200


def test_logout_ends_the_session_and_needs_the_csrf_token(harness: Harness) -> None:
    c = harness.login()
    session = c.cookies[SESSION_COOKIE]
    assert c.post("/logout").status_code == 403
    assert c.get("/api/v1/probe").status_code == 200
    r = c.post("/logout", data={"csrf_token": csrf_of(c.get("/admin").text)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    stolen = harness.client(cookies={SESSION_COOKIE: session})
    assert stolen.get("/api/v1/probe").status_code == 401  # ended on the server, not only forgotten
    assert harness.client().post("/logout").status_code == 303  # already out: back to the login form


def test_a_session_expires(harness: Harness) -> None:
    c = harness.login()
    harness.clock.now += harness.auth.session_s + 1
    assert c.get("/api/v1/probe").status_code == 401


def admin_headers(c: Any) -> dict[str, str]:
    return {"X-CSRF-Token": csrf_of(c.get("/admin").text)}


def test_users_api_roles_and_guards(harness: Harness) -> None:
    admin = harness.login()
    h = admin_headers(admin)
    body = {"name": "vera", "role": "viewer", "password": "vera's long password"}
    assert admin.post("/api/v1/users", json=body).status_code == 403  # no CSRF token
    r = admin.post("/api/v1/users", json=body, headers=h)
    assert r.status_code == 201 and r.json()["role"] == "viewer"
    assert admin.post("/api/v1/users", json=body, headers=h).status_code == 409
    for bad, says in [
        ({**body, "name": "o'brien"}, "name"),
        ({**body, "name": "otto", "password": "short"}, "at least 12"),
        ({**body, "name": "otto", "role": "root"}, "role"),
        ({**body, "name": "otto", "extra": 1}, "extra"),
    ]:
        r = admin.post("/api/v1/users", json=bad, headers=h)
        assert r.status_code == 400 and says in r.json()["detail"], bad
    names = {u["name"]: u["role"] for u in admin.get("/api/v1/users").json()["users"]}
    assert names == {"admin": "admin", "vera": "viewer"}

    vera = harness.login("vera", "vera's long password")
    assert vera.get("/api/v1/probe").status_code == 200
    assert vera.post("/api/v1/probe").status_code == 403  # a viewer may not write
    assert vera.get("/api/v1/users").status_code == 403
    assert vera.get("/admin").status_code == 403

    r = admin.patch("/api/v1/users/vera", json={"role": "operator"}, headers=h)
    assert r.status_code == 200 and r.json()["role"] == "operator"
    assert vera.get("/api/v1/probe").json()["role"] == "operator"  # at once, same session
    assert admin.patch("/api/v1/users/vera", json={"disabled": True}, headers=h).json()["disabled"] is True
    assert vera.get("/api/v1/probe").status_code == 401  # disabling ends the sessions
    assert admin.patch("/api/v1/users/nobody", json={"disabled": True}, headers=h).status_code == 404
    # the last admin can be neither demoted, disabled nor deleted
    assert admin.patch("/api/v1/users/admin", json={"role": "viewer"}, headers=h).status_code == 409
    assert admin.patch("/api/v1/users/admin", json={"disabled": True}, headers=h).status_code == 409
    assert admin.delete("/api/v1/users/admin", headers=h).status_code == 409
    assert admin.delete("/api/v1/users/vera").status_code == 403
    assert admin.delete("/api/v1/users/vera", headers=h).status_code == 200
    assert admin.delete("/api/v1/users/vera", headers=h).status_code == 404


def test_password_change_ends_the_users_sessions(harness: Harness) -> None:
    admin = harness.login()
    h = admin_headers(admin)
    admin.post("/api/v1/users", json={"name": "olga", "role": "operator", "password": "first long password"}, headers=h)
    olga = harness.login("olga", "first long password")
    r = admin.patch("/api/v1/users/olga", json={"password": "second long password"}, headers=h)
    assert r.status_code == 200
    assert olga.get("/api/v1/probe").status_code == 401
    harness.login("olga", "second long password")


def test_api_tokens_are_shown_once_stored_hashed_and_revocable(harness: Harness) -> None:
    admin = harness.login()
    h = admin_headers(admin)
    r = admin.post("/api/v1/tokens", json={"name": "ci", "role": "operator", "expires_days": 1}, headers=h)
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    made = r.json()
    token = made["token"]
    assert token.startswith("vgl_") and made["role"] == "operator" and made["createdBy"] == "admin"
    listed = admin.get("/api/v1/tokens").json()["tokens"]
    assert [t["id"] for t in listed] == [made["id"]] and "token" not in listed[0]
    assert token.encode() not in (harness.data / "auth.sqlite3").read_bytes()

    bearer = harness.client()
    auth = {"Authorization": f"Bearer {token}"}
    assert bearer.get("/api/v1/probe", headers=auth).json() == {"name": "ci", "role": "operator", "via": "token"}
    assert bearer.post("/api/v1/probe", headers=auth).status_code == 200  # a token needs no CSRF token
    assert bearer.get("/api/v1/users", headers=auth).status_code == 403  # operator, not admin
    assert admin.get("/api/v1/tokens").json()["tokens"][0]["lastUsedAt"] is not None

    assert admin.delete(f"/api/v1/tokens/{made['id']}").status_code == 403  # CSRF
    assert admin.delete(f"/api/v1/tokens/{made['id']}", headers=h).status_code == 200
    assert bearer.get("/api/v1/probe", headers=auth).status_code == 401
    assert admin.delete("/api/v1/tokens/nope", headers=h).status_code == 404
    r = admin.post("/api/v1/tokens", json={"name": "x", "role": "viewer", "expires_days": -1}, headers=h)
    assert r.status_code == 400 and "expires_days" in r.json()["detail"]
    # expiry
    r = admin.post("/api/v1/tokens", json={"name": "brief", "role": "viewer", "expires_days": 1}, headers=h)
    short = {"Authorization": f"Bearer {r.json()['token']}"}
    assert bearer.get("/api/v1/probe", headers=short).status_code == 200
    harness.clock.now += 86401
    assert bearer.get("/api/v1/probe", headers=short).status_code == 401


def test_a_wrong_bearer_is_refused_even_with_a_session_cookie(harness: Harness) -> None:
    c = harness.login()
    assert c.get("/api/v1/probe", headers={"Authorization": "Bearer vgl_forged"}).status_code == 401
    assert c.get("/api/v1/probe", headers={"Authorization": "Basic YWRtaW46eA=="}).status_code == 401
    assert c.get("/api/v1/probe", headers=STATIC).json()["via"] == "token"


def test_every_admin_route_refuses_without_login_role_or_csrf(harness: Harness) -> None:
    admin = harness.login()
    h = admin_headers(admin)
    admin.post("/api/v1/users", json={"name": "vic", "role": "operator", "password": "vic's long password"}, headers=h)
    made = admin.post("/api/v1/tokens", json={"name": "t", "role": "viewer"}, headers=h).json()
    operator = harness.login("vic", "vic's long password")
    own_csrf = {"X-CSRF-Token": csrf.session_token(harness.auth.secret, operator.cookies[SESSION_COOKIE])}
    assert operator.post("/api/v1/probe", headers=own_csrf).status_code == 200  # the token is right
    writes: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/v1/users", {"json": {"name": "z", "role": "viewer", "password": "z's long password"}}),
        ("PATCH", "/api/v1/users/vic", {"json": {"role": "viewer"}}),
        ("DELETE", "/api/v1/users/vic", {}),
        ("POST", "/api/v1/tokens", {"json": {"name": "t2", "role": "viewer"}}),
        ("DELETE", f"/api/v1/tokens/{made['id']}", {}),
        ("POST", "/admin/users", {"data": {"name": "z", "role": "viewer", "password": "z's long password"}}),
        ("POST", "/admin/users/vic", {"data": {"action": "disable"}}),
        ("POST", "/admin/tokens", {"data": {"name": "t3", "role": "viewer"}}),
        ("POST", f"/admin/tokens/{made['id']}/revoke", {"data": {}}),
    ]
    for method, path, kwargs in writes:
        anonymous = harness.client().request(method, path, **kwargs)
        assert anonymous.status_code in (401, 303), (method, path)
        # the operator, even with its own valid CSRF token, lacks the role
        assert operator.request(method, path, **kwargs, headers=own_csrf).status_code == 403, (method, path)
        assert admin.request(method, path, **kwargs).status_code == 403, (method, path)  # no CSRF token
    # nothing changed
    assert {u["name"]: (u["role"], u["disabled"]) for u in admin.get("/api/v1/users").json()["users"]} == {
        "admin": ("admin", False),
        "vic": ("operator", False),
    }
    assert [t["revoked"] for t in admin.get("/api/v1/tokens").json()["tokens"]] == [False]


def test_the_admin_page_forms(harness: Harness) -> None:
    admin = harness.login()
    token = csrf_of(admin.get("/admin").text)
    pat = {"csrf_token": token, "name": "pat", "role": "viewer", "password": "pat's password!"}
    r = admin.post("/admin/users", data=pat)
    assert r.status_code == 303 and r.headers["location"].startswith("/admin?done=")
    r = admin.post("/admin/users/pat", data={"csrf_token": token, "action": "role", "role": "operator"})
    assert r.status_code == 303
    r = admin.post("/admin/users", data=pat)
    assert r.status_code == 409 and "exists already" in r.text
    r = admin.post("/admin/tokens", data={"csrf_token": token, "name": "<script>x</script>", "role": "viewer"})
    assert r.status_code == 200 and "vgl_" in r.text and "<script>x" not in r.text and "&lt;script&gt;" in r.text
    assert r.headers["cache-control"] == "no-store"
    r = admin.post("/admin/users/pat", data={"csrf_token": token, "action": "explode"})
    assert r.status_code == 400
    page = admin.get("/admin").text
    assert "pat" in page and "operator" in page


def test_security_headers_on_every_answer(harness: Harness) -> None:
    c = harness.client()
    for r in (c.get("/login"), c.get("/api/v1/probe"), c.get("/page"), c.get("/nowhere")):
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "same-origin"


def test_login_nonce_cookie_is_scoped_to_the_login_form(harness: Harness) -> None:
    r = harness.client().get("/login")
    (cookie,) = [h for h in r.headers.get_list("set-cookie") if h.startswith(f"{LOGIN_COOKIE}=")]
    assert "path=/login" in cookie.lower() and "httponly" in cookie.lower()


def test_only_a_request_that_reads_the_auth_database_pays_a_threadpool_hop(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[str] = []
    real = core.run_in_threadpool

    async def counted(func: Any, *args: Any) -> Any:
        hops.append(func.__name__)
        return await real(func, *args)

    monkeypatch.setattr(core, "run_in_threadpool", counted)
    c = harness.login()
    admin = admin_headers(c)
    token = c.post("/api/v1/tokens", json={"name": "ci", "role": "viewer", "expires_days": 1}, headers=admin).json()
    hops.clear()
    bare = harness.client()
    assert bare.get("/api/v1/probe", headers=STATIC).json()["via"] == "token"  # a static token: in memory
    assert bare.get("/api/v1/probe").status_code == 401  # nothing offered
    assert hops == []
    assert bare.get("/api/v1/probe", headers={"Authorization": f"Bearer {token['token']}"}).json()["name"] == "ci"
    assert c.get("/api/v1/probe").json()["via"] == "session"
    assert hops == ["authenticate", "authenticate"]  # a stored token and a session: the database, off the loop
