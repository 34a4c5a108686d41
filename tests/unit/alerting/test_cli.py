"""`vigil alerting check` and `vigil alerting silence` (the latter against a fake API over httpx)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import httpx
import pytest

from alerting import cli
from alerting.rules import default_pack
from vigil.cli import main
from vigil.errors import CliError


def test_check_passes_the_pack_and_names_the_line_of_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["alerting", "check", *map(str, default_pack())]) == 0
    assert "warning" not in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: X\n"
        "        op: '>'\n        threshold: 1\n        expr: {metric: gpu.nope}\n"
    )
    assert main(["alerting", "check", str(bad), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report[str(bad)]["error"].startswith(f"{bad}:7: ")


def test_check_warns_with_an_interval_override(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rule = tmp_path / "r.yaml"
    rule.write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: X\n"
        "        expr: {metric: llm.tokens.generated, function: rate, window: 8s}\n"
        '        op: "<"\n        threshold: 1\n'
    )
    assert main(["alerting", "check", str(rule), "--interval", "llm.=5"]) == 0
    assert "8s cannot hold two samples of llm.tokens.generated" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "matcher"),
    [
        ("alertname=GpuLost", {"name": "alertname", "value": "GpuLost", "isRegex": False, "isEqual": True}),
        ('host.name=~"node-1.*"', {"name": "host.name", "value": "node-1.*", "isRegex": True, "isEqual": True}),
        ("severity!=ticket", {"name": "severity", "value": "ticket", "isRegex": False, "isEqual": False}),
        ('xid!~"13|31"', {"name": "xid", "value": "13|31", "isRegex": True, "isEqual": False}),
    ],
)
def test_silence_matchers(text: str, matcher: dict) -> None:
    assert cli.parse_silence_matcher(text) == matcher


def test_a_bad_silence_matcher_says_how_to_write_one() -> None:
    with pytest.raises(CliError, match="KEY=VALUE"):
        cli.parse_silence_matcher("no operator")


def _fake(monkeypatch: pytest.MonkeyPatch, handler) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def client(args: argparse.Namespace) -> httpx.Client:
        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        return httpx.Client(
            base_url=args.url, transport=httpx.MockTransport(record), headers={"Authorization": "Bearer t"}
        )

    monkeypatch.setattr(cli, "_client", client)
    return seen


def test_silence_add_posts_the_alertmanager_shape(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    seen = _fake(monkeypatch, lambda r: httpx.Response(200, json={"silenceID": "s-1"}))
    code = main(
        [
            "alerting",
            "silence",
            "add",
            "alertname=GpuLost",
            "--duration",
            "2h",
            "--comment",
            "swap",
            "--created-by",
            "ana",
        ]
    )
    assert code == 0 and capsys.readouterr().out.strip() == "s-1"
    body = json.loads(seen[0].content)
    assert seen[0].method == "POST" and seen[0].url.path == "/api/v1/silences"
    assert body == {
        "matchers": [{"name": "alertname", "value": "GpuLost", "isRegex": False, "isEqual": True}],
        "duration_s": 7200.0,
        "createdBy": "ana",
        "comment": "swap",
    }


def test_silence_list_prints_a_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    silence = {
        "id": "s-1",
        "status": {"state": "active"},
        "matchers": [{"name": "xid", "value": "13|31", "isRegex": True, "isEqual": False}],
        "endsAt": "2030-01-01T00:00:00Z",
        "createdBy": "ana",
        "comment": "known app bug",
    }
    _fake(monkeypatch, lambda r: httpx.Response(200, json={"silences": [silence]}))
    assert main(["alerting", "silence", "list"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:3] == ["ID", "STATE", "MATCHERS"]
    assert row.split() == ["s-1", "active", 'xid!~"13|31"', "2030-01-01T00:00:00Z", "ana", "known", "app", "bug"]


def test_silence_expire_and_api_errors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    seen = _fake(monkeypatch, lambda r: httpx.Response(200, json={}))
    assert main(["alerting", "silence", "expire", "s-1"]) == 0
    assert (seen[0].method, seen[0].url.path) == ("DELETE", "/api/v1/silence/s-1")
    _fake(monkeypatch, lambda r: httpx.Response(401, json={"detail": "no token"}))
    assert main(["alerting", "silence", "list"]) == 1
    assert "VIGIL_API_TOKEN" in capsys.readouterr().err
