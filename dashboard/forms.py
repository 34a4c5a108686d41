"""What the dashboard's page forms share: reading a form within auth's bound, a refusal that carries the
status the JSON API would answer (the page renders again with it), and the 303 back with a fixed notice
once a form is taken, so a reload never posts twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse
from starlette.datastructures import FormData

from dashboard.auth.errors import AuthError
from dashboard.auth.http import read_form_pairs
from dashboard.auth.http import status_of as auth_status
from vigil.http import Statuses, kinds, status_of

V = TypeVar("V")


class Refused(Exception):
    """A page's request the view refused: the page renders again with `status` and the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@contextmanager
def refusals(statuses: Statuses) -> Iterator[None]:
    """Each exception of a kind in `statuses` (first match wins) leaves as a `Refused` with its status: the
    view module's table, so a page answers a refusal as the JSON API does."""
    try:
        yield
    except kinds(statuses) as exc:
        raise Refused(status_of(exc, statuses), str(exc)) from None


async def read_page_form(request: Request) -> FormData:
    """The form's fields, every value of each (a silence has several matchers), read within auth's bound;
    a body that is not a form, or is over the bound, is answered as auth answers it."""
    parsed = getattr(request, "_form", None)  # Starlette's, where a check took the form through request.form()
    if parsed is not None:
        return FormData([(key, str(value)) for key, value in parsed.multi_items()])
    try:
        pairs = await read_form_pairs(request)  # the CSRF check may have read the body already
    except AuthError as exc:
        raise HTTPException(auth_status(exc), str(exc)) from None
    return FormData(pairs)


def required(view: V | None, missing: str) -> V:
    """The view a form acts on; without it (its service is not running) the form answers 404."""
    if view is None:
        raise HTTPException(404, missing)
    return view


def taken(link: str, done: str) -> RedirectResponse:
    """Back to `link` with `?done=`, which the page turns into one of its fixed notices."""
    return RedirectResponse(f"{link}?done={done}", status_code=303)
