"""A clinician's review of the pairings ``ingest.custody`` held: list them, approve (the
device moves at a time; readings before it stay with the old patient) or reject, and
read a device's custody timeline.  The API (``api/routes/custody.py``) adds who may
decide and the audit; this module keeps the bindings, the custodian, the flag and the
timeline consistent in the caller's transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from ingest import registry
from ingest.custody import (
    CUSTODY_RULE,
    UPDATE_DEVICE,
    close_binding,
    end_custody,
    hub_patient_of,
    owner_of,
    record,
)

log = logging.getLogger("homevitals.ingest")


class CustodyRequestNotFoundError(LookupError):
    pass


class CustodyConflictError(ValueError):
    """The decision cannot be applied as asked (already decided, custody changed since
    the request was held, a move time before the current binding began)."""


class CustodyInvalidError(ValueError):
    """The decision itself is malformed (no reason, a move time in the future)."""


@dataclass(frozen=True, slots=True)
class CustodyRequest:
    id: int
    device_id: str
    from_gateway: str | None
    from_patient: int | None
    to_gateway: str
    to_patient: int | None
    event: str
    requested_at: datetime
    received_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    moved_at: datetime | None

    @property
    def patients(self) -> list[int]:
        """The patients the decision is about (a clinician must have them all in scope)."""
        return sorted({p for p in (self.from_patient, self.to_patient) if p is not None})


_REQUEST_COLUMNS = ", ".join(CustodyRequest.__dataclass_fields__)


def _request(row: tuple[Any, ...]) -> CustodyRequest:
    return CustodyRequest(*row)


def get_request(
    conn: psycopg.Connection[Any], request_id: int, lock: bool = False
) -> CustodyRequest:
    row = conn.execute(
        f"SELECT {_REQUEST_COLUMNS} FROM custody_requests WHERE id = %s"
        + (" FOR UPDATE" if lock else ""),
        (request_id,),
    ).fetchone()
    if row is None:
        raise CustodyRequestNotFoundError(f"custody request {request_id} not found")
    return _request(row)


def list_requests(
    conn: psycopg.Connection[Any],
    *,
    statuses: list[str] | None = None,
    within: list[int] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[CustodyRequest], int]:
    """A page of requests, newest first, and how many match.  ``within`` given: only
    requests every patient of which is in it (what a clinician of that panel decides)."""
    clauses: list[str] = ["true"]
    params: list[object] = []
    if statuses is not None:
        clauses.append("status = ANY(%s)")
        params.append(statuses)
    if within is not None:
        clauses.append(
            "coalesce(from_patient, to_patient) IS NOT NULL"
            " AND (from_patient IS NULL OR from_patient = ANY(%s))"
            " AND (to_patient IS NULL OR to_patient = ANY(%s))"
        )
        params += [within, within]
    where = " AND ".join(clauses)
    rows = conn.execute(
        f"SELECT {_REQUEST_COLUMNS} FROM custody_requests WHERE {where}"
        " ORDER BY received_at DESC, id DESC LIMIT %s OFFSET %s",
        [*params, limit, offset],
    ).fetchall()
    total = conn.execute(f"SELECT count(*) FROM custody_requests WHERE {where}", params).fetchone()
    return [_request(r) for r in rows], int(total[0]) if total else 0


def decide(
    conn: psycopg.Connection[Any],
    request_id: int,
    *,
    approve: bool,
    actor: str,
    reason: str,
    at: datetime | None = None,
    actor_id: int | None = None,
    ip: str | None = None,
) -> CustodyRequest:
    """Approve (move the device at ``at``, default now) or reject a held request, in the
    caller's transaction.  Approval moves it only if its custody is still what the
    clinician saw when it was held; readings measured before ``at`` stay where they are."""
    if not reason.strip():
        raise CustodyInvalidError("a custody decision needs a reason")
    now = datetime.now(UTC)
    request = get_request(conn, request_id, lock=True)
    if request.status != "pending":
        raise CustodyConflictError(f"custody request {request_id} is already {request.status}")
    device = request.device_id
    moved_at: datetime | None = None
    if approve:
        moved_at = at or now
        if moved_at.tzinfo is None:
            raise CustodyInvalidError("'at' needs a time zone offset")
        if moved_at > now:
            raise CustodyInvalidError("'at' is in the future")
        _check_unchanged(conn, request, moved_at)
        close_binding(conn, device, moved_at)
        end_custody(conn, device, request.from_gateway, moved_at)
        if request.to_patient is not None:
            conn.execute(
                "INSERT INTO device_bindings (device_id, patient_id, valid, source)"
                " VALUES (%s, %s, tstzrange(%s, NULL), 'custody')",
                (device, request.to_patient, moved_at),
            )
        info = conn.execute(
            "SELECT device_info FROM custody_requests WHERE id = %s", (request_id,)
        ).fetchone()
        details: dict[str, Any] = dict(info[0]) if info is not None else {}
        conn.execute(
            UPDATE_DEVICE,
            {
                "device": device,
                "gateway": request.to_gateway,
                **{k: details.get(k) for k in ("name", "manufacturer", "model", "serial")},
                "profile": details.get("profile"),
            },
        )
        registry.attribute_pending(conn, [device])
    status = "approved" if approve else "rejected"
    conn.execute(
        "UPDATE custody_requests SET status = %s, decided_by = %s, decided_by_id = %s,"
        " decided_at = now(), decided_from = %s, reason = %s, moved_at = %s WHERE id = %s",
        (status, actor, actor_id, ip, reason, moved_at, request_id),
    )
    record(
        conn,
        device,
        f"custody.{status}",
        moved_at or now,
        gateway=None,
        actor=actor,
        detail={
            "request": request_id,
            "from_gateway": request.from_gateway,
            "from_patient": request.from_patient,
            "to_gateway": request.to_gateway,
            "to_patient": request.to_patient,
            "reason": reason,
            "client_ip": ip,
        },
    )
    _settle_flag(conn, request, actor, f"custody request {request_id} {status}: {reason}")
    log.info(
        "custody: request %d for device %r %s by %s",
        request_id,
        device,
        status,
        actor,
        extra={"device": device, "request": request_id, "decision": status, "actor": actor},
    )
    return get_request(conn, request_id)


def _check_unchanged(
    conn: psycopg.Connection[Any], request: CustodyRequest, moved_at: datetime
) -> None:
    device = request.device_id
    row = conn.execute(
        "SELECT gateway_id FROM devices WHERE id = %s FOR UPDATE", (device,)
    ).fetchone()
    custodian = None if row is None or row[0] is None else str(row[0])
    if (custodian, owner_of(conn, device)) != (request.from_gateway, request.from_patient):
        raise CustodyConflictError(
            f"the custody of device {device!r} changed since request {request.id} was held;"
            " reject it (the hub can pair again)"
        )
    if hub_patient_of(conn, request.to_gateway) != request.to_patient:
        raise CustodyConflictError(
            f"hub {request.to_gateway!r} is enrolled to another patient since request"
            f" {request.id} was held; reject it"
        )
    start = conn.execute(
        "SELECT lower(valid) FROM device_bindings WHERE device_id = %s AND upper_inf(valid)",
        (device,),
    ).fetchone()
    if start is not None and start[0] is not None and start[0] >= moved_at:
        raise CustodyConflictError("'at' must be after the current binding's start")
    # Stored readings keep their patient: a move dated before one of them would leave
    # the chart contradicting the bindings.  (The patient index, newest first.)
    if request.from_patient is not None:
        for table in registry.READING_TABLES:
            last = conn.execute(
                f"SELECT max(time) FROM (SELECT time FROM {table} WHERE patient_id = %s"
                " AND device_id = %s ORDER BY time DESC LIMIT 1) t".encode(),
                (request.from_patient, device),
            ).fetchone()
            if last is not None and last[0] is not None and last[0] >= moved_at:
                raise CustodyConflictError(
                    f"'at' must be after the device's last reading in patient"
                    f" {request.from_patient}'s chart ({last[0].isoformat()})"
                )


def _settle_flag(
    conn: psycopg.Connection[Any], request: CustodyRequest, actor: str, note: str
) -> None:
    """Resolve the patient's custody flag once no request about them is pending."""
    patient = request.from_patient if request.from_patient is not None else request.to_patient
    if patient is None:
        return
    pending = conn.execute(
        "SELECT 1 FROM custody_requests WHERE status = 'pending'"
        " AND coalesce(from_patient, to_patient) = %s LIMIT 1",
        (patient,),
    ).fetchone()
    if pending is not None:
        return
    row = conn.execute(
        "UPDATE flags SET status = 'resolved', resolved_by = %s, resolved_at = now(),"
        " resolve_note = %s, condition_active = false, cleared_at = now(), updated_at = now(),"
        " acknowledged_by = coalesce(acknowledged_by, %s),"
        " acknowledged_at = coalesce(acknowledged_at, now())"
        " WHERE patient_id = %s AND rule_id = %s AND status <> 'resolved' RETURNING id",
        (actor, note, actor, patient, CUSTODY_RULE),
    ).fetchone()
    if row is not None:
        conn.execute(
            "INSERT INTO flag_events (flag_id, actor, action, note) VALUES (%s, %s, 'resolved', %s)",
            (row[0], actor, note),
        )


def device_timeline(
    conn: psycopg.Connection[Any], device: str, limit: int = 100
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, at, recorded_at, gateway_id, actor, action, detail FROM device_events"
        " WHERE device_id = %s ORDER BY id DESC LIMIT %s",
        (device, limit),
    ).fetchall()
    keys = ("id", "at", "recorded_at", "gateway_id", "actor", "action", "detail")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def device_patients(conn: psycopg.Connection[Any], device: str) -> list[int]:
    """Every patient the device was ever bound to (who may see its timeline)."""
    rows = conn.execute(
        "SELECT DISTINCT patient_id FROM device_bindings WHERE device_id = %s ORDER BY 1",
        (device,),
    ).fetchall()
    return [int(r[0]) for r in rows]
