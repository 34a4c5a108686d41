"""vigil.http: refusals answered with their view module's status, and bodies read within a bound."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import HTTPException, Request

from vigil import incident_view as iv
from vigil import runbook_view as rv
from vigil.http import answer, read_body


def _fail(exc: Exception) -> None:
    raise exc


@pytest.mark.parametrize(
    ("table", "exc", "status"),
    [
        (iv.REFUSAL_STATUS, iv.UnknownIncident("no incident x"), 404),
        (iv.REFUSAL_STATUS, iv.IncidentResolved("resolved"), 409),
        (iv.REFUSAL_STATUS, iv.IncidentRequestError("note too long"), 400),
        (iv.REFUSAL_STATUS, iv.IncidentsUnavailable("store down"), 503),
        (rv.REFUSAL_STATUS, rv.UnknownName("no runbook x"), 404),
        (rv.REFUSAL_STATUS, rv.RunConflict("held"), 409),
        (rv.REFUSAL_STATUS, rv.TooManyRuns("busy"), 429),
        (rv.REFUSAL_STATUS, rv.BadRunRequest("bad target"), 400),
        (rv.REFUSAL_STATUS, rv.RunbookRequestError("other"), 400),
    ],
)
def test_a_refusal_is_answered_with_its_status_and_message(table, exc: Exception, status: int) -> None:
    with pytest.raises(HTTPException) as caught:
        asyncio.run(answer(table, _fail, exc))
    assert (caught.value.status_code, caught.value.detail) == (status, str(exc))


def test_an_answer_passes_through_and_other_errors_are_not_refusals() -> None:
    assert asyncio.run(answer(iv.REFUSAL_STATUS, lambda a, b: a + b, 2, 3)) == 5
    with pytest.raises(KeyError):
        asyncio.run(answer(iv.REFUSAL_STATUS, _fail, KeyError("bug")))


def _request(chunks: list[bytes], declared: int | None) -> Request:
    pending = list(chunks)

    async def receive() -> dict[str, object]:
        if not pending:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": pending.pop(0), "more_body": bool(pending)}

    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers}, receive)


def test_a_body_within_the_bound_is_read_whole_and_one_past_it_is_413() -> None:
    assert asyncio.run(read_body(_request([b"ab", b"cd"], None), 4)) == b"abcd"
    for request in (_request([b"abcde"], 5000), _request([b"abc", b"de"], None)):  # declared, then streamed
        with pytest.raises(HTTPException) as caught:
            asyncio.run(read_body(request, 4))
        assert (caught.value.status_code, caught.value.detail) == (413, "body over 4 bytes")
