"""Auth inside a real `vigil up` on loopback: the generated admin password, logins, roles, CSRF, headers, exposure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import VigilServer
from tests.local import ROOT

BANNER = re.compile(r"Vigil made the user 'admin' with this password[^\n]*\n\s*\n\s*(\S+)\s*\n")


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def login(url: str, user: str, password: str) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=10, follow_redirects=False)
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": user, "password": password, "csrf_token": token, "next": "/admin"})
    assert r.status_code == 303 and r.headers["location"] == "/admin", r.text
    return c


def test_auth_in_vigil_up(make_server: Any) -> None:
    server: VigilServer = make_server({"VIGIL_DEFAULT_RULES": "0", "VIGIL_ADMIN_PASSWORD": ""}).start()
    log = server.log.read_text()
    (password,) = BANNER.findall(log)
    assert log.count(password) == 1
    for path in server.data.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    for name in ("auth.sqlite3", "auth.secret"):
        assert (server.data / name).stat().st_mode & 0o077 == 0, name

    url = server.url
    anonymous = httpx.Client(base_url=url, timeout=10, follow_redirects=False)
    for path in ("/healthz", "/metrics"):  # outside the login
        assert anonymous.get(path).status_code == 200, path
    r = anonymous.get("/api/v1/alerts")
    assert r.status_code == 401 and r.headers["content-type"] == "application/json"
    r = anonymous.get("/admin")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/admin"
    for r in (anonymous.get("/healthz"), anonymous.get("/login"), anonymous.get("/api/v1/alerts")):
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"

    admin = login(url, "admin", password)
    session = next(h for h in admin.cookies.jar if h.name == "vigil_session")
    assert session.has_nonstandard_attr("HttpOnly") and not session.secure
    page = admin.get("/admin")
    assert page.status_code == 200 and "Users and API tokens" in page.text
    token = csrf_of(page.text)
    silence = {
        "matchers": [{"name": "alertname", "value": "X", "isRegex": False, "isEqual": True}],
        "duration_s": 600,
        "comment": "maintenance",
    }
    assert admin.post("/api/v1/silences", json=silence).status_code == 403  # no CSRF token
    r = admin.post("/api/v1/silences", json=silence, headers={"X-CSRF-Token": token})
    assert r.status_code == 200, r.text
    (made,) = admin.get("/api/v1/silences").json()
    assert made["createdBy"] == "admin"

    h = {"X-CSRF-Token": token}
    user = {"name": "vera", "role": "viewer", "password": "vera's long password"}
    assert admin.post("/api/v1/users", json=user, headers=h).status_code == 201
    vera = login(url, "vera", "vera's long password")
    assert vera.get("/api/v1/alerts").status_code == 200
    assert vera.post("/api/v1/silences", json=silence).status_code == 403
    r = admin.post("/api/v1/tokens", json={"name": "script", "role": "operator"}, headers=h)
    bearer = {"Authorization": f"Bearer {r.json()['token']}"}
    assert httpx.get(f"{url}/api/v1/silences", headers=bearer, timeout=10).status_code == 200
    r = httpx.delete(f"{url}/api/v1/silence/{made['id']}", headers=bearer, timeout=10)
    assert r.status_code == 200  # an operator's token, no CSRF token needed

    r = admin.post("/logout", data={"csrf_token": token})
    assert r.status_code == 303
    assert admin.get("/api/v1/alerts").status_code == 401

    # a second start keeps the admin and prints no password
    server.stop()
    server.start()
    assert server.log.read_text().count(password) == 1
    login(url, "admin", password)


def test_up_beyond_loopback_needs_ingest_tokens(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VIGIL_INGEST_TOKENS"}
    out = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "up", "--host", "0.0.0.0", "--data", str(tmp_path), "--port", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert out.returncode == 1 and "VIGIL_INGEST_TOKENS" in out.stderr and "--allow-insecure" in out.stderr
    assert not (tmp_path / "clickhouse").exists()  # refused before anything was opened
