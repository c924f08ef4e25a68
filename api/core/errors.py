"""One error shape for the REST API: ``{"detail": "..."}`` (plus ``errors`` for request
validation), documented on every route; FHIR routes answer with an OperationOutcome."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    detail: str
    errors: list[FieldError] | None = None


Responses = dict[int | str, dict[str, Any]]


def _resp(status: int, description: str) -> Responses:
    return {status: {"model": ErrorOut, "description": description}}


BAD_REQUEST = _resp(400, "Bad request (the message says why)")
UNAUTHORIZED = _resp(401, "Missing, invalid or expired credentials")
FORBIDDEN = _resp(403, "Authenticated, but this role may not do this")
NOT_FOUND = _resp(404, "Not found, or not visible to the caller")
CONFLICT = _resp(409, "Conflicts with the current state")
UNPROCESSABLE = _resp(422, "Request validation failed")
TOO_MANY = _resp(429, "Too many attempts; retry after the Retry-After header")
UNAVAILABLE = _resp(503, "Database unavailable")

COMMON: Responses = {
    **BAD_REQUEST,
    **UNAUTHORIZED,
    **FORBIDDEN,
    **NOT_FOUND,
    **UNPROCESSABLE,
    **UNAVAILABLE,
}
PUBLIC: Responses = {**BAD_REQUEST, **UNPROCESSABLE, **UNAVAILABLE}
