"""The review queue: list (triage order) and filter flags, acknowledge, resolve."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request, status

from analytics.flags import (
    Flag,
    FlagNotFoundError,
    FlagTransitionError,
    acknowledge,
    get_flag,
    list_flags,
    resolve,
)
from analytics.rules import RULES_BY_ID
from api.core import audit
from api.core.db import count_rows
from api.core.errors import COMMON, CONFLICT
from api.core.principal import Principal
from api.deps import (
    ConnDep,
    DbId,
    PageDep,
    PatientScope,
    StaffUser,
    check_patient,
    visible_patients,
)
from api.schemas import AcknowledgeIn, FlagOut, Page, ResolveIn
from ingest.custody import CUSTODY_RULE

router = APIRouter(prefix="/flags", tags=["flags"], responses=COMMON)

Severity = Literal["urgent", "high", "medium", "low"]
Status = Literal["open", "acknowledged", "resolved"]
FlagAction = Literal["acknowledge", "resolve"]


def flag_out(flag: Flag) -> FlagOut:
    return FlagOut.model_validate(asdict(flag))


@router.get("", response_model=Page[FlagOut], summary="Flags for review, in triage order")
def get_flags(
    user: StaffUser,
    conn: ConnDep,
    page: PageDep,
    request: Request,
    severity: Annotated[list[Severity] | None, Query()] = None,
    status_: Annotated[list[Status] | None, Query(alias="status")] = None,
    rule: Annotated[list[str] | None, Query(max_length=20)] = None,
    patient_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Page[FlagOut]:
    """Urgent first, then high, medium, low; newest first within a severity.  Clinicians
    see their panel's flags, admins all.  Default: open and acknowledged flags."""
    if rule:
        # Analytics' rules and the flags ingest raises itself (held device custody).
        unknown = sorted(set(rule) - set(RULES_BY_ID) - {CUSTODY_RULE})
        if unknown:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"unknown rule(s) {unknown}")
    visible = visible_patients(conn, user)
    patients: list[int] | None = visible
    if patient_id is not None:
        scope = check_patient(conn, user, patient_id, request)
        patients = [scope.patient_id]
    statuses = status_ or ["open", "acknowledged"]
    flags = list_flags(
        conn,
        patients=patients,
        statuses=statuses,
        severities=severity,
        rules=rule,
        limit=page.limit,
        offset=page.offset,
    )
    clauses: list[str] = ["status = ANY(%s)"]
    params: list[list[Any]] = [list(statuses)]
    filters: tuple[tuple[str, list[Any] | None], ...] = (
        ("patient_id", list(patients) if patients is not None else None),
        ("severity", list(severity) if severity else None),
        ("rule_id", list(rule) if rule else None),
    )
    for column, values in filters:
        if values is not None:
            clauses.append(f"{column} = ANY(%s)")
            params.append(values)
    total = count_rows(conn, f"SELECT count(*) FROM flags WHERE {' AND '.join(clauses)}", params)
    audit.write(
        conn,
        user,
        "flag.list",
        ip=audit.client_ip(request),
        patient_id=patient_id,
        resource="flags",
        detail={"flags": [f.id for f in flags]},
    )
    return page.of([flag_out(f) for f in flags], total, request)


def _scoped_flag(
    conn: ConnDep, user: StaffUser, flag_id: int, request: Request
) -> tuple[Flag, PatientScope]:
    try:
        flag = get_flag(conn, flag_id)
    except FlagNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"flag {flag_id} not found") from exc
    try:
        scope = check_patient(conn, user, flag.patient_id, request)
    except HTTPException as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"flag {flag_id} not found") from exc
    return flag, scope


@router.get("/{flag_id}", response_model=FlagOut, summary="One flag with its evidence")
def get_one(flag_id: DbId, user: StaffUser, conn: ConnDep, request: Request) -> FlagOut:
    flag, scope = _scoped_flag(conn, user, flag_id, request)
    scope.audit("flag.read", f"flag/{flag_id}")
    return flag_out(flag)


def transition(
    conn: psycopg.Connection[Any], flag_id: int, action: FlagAction, by: str, note: str | None
) -> Flag:
    """Acknowledge (note optional) or resolve (note required) a flag, for the REST routes
    and the dashboard forms alike; FlagTransitionError when the status or note forbids it."""
    if action == "acknowledge":
        return acknowledge(conn, flag_id, by, note)
    return resolve(conn, flag_id, by, note or "")


def _post_transition(
    flag_id: int,
    action: FlagAction,
    note: str | None,
    user: Principal,
    conn: psycopg.Connection[Any],
    request: Request,
) -> FlagOut:
    """404 outside the caller's scope, 409 when the transition is refused; audited."""
    _, scope = _scoped_flag(conn, user, flag_id, request)
    try:
        flag = transition(conn, flag_id, action, user.name, note)
    except FlagTransitionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    scope.audit(f"flag.{action}", f"flag/{flag_id}", {"note": note})
    return flag_out(flag)


@router.post(
    "/{flag_id}/acknowledge",
    response_model=FlagOut,
    summary="Acknowledge an open flag",
    responses=CONFLICT,
)
def post_acknowledge(
    flag_id: DbId, body: AcknowledgeIn, user: StaffUser, conn: ConnDep, request: Request
) -> FlagOut:
    return _post_transition(flag_id, "acknowledge", body.note, user, conn, request)


@router.post(
    "/{flag_id}/resolve",
    response_model=FlagOut,
    summary="Resolve a flag with a note",
    responses=CONFLICT,
)
def post_resolve(
    flag_id: DbId, body: ResolveIn, user: StaffUser, conn: ConnDep, request: Request
) -> FlagOut:
    return _post_transition(flag_id, "resolve", body.note, user, conn, request)
