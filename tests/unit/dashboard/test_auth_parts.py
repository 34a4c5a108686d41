"""The auth's parts without HTTP: the admin bootstrap, files on disk, the limiter's bounds, redirects, hashing."""

from __future__ import annotations

import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from dashboard.auth.errors import BadCredentials, Busy, RateLimited
from dashboard.auth.http import local_path
from dashboard.auth.passwords import Passwords
from dashboard.auth.ratelimit import FailureWindow
from dashboard.auth.store import AuthStore
from tests.unit.dashboard.conftest import ADMIN_PASSWORD, make_harness
from vigil.access import Role


def test_first_start_generates_the_admin_password_prints_it_once_and_keeps_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = make_harness(tmp_path, admin_password="")
    err = capsys.readouterr().err
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    password = lines[lines.index(next(line for line in lines if "'admin'" in line)) + 1]
    assert len(password) >= 20 and err.count(password) == 1
    assert h.auth.login("admin", password, "127.0.0.1")
    h.auth.close()
    for f in tmp_path.iterdir():
        assert password.encode() not in f.read_bytes(), f
    # a second start says nothing and keeps the same admin
    again = make_harness(tmp_path, admin_password="")
    assert password not in capsys.readouterr().err
    assert again.auth.login("admin", password, "127.0.0.1")
    again.auth.close()


def test_admin_password_setting_resets_admin_at_each_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = make_harness(tmp_path, admin_password="")
    h.auth.close()
    h = make_harness(tmp_path, admin_password=ADMIN_PASSWORD)
    assert h.auth.login("admin", ADMIN_PASSWORD, "127.0.0.1")
    h.auth.close()
    assert ADMIN_PASSWORD not in capsys.readouterr().err


def test_auth_files_are_private(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    h.auth.login("admin", ADMIN_PASSWORD, "127.0.0.1")  # writes, so the WAL exists
    for name in ("auth.sqlite3", "auth.secret", "auth.sqlite3-wal"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    h.auth.close()


def test_a_loose_secret_file_is_tightened(tmp_path: Path) -> None:
    (tmp_path / "auth.secret").write_bytes(b"k" * 32)
    (tmp_path / "auth.secret").chmod(0o644)
    h = make_harness(tmp_path)
    assert stat.S_IMODE((tmp_path / "auth.secret").stat().st_mode) == 0o600 and h.auth.secret == b"k" * 32
    h.auth.close()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/gpus/GPU-1?range=1h", "/gpus/GPU-1?range=1h"),
        ("/", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("evil.example", "/"),
        ("/\r\nSet-Cookie:x", "/"),
        (None, "/"),
        ("/" + "a" * 3000, "/"),
    ],
)
def test_local_path(target: str | None, expected: str) -> None:
    assert local_path(target) == expected


def test_failure_window_is_bounded_and_slides() -> None:
    w = FailureWindow(max_failures=3, window_s=10, max_keys=100)
    for i in range(10_000):
        w.fail(f"10.0.{i // 256}.{i % 256}", now=float(i))
    assert len(w) == 100
    w.fail("x" * 10_000, now=0.0)  # keys are cut, so a long one costs no more than 256 characters
    assert all(len(k) <= 256 for k in w._failures)
    for t in (0.0, 1.0, 2.0):
        w.fail("a", t)
    assert w.retry_after("a", 2.0) == 8
    assert w.retry_after("a", 10.5) == 0  # the first failure left the window
    w.clear("a")
    assert w.retry_after("a", 3.0) == 0


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified += 1
        return super().verify(hash, password)


def test_an_unknown_user_costs_one_argon2_verify_like_a_known_one(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    hasher = CountingHasher()
    h.auth.passwords = Passwords(hasher)
    h.auth.store.set_admin("admin", h.auth.passwords.hash(ADMIN_PASSWORD), 0)
    for user in ("admin", "nobody"):
        before = hasher.verified
        with pytest.raises(BadCredentials):
            h.auth.login(user, "wrong password!", "10.0.0.9")
        assert hasher.verified == before + 1, user
    h.auth.close()


def test_rate_limited_login_says_when_to_retry(tmp_path: Path) -> None:
    h = make_harness(tmp_path, login_max_failures=2, login_window_s=30)
    for _ in range(2):
        with pytest.raises(BadCredentials):
            h.auth.login("admin", "wrong password!", "10.0.0.7")
    with pytest.raises(RateLimited) as caught:
        h.auth.login("admin", ADMIN_PASSWORD, "10.0.0.8")
    assert caught.value.retry_after_s == 30
    h.auth.close()


def test_password_checks_are_bounded_in_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboard.auth.passwords as passwords

    monkeypatch.setattr(passwords, "CHECK_WAIT_S", 0.05)
    p = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    for _ in range(passwords.CONCURRENT_CHECKS):
        p._slots.acquire()
    with pytest.raises(Busy):
        p.verify(None, "x")


def test_store_is_safe_across_threads(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.sqlite3")
    errors: list[Any] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                store.add_session(f"{n}-{i}".encode(), "u", 0.0, 100.0)
                store.session_user(f"{n}-{i}".encode(), 1.0)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    store.add_user("u", Role.VIEWER, "hash", 0.0)
    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and store.count_sessions(1.0) == 400
    store.close()
