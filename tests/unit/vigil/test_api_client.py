"""vigil.api_client: the message of an error answer, whatever shape its body has."""

from __future__ import annotations

import httpx

from vigil.api_client import bearer_client, error_detail


def test_the_detail_of_a_fastapi_error_else_the_raw_text() -> None:
    assert error_detail(httpx.Response(400, json={"detail": "limit: at most 1000"})) == "limit: at most 1000"
    assert error_detail(httpx.Response(400, json={"error": "x"})) == '{"error":"x"}'
    assert error_detail(httpx.Response(502, text="<html>bad gateway</html>")) == "<html>bad gateway</html>"
    assert error_detail(httpx.Response(500, json=["not", "an", "object"])) == '["not","an","object"]'


def test_a_client_sends_the_token_only_when_there_is_one() -> None:
    with bearer_client("http://127.0.0.1:1", "tok", 5.0) as client:
        assert client.headers["authorization"] == "Bearer tok"
    with bearer_client("http://127.0.0.1:1", None, 5.0) as client:
        assert "authorization" not in client.headers
