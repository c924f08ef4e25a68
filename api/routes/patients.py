"""Patients: clinic-side enrolment (record + activation code), listing, devices and
gateways with sync status, gateway enrolment codes and device reassignment."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from fastapi import APIRouter, HTTPException, Request, status

from api.core import audit
from api.core.config import ApiSettings
from api.core.db import count_rows
from api.core.errors import COMMON, CONFLICT, TOO_MANY
from api.core.principal import Principal
from api.core.security import digest, new_code
from api.core.throttle import Throttle, Throttled
from api.deps import (
    ConnDep,
    CurrentUser,
    PageDep,
    PatientDep,
    SettingsDep,
    StaffUser,
    can_see,
    visible_patients,
)
from api.schemas import (
    CodeOut,
    DeviceAssignIn,
    DeviceOut,
    GatewayOut,
    Page,
    PatientCreated,
    PatientIn,
    PatientOut,
    SyncStatus,
)
from ingest.custody import record as record_custody
from ingest.patients import upsert_patient
from ingest.registry import READING_TABLES, attribute_pending, bind_device

router = APIRouter(prefix="/patients", tags=["patients"], responses=COMMON)

PATIENT_COLUMNS = (
    "p.id, p.external_id, p.mrn, p.given_name, p.family_name, p.birth_date, p.timezone,"
    " p.created_at, EXISTS (SELECT 1 FROM users u WHERE u.patient_id = p.id) AS has_account"
)


def patient_out(row: tuple[Any, ...]) -> PatientOut:
    return PatientOut(
        id=row[0],
        external_id=row[1],
        mrn=row[2],
        given_name=row[3],
        family_name=row[4],
        birth_date=row[5],
        timezone=row[6],
        created_at=row[7],
        has_account=row[8],
    )


def fetch_patients(conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, PatientOut]:
    rows = conn.execute(
        f"SELECT {PATIENT_COLUMNS} FROM patients p WHERE p.id = ANY(%s)",
        (ids,),
    ).fetchall()
    return {int(r[0]): patient_out(r) for r in rows}


def fetch_patient(conn: psycopg.Connection[Any], patient_id: int) -> PatientOut:
    found = fetch_patients(conn, [patient_id])
    if patient_id not in found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"patient {patient_id} not found")
    return found[patient_id]


def issue_code(
    conn: psycopg.Connection[Any],
    table: str,
    patient_id: int,
    created_by: int | None,
    hours: int,
) -> CodeOut:
    """A fresh one-time code; earlier unused codes of the same kind for the patient expire."""
    assert table in ("activation_codes", "gateway_enrollment_codes")
    code = new_code()
    expires = datetime.now(UTC) + timedelta(hours=hours)
    conn.execute(
        f"UPDATE {table} SET expires_at = least(expires_at, now())"
        " WHERE patient_id = %s AND used_at IS NULL",
        (patient_id,),
    )
    conn.execute(
        f"INSERT INTO {table} (patient_id, code_hash, created_by, expires_at)"
        " VALUES (%s, %s, %s, %s)",
        (patient_id, digest(code), created_by, expires),
    )
    return CodeOut(code=code, patient_id=patient_id, expires_at=expires)


@router.post(
    "",
    response_model=PatientCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Enrol a patient (clinic side) and get their activation code",
    responses={**CONFLICT, **TOO_MANY},
)
def create_patient(
    body: PatientIn, user: StaffUser, conn: ConnDep, settings: SettingsDep, request: Request
) -> PatientCreated:
    """Creates the patient record and a single-use activation code (valid 72 h by default)
    that the patient uses, with name, date of birth and MRN, to register.  A clinician who
    enrols a patient gets them on their panel."""
    try:
        ZoneInfo(body.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"unknown time zone {body.timezone!r}"
        ) from exc
    external_id = body.external_id or f"pt-{secrets.token_hex(6)}"
    refused: list[int] = []
    created: tuple[int, CodeOut] | None = None
    with conn.transaction():
        clashes = conn.execute(
            "SELECT id, external_id = %s FROM patients WHERE external_id = %s OR mrn = %s",
            (external_id, external_id, body.mrn),
        ).fetchall()
        refused = [int(r[0]) for r in clashes if not can_see(conn, user, int(r[0]))]
        if clashes and not refused:
            # The caller's own patient: say which identifier; that reveals nothing new.
            what = "external id" if any(r[1] for r in clashes) else "MRN"
            raise HTTPException(status.HTTP_409_CONFLICT, f"a patient with this {what} exists")
        if not clashes:
            created = _create_patient(conn, body, external_id, user, settings, request)
    if created is not None:
        return PatientCreated(patient=fetch_patient(conn, created[0]), activation=created[1])
    # Another clinic's patient: one answer whether the MRN or the external id clashed,
    # naming neither (it said "a patient with this MRN exists"), audited per patient,
    # and limited like registrations (REGISTER_MAX_ATTEMPTS per window per account), so
    # the answer cannot be used to sweep MRNs.
    throttle: Throttle = request.app.state.register_throttle
    limited: Throttled | None = None
    try:
        throttle.acquire(conn, f"enrol-clash|{user.user_id}")
    except Throttled as exc:
        limited = exc
    for pid in refused:
        audit.write(
            conn,
            user,
            "access.denied",
            ip=audit.client_ip(request),
            patient_id=pid,
            resource=request.url.path,
            status=status.HTTP_409_CONFLICT,
            detail={"reason": "enrolment clashes with a patient outside the caller's scope"},
        )
    if limited is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many refused enrolments; retry in {limited.retry_after} s",
            headers={"Retry-After": str(limited.retry_after)},
        )
    raise HTTPException(
        status.HTTP_409_CONFLICT, "this patient cannot be enrolled here; ask an administrator"
    )


def _create_patient(
    conn: psycopg.Connection[Any],
    body: PatientIn,
    external_id: str,
    user: Principal,
    settings: ApiSettings,
    request: Request,
) -> tuple[int, CodeOut]:
    patient_id = upsert_patient(conn, external_id, body.timezone, None, body.mrn, body.birth_date)
    conn.execute(
        "UPDATE patients SET given_name = %s, family_name = %s WHERE id = %s",
        (body.given_name, body.family_name, patient_id),
    )
    if user.role == "clinician":
        conn.execute(
            "INSERT INTO clinician_panel (clinician_id, patient_id) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING",
            (user.user_id, patient_id),
        )
    code = issue_code(
        conn, "activation_codes", patient_id, user.user_id, settings.activation_code_hours
    )
    audit.write(
        conn,
        user,
        "patient.create",
        ip=audit.client_ip(request),
        patient_id=patient_id,
        resource=f"patient/{patient_id}",
    )
    return patient_id, code


@router.get("", response_model=Page[PatientOut], summary="Patients visible to the caller")
def list_patients(
    user: CurrentUser, conn: ConnDep, page: PageDep, request: Request
) -> Page[PatientOut]:
    """Admin: all; clinician: their panel; patient: themselves.  Ordered by family name."""
    ids = visible_patients(conn, user)
    where, params = ("true", []) if ids is None else ("p.id = ANY(%s)", [ids])
    total = count_rows(conn, f"SELECT count(*) FROM patients p WHERE {where}", params)
    rows = conn.execute(
        f"SELECT {PATIENT_COLUMNS} FROM patients p WHERE {where}"
        " ORDER BY p.family_name NULLS LAST, p.given_name NULLS LAST, p.id LIMIT %s OFFSET %s",
        [*params, page.limit, page.offset],
    ).fetchall()
    items = [patient_out(r) for r in rows]
    audit.write(
        conn,
        user,
        "patient.list",
        ip=audit.client_ip(request),
        resource="patients",
        detail={"patients": [p.id for p in items]},
    )
    return page.of(items, total, request)


@router.get("/{patient_id}", response_model=PatientOut, summary="One patient")
def get_patient(scope: PatientDep) -> PatientOut:
    scope.audit("patient.read", f"patient/{scope.patient_id}")
    return fetch_patient(scope.conn, scope.patient_id)


@router.post(
    "/{patient_id}/activation-code",
    response_model=CodeOut,
    status_code=status.HTTP_201_CREATED,
    summary="Issue a new activation code (earlier unused ones expire)",
    responses=CONFLICT,
)
def new_activation_code(scope: PatientDep, user: StaffUser, settings: SettingsDep) -> CodeOut:
    conn = scope.conn
    with conn.transaction():
        if conn.execute(
            "SELECT 1 FROM users WHERE patient_id = %s", (scope.patient_id,)
        ).fetchone():
            raise HTTPException(status.HTTP_409_CONFLICT, "the patient already has an account")
        code = issue_code(
            conn, "activation_codes", scope.patient_id, user.user_id, settings.activation_code_hours
        )
        scope.audit("patient.activation_code", f"patient/{scope.patient_id}")
    return code


@router.post(
    "/{patient_id}/gateway-code",
    response_model=CodeOut,
    status_code=status.HTTP_201_CREATED,
    summary="Issue a gateway enrolment code for the patient's home hub",
)
def new_gateway_code(scope: PatientDep, settings: SettingsDep) -> CodeOut:
    """Staff for their patients, or patients for themselves.  The code is entered on the
    gateway, which trades it at ``POST /api/v1/gateways/enroll`` for its credentials."""
    conn = scope.conn
    with conn.transaction():
        code = issue_code(
            conn,
            "gateway_enrollment_codes",
            scope.patient_id,
            scope.user.user_id,
            settings.enrollment_code_hours,
        )
        scope.audit("gateway.enrollment_code", f"patient/{scope.patient_id}")
    return code


def sync_status(last_sync: datetime | None, settings: ApiSettings) -> SyncStatus:
    if last_sync is None:
        return SyncStatus(state="never", hours_since_sync=None)
    hours = (datetime.now(UTC) - last_sync).total_seconds() / 3600.0
    return SyncStatus(
        state="stale" if hours > settings.stale_sync_hours else "ok",
        hours_since_sync=round(hours, 2),
    )


DEVICE_QUERY = """
SELECT d.id, d.gateway_id, d.profile, d.name, d.manufacturer, d.model, d.serial,
       d.battery_percent, d.clock_skew_s, d.last_sync, d.last_error,
       lower(b.valid), upper(b.valid)
FROM device_bindings b JOIN devices d ON d.id = b.device_id
WHERE b.patient_id = %s
ORDER BY upper_inf(b.valid) DESC, lower(b.valid) DESC NULLS LAST, d.id
LIMIT %s OFFSET %s
"""


def device_out(row: tuple[Any, ...], settings: ApiSettings) -> DeviceOut:
    return DeviceOut(
        id=row[0],
        gateway_id=row[1],
        profile=row[2],
        name=row[3],
        manufacturer=row[4],
        model=row[5],
        serial=row[6],
        battery_percent=row[7],
        clock_skew_s=row[8],
        last_sync=row[9],
        last_error=row[10],
        bound_from=row[11],
        bound_until=row[12],
        sync=sync_status(row[9], settings),
    )


def patient_devices(
    conn: psycopg.Connection[Any], patient_id: int, settings: ApiSettings, limit: int, offset: int
) -> tuple[list[DeviceOut], int]:
    total = count_rows(
        conn, "SELECT count(*) FROM device_bindings WHERE patient_id = %s", (patient_id,)
    )
    rows = conn.execute(DEVICE_QUERY, (patient_id, limit, offset)).fetchall()
    return [device_out(r, settings) for r in rows], total


@router.get(
    "/{patient_id}/devices",
    response_model=Page[DeviceOut],
    summary="Devices bound to the patient (current first), with sync status and battery",
)
def list_devices(
    scope: PatientDep, settings: SettingsDep, page: PageDep, request: Request
) -> Page[DeviceOut]:
    items, total = patient_devices(scope.conn, scope.patient_id, settings, page.limit, page.offset)
    scope.audit("device.list", f"patient/{scope.patient_id}/devices")
    return page.of(items, total, request)


def device_holder(conn: psycopg.Connection[Any], device_id: str) -> tuple[bool, int | None]:
    """(exists, the patient who holds the device): its open binding's patient, else the
    patient of its latest binding, else the owner of the hub it is paired on."""
    row = conn.execute(
        "SELECT (SELECT b.patient_id FROM device_bindings b WHERE b.device_id = d.id"
        "         ORDER BY upper_inf(b.valid) DESC, upper(b.valid) DESC NULLS LAST LIMIT 1),"
        " (SELECT g.patient_id FROM gateways g WHERE g.id = d.gateway_id)"
        " FROM devices d WHERE d.id = %s FOR UPDATE OF d",
        (device_id,),
    ).fetchone()
    if row is None:
        return False, None
    holder = row[0] if row[0] is not None else row[1]
    return True, None if holder is None else int(holder)


def _after_last_reading(
    conn: psycopg.Connection[Any], device_id: str, holder: int, at: datetime
) -> None:
    """409 when the losing patient has a reading from the device at or after ``at``: the
    readings keep their patient, so such a move would leave that chart holding readings
    the bindings give to the new patient.  The same rule as a custody approval
    (``ingest.custody_review._check_unchanged``), on the same index."""
    for table in READING_TABLES:
        last = conn.execute(
            f"SELECT max(time) FROM (SELECT time FROM {table} WHERE patient_id = %s"
            " AND device_id = %s ORDER BY time DESC LIMIT 1) t".encode(),
            (holder, device_id),
        ).fetchone()
        if last is not None and last[0] is not None and last[0] >= at:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"'at' must be after the device's last reading in patient {holder}'s chart"
                f" ({last[0].isoformat()})",
            )


@router.post(
    "/{patient_id}/devices",
    response_model=DeviceOut,
    summary="Move a device to this patient (ends the holder's binding); needs a reason",
    responses=CONFLICT,
)
def assign_device(
    body: DeviceAssignIn, scope: PatientDep, user: StaffUser, settings: SettingsDep
) -> DeviceOut:
    """Readings measured from ``at`` on belong to this patient; a binding to another
    patient ends at ``at``.  A clinician moves devices only between patients in their own
    scope: a device held by a patient outside it answers 404, as that patient would, and
    the attempt is audited.  A device nobody holds yet (never bound, no enrolled hub) is
    assigned by an admin.  Every move is audited for both patients with who, from where
    and ``reason``."""
    conn = scope.conn
    at = body.at or datetime.now(UTC)
    if at.tzinfo is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "'at' needs a time zone offset")
    denied: int | None = None
    with conn.transaction():
        exists, holder = device_holder(conn, body.device_id)
        if exists and user.role != "admin" and (holder is None or not can_see(conn, user, holder)):
            denied = -1 if holder is None else holder
        elif not exists:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"device {body.device_id!r} not found")
        else:
            open_from = conn.execute(
                "SELECT lower(valid) FROM device_bindings"
                " WHERE device_id = %s AND upper_inf(valid)",
                (body.device_id,),
            ).fetchone()
            if open_from is not None and open_from[0] is not None and open_from[0] >= at:
                raise HTTPException(
                    status.HTTP_409_CONFLICT, "'at' must be after the current binding's start"
                )
            if holder is not None and holder != scope.patient_id:
                _after_last_reading(conn, body.device_id, holder, at)
            bind_device(conn, body.device_id, scope.patient_id, at)
            attribute_pending(conn, [body.device_id])
            custody = {
                "at": at.isoformat(),
                "reason": body.reason,
                "from_patient": holder,
                "to_patient": scope.patient_id,
            }
            scope.audit("device.assign", f"device/{body.device_id}", custody)
            # The device's own timeline shows the move beside the hubs' pairings.
            record_custody(
                conn,
                body.device_id,
                "clinician.move",
                at,
                gateway=None,
                actor=user.name,
                detail=custody,
            )
            if holder is not None and holder != scope.patient_id:
                audit.write(
                    conn,
                    user,
                    "device.release",
                    ip=scope.ip,
                    patient_id=holder,
                    resource=f"device/{body.device_id}",
                    detail=custody,
                )
    if denied is not None:
        audit.write(
            conn,
            user,
            "access.denied",
            ip=scope.ip,
            patient_id=None if denied < 0 else denied,
            resource=f"device/{body.device_id}",
            status=404,
            detail={"to_patient": scope.patient_id, "reason": body.reason},
        )
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"device {body.device_id!r} not found")
    rows = conn.execute(
        DEVICE_QUERY.replace("WHERE b.patient_id = %s", "WHERE b.patient_id = %s AND d.id = %s"),
        (scope.patient_id, body.device_id, 1, 0),
    ).fetchall()
    return device_out(rows[0], settings)


@router.get(
    "/{patient_id}/gateways",
    response_model=list[GatewayOut],
    summary="The patient's gateways (home hubs)",
)
def list_gateways(scope: PatientDep) -> list[GatewayOut]:
    rows = scope.conn.execute(
        "SELECT id, patient_id, last_seen, state, outbox_depth, version, created_at"
        " FROM gateways WHERE patient_id = %s ORDER BY id LIMIT 100",
        (scope.patient_id,),
    ).fetchall()
    scope.audit("gateway.list", f"patient/{scope.patient_id}/gateways")
    return [
        GatewayOut(
            id=r[0],
            patient_id=r[1],
            last_seen=r[2],
            state=r[3],
            outbox_depth=r[4],
            version=r[5],
            created_at=r[6],
        )
        for r in rows
    ]
