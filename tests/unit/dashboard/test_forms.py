"""dashboard.forms: the form reader every page form uses, and the refusal mapping."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import HTTPException, Request

from dashboard.auth.http import MAX_FORM_BYTES
from dashboard.forms import Refused, read_page_form, refusals, required, taken


def _request(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> Request:
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers}, receive)


def test_a_form_keeps_every_value_of_a_field() -> None:
    form = asyncio.run(read_page_form(_request(b"matcher=a%3D1&matcher=b%3D2&comment=x")))
    assert form.getlist("matcher") == ["a=1", "b=2"]
    assert form.get("comment") == "x"


def test_a_body_that_is_not_a_form_is_400_and_one_over_the_bound_413() -> None:
    with pytest.raises(HTTPException) as caught:
        asyncio.run(read_page_form(_request(b"{}", "application/json")))
    assert caught.value.status_code == 400
    with pytest.raises(HTTPException) as caught:
        asyncio.run(read_page_form(_request(b"a=" + b"x" * MAX_FORM_BYTES)))
    assert caught.value.status_code == 413


class Base(Exception):
    pass


class Special(Base):
    pass


def test_refusals_answer_the_first_matching_status_and_let_others_through() -> None:
    statuses = ((Special, 404), (Base, 400))
    for raised, status in ((Special("gone"), 404), (Base("bad"), 400)):
        with pytest.raises(Refused) as caught, refusals(statuses):
            raise raised
        assert (caught.value.status, str(caught.value)) == (status, str(raised))
    with pytest.raises(KeyError), refusals(statuses):
        raise KeyError("not a refusal")


def test_a_missing_view_is_404_and_a_taken_form_goes_back_with_303() -> None:
    with pytest.raises(HTTPException) as caught:
        required(None, "runbooks not configured")
    assert (caught.value.status_code, caught.value.detail) == (404, "runbooks not configured")
    assert required("view", "x") == "view"
    answer = taken("/runs/r1", "approved")
    assert (answer.status_code, answer.headers["location"]) == (303, "/runs/r1?done=approved")
