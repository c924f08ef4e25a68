"""Device custody: pairings held by ingest (a hub asking for a device another hub or
patient holds), a clinician's approval or rejection, and a device's timeline.

The rule and its mechanics live in ``ingest.custody``; this module adds who may decide
and the audit.  A request is about up to two patients (the device's, and the asking
hub's): a clinician decides only when both are on their panel (an admin always); one
outside the caller's scope answers 404, and the attempt is audited.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field

from api.core import audit
from api.core.errors import COMMON, CONFLICT
from api.core.principal import Principal
from api.deps import ConnDep, DbId, PageDep, StaffUser, can_see, visible_patients
from api.schemas import Page
from ingest.custody_review import (
    CustodyConflictError,
    CustodyInvalidError,
    CustodyRequest,
    CustodyRequestNotFoundError,
    decide,
    device_patients,
    device_timeline,
    get_request,
    list_requests,
)

router = APIRouter(prefix="/custody", tags=["custody"], responses=COMMON)

RequestStatus = Literal["pending", "approved", "rejected"]
DeviceIdPath = Annotated[str, Path(min_length=1, max_length=200)]


class CustodyRequestOut(BaseModel):
    id: int
    device_id: str
    from_gateway: str | None = Field(description="the hub holding the device when held")
    from_patient: int | None = Field(description="the device's patient when held")
    to_gateway: str = Field(description="the hub that asked for the device")
    to_patient: int | None = Field(description="that hub's patient")
    event: Literal["paired", "inventory"]
    requested_at: datetime = Field(description="the event's time (the hub's clock)")
    received_at: datetime
    status: RequestStatus
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    moved_at: datetime | None = Field(description="approved: when the device moved")


class DecisionIn(BaseModel):
    reason: str = Field(min_length=3, max_length=1000, description="why (kept in the audit)")


class ApproveIn(DecisionIn):
    at: datetime | None = Field(
        default=None,
        description="when the device changed hands (default now): readings measured"
        " before stay with the old patient, from then on they are the new patient's",
    )


class DeviceEventOut(BaseModel):
    id: int
    at: datetime
    recorded_at: datetime
    gateway_id: str | None
    actor: str
    action: str
    detail: dict[str, Any]


def request_out(request: CustodyRequest) -> CustodyRequestOut:
    return CustodyRequestOut.model_validate(asdict(request))


def _audited_patients(found: CustodyRequest) -> list[int | None]:
    """One audit row per patient the request touches (each patient's trail shows it)."""
    return [*found.patients] or [None]


def _deny(
    conn: psycopg.Connection[Any],
    user: Principal,
    request: Request,
    what: str,
    patients: list[int] | None = None,
) -> None:
    """404, audited as ``access.denied`` once per patient the refused request is about
    (each patient's trail shows the attempt), or once without one."""
    targets: list[int | None] = [*patients] if patients else [None]
    for patient in targets:
        audit.write(
            conn,
            user,
            "access.denied",
            ip=audit.client_ip(request),
            patient_id=patient,
            resource=request.url.path,
            status=404,
        )
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")


def _may_decide(conn: psycopg.Connection[Any], user: Principal, found: CustodyRequest) -> bool:
    """Deny by default: every patient the move touches must be in the caller's scope; a
    move between hubs of no patient at all is an admin's."""
    if user.role == "admin":
        return True
    patients = found.patients
    return bool(patients) and all(can_see(conn, user, p) for p in patients)


def _scoped(
    conn: psycopg.Connection[Any], user: Principal, request_id: int, request: Request
) -> CustodyRequest:
    try:
        found = get_request(conn, request_id)
    except CustodyRequestNotFoundError:
        found = None
    if found is None or not _may_decide(conn, user, found):
        _deny(
            conn,
            user,
            request,
            f"custody request {request_id}",
            None if found is None else found.patients,
        )
    assert found is not None
    return found


@router.get(
    "/requests",
    response_model=Page[CustodyRequestOut],
    summary="Pairings held for a clinician's decision (default: pending), newest first",
)
def get_requests(
    user: StaffUser,
    conn: ConnDep,
    page: PageDep,
    request: Request,
    status_: Annotated[list[RequestStatus] | None, Query(alias="status")] = None,
) -> Page[CustodyRequestOut]:
    """Those the caller may decide: clinicians, the requests every patient of which is on
    their panel; admins all."""
    items, total = list_requests(
        conn,
        statuses=list(status_ or ["pending"]),
        within=visible_patients(conn, user),
        limit=page.limit,
        offset=page.offset,
    )
    audit.write(
        conn,
        user,
        "custody.list",
        ip=audit.client_ip(request),
        resource="custody/requests",
        detail={"requests": [r.id for r in items]},
    )
    return page.of([request_out(r) for r in items], total, request)


@router.get("/requests/{request_id}", response_model=CustodyRequestOut, summary="One request")
def get_one(
    request_id: DbId, user: StaffUser, conn: ConnDep, request: Request
) -> CustodyRequestOut:
    found = _scoped(conn, user, request_id, request)
    for patient in _audited_patients(found):
        audit.write(
            conn,
            user,
            "custody.read",
            ip=audit.client_ip(request),
            patient_id=patient,
            resource=f"custody/requests/{request_id}",
        )
    return request_out(found)


def _decide(
    request_id: int,
    approve: bool,
    body: DecisionIn,
    at: datetime | None,
    user: Principal,
    conn: psycopg.Connection[Any],
    request: Request,
) -> CustodyRequestOut:
    found = _scoped(conn, user, request_id, request)
    ip = audit.client_ip(request)
    action = "device.custody.approve" if approve else "device.custody.reject"
    detail: dict[str, Any] = {
        "request": request_id,
        "device": found.device_id,
        "from_gateway": found.from_gateway,
        "from_patient": found.from_patient,
        "to_gateway": found.to_gateway,
        "to_patient": found.to_patient,
        "reason": body.reason,
        "at": None if at is None else at.isoformat(),
    }
    try:
        with conn.transaction():
            decided = decide(
                conn,
                request_id,
                approve=approve,
                actor=user.name,
                actor_id=user.user_id,
                reason=body.reason,
                at=at,
                ip=ip,
            )
            for patient in _audited_patients(found):
                audit.write(
                    conn,
                    user,
                    action,
                    ip=ip,
                    patient_id=patient,
                    resource=f"device/{found.device_id}",
                    detail={**detail, "moved_at": decided.moved_at},
                )
    except (CustodyConflictError, CustodyInvalidError) as exc:
        code = 409 if isinstance(exc, CustodyConflictError) else 400
        for patient in _audited_patients(found):
            audit.write(
                conn,
                user,
                action,
                ip=ip,
                patient_id=patient,
                resource=f"device/{found.device_id}",
                status=code,
                detail={**detail, "refused": str(exc)},
            )
        raise HTTPException(code, str(exc)) from exc
    return request_out(decided)


@router.post(
    "/requests/{request_id}/approve",
    response_model=CustodyRequestOut,
    summary="Approve a held pairing: the device moves to the asking hub (and its patient)",
    responses=CONFLICT,
)
def approve(
    request_id: DbId, body: ApproveIn, user: StaffUser, conn: ConnDep, request: Request
) -> CustodyRequestOut:
    """The old binding ends at ``at`` and the new one starts there; readings before stay
    with the old patient.  409 if the device's custody changed since it was held."""
    return _decide(request_id, True, body, body.at, user, conn, request)


@router.post(
    "/requests/{request_id}/reject",
    response_model=CustodyRequestOut,
    summary="Reject a held pairing: the device stays where it is",
    responses=CONFLICT,
)
def reject(
    request_id: DbId, body: DecisionIn, user: StaffUser, conn: ConnDep, request: Request
) -> CustodyRequestOut:
    return _decide(request_id, False, body, None, user, conn, request)


@router.get(
    "/devices/{device_id}/events",
    response_model=list[DeviceEventOut],
    summary="A device's custody timeline (pairings, held and refused attempts, decisions)",
)
def device_events(
    device_id: DeviceIdPath,
    user: StaffUser,
    conn: ConnDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeviceEventOut]:
    """For a clinician who can see a patient the device was ever bound to (admins all)."""
    patients = device_patients(conn, device_id)
    if user.role != "admin" and not any(can_see(conn, user, p) for p in patients):
        _deny(conn, user, request, f"device {device_id!r}", patients)
    audit.write(
        conn,
        user,
        "device.timeline",
        ip=audit.client_ip(request),
        resource=f"device/{device_id}",
    )
    return [DeviceEventOut.model_validate(e) for e in device_timeline(conn, device_id, limit)]
