"""The incidents API under `/api/v1/incidents`: viewers read, operators write notes and close by hand.

Refusals are answered with the status `vigil.incident_view.REFUSAL_STATUS` gives them, as the pages
answer them: a bad field 400 (the message names it), an unknown incident 404, closing one already
resolved 409, a store that did not answer 503.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vigil.access import Principal, Role, require
from vigil.http import answer, read_body
from vigil.incident_view import MAX_NOTE_CHARS, REFUSAL_STATUS, IncidentsView, incidents_view

MAX_BODY_BYTES = 4 * MAX_NOTE_CHARS + 1024  # a note's characters as UTF-8 at worst, and the JSON around it


def _view(view: IncidentsView | None = Depends(incidents_view)) -> IncidentsView:  # noqa: B008
    if view is None:
        raise HTTPException(503, "incidents are unavailable: alerting is not running")
    return view


async def _call(fn: Any, *args: Any) -> Any:
    return await answer(REFUSAL_STATUS, fn, *args)


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=MAX_NOTE_CHARS)


async def _note_body(request: Request) -> NoteIn:
    raw = await read_body(request, MAX_BODY_BYTES)
    try:
        return NoteIn.model_validate(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPException(400, 'body: not JSON; send {"text": "..."}') from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise HTTPException(400, f"{where}: {first['msg']}") from None


router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])
Viewer = Depends(require(Role.VIEWER))
Operator = Depends(require(Role.OPERATOR, write=True))
View = Depends(_view)


@router.get("", summary="Incidents, newest opened first: status open (default), resolved or all")
async def list_incidents(
    status: str = "open", limit: int = 100, who: Principal = Viewer, view: IncidentsView = View
) -> dict[str, Any]:
    return {"incidents": await _call(view.list, status, limit)}


@router.get("/{incident_id}", summary="One incident, its alerts and its timeline in time order")
async def get_incident(incident_id: str, who: Principal = Viewer, view: IncidentsView = View) -> dict[str, Any]:
    return await _call(view.get, incident_id)


@router.post("/{incident_id}/notes", summary="Add a note to the incident's timeline, signed by the caller")
async def add_note(
    incident_id: str, request: Request, who: Principal = Operator, view: IncidentsView = View
) -> dict[str, Any]:
    note = await _note_body(request)
    return await _call(view.add_note, incident_id, who.name, note.text)


@router.post("/{incident_id}/close", summary="Close an open incident by hand; records who")
async def close_incident(incident_id: str, who: Principal = Operator, view: IncidentsView = View) -> dict[str, Any]:
    return await _call(view.close, incident_id, who.name)
