"""`vigil up` beyond loopback needs ingest tokens (or --allow-insecure, loudly); `vigil settings` shows no secret."""

from __future__ import annotations

import json
import logging

import pytest

from vigil.cli import check_exposure, is_loopback, load_settings, main
from vigil.errors import CliError
from vigil.settings import Settings


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("vigil.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_beyond_loopback_without_ingest_tokens_is_refused_naming_the_setting() -> None:
    with pytest.raises(CliError) as caught:
        check_exposure(Settings(host="0.0.0.0"), allow_insecure=False)
    assert "VIGIL_INGEST_TOKENS" in str(caught.value) and "--allow-insecure" in str(caught.value)
    check_exposure(Settings(host="0.0.0.0", ingest_tokens=["t"]), allow_insecure=False)
    check_exposure(Settings(host="127.0.0.1"), allow_insecure=False)


def test_allow_insecure_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_exposure(Settings(host="0.0.0.0"), allow_insecure=True)
    (record,) = [r for r in caplog.records if r.getMessage() == "insecure_exposure"]
    assert record.levelno == logging.WARNING and "VIGIL_INGEST_TOKENS" in str(record.fields)  # type: ignore[attr-defined]


def test_up_refuses_before_opening_anything(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--host", "0.0.0.0", "--data", str(tmp_path), "--no-agent", "--no-workload"]) == 1
    assert "VIGIL_INGEST_TOKENS" in capsys.readouterr().err


def test_secrets_are_not_printed_by_vigil_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIGIL_ADMIN_PASSWORD", "very secret admin pw")
    monkeypatch.setenv("VIGIL_API_TOKENS", "api-secret")
    monkeypatch.setenv("VIGIL_INGEST_TOKENS", "ingest-secret")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert "admin_password" not in shown and "api_tokens" not in shown
    assert "very secret" not in out and "api-secret" not in out and "ingest-secret" not in out
    assert "very secret" not in repr(load_settings())


def test_a_short_admin_password_is_refused() -> None:
    with pytest.raises(CliError, match=r"VIGIL_ADMIN_PASSWORD: .*at least 12"):
        load_settings(admin_password="short")
