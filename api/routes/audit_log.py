"""The audit log (admin only, read-only: the table is append-only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime

from api.core import audit
from api.core.errors import COMMON
from api.deps import AdminUser, ConnDep, PageDep
from api.schemas import AuditOut, Page

router = APIRouter(prefix="/audit", tags=["audit"], responses=COMMON)


@router.get("", response_model=Page[AuditOut], summary="Audit entries, newest first")
def get_audit(
    admin: AdminUser,
    conn: ConnDep,
    page: PageDep,
    request: Request,
    patient_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    actor: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9._@:-]+$")] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+$")] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> Page[AuditOut]:
    clauses: list[str] = ["true"]
    params: list[Any] = []
    for sql, value in (
        ("patient_id = %s", patient_id),
        ("actor = %s", actor),
        ("action = %s", action),
        ("at >= %s", since),
        ("at < %s", until),
    ):
        if value is not None:
            clauses.append(sql)
            params.append(value)
    where = " AND ".join(clauses)
    row = conn.execute(f"SELECT count(*) FROM audit_log WHERE {where}", params).fetchone()
    total = int(row[0]) if row else 0
    rows = conn.execute(
        "SELECT id, at, actor, actor_id, role, action, patient_id, resource, client_ip, status,"
        f" detail FROM audit_log WHERE {where} ORDER BY at DESC, id DESC LIMIT %s OFFSET %s",
        [*params, page.limit, page.offset],
    ).fetchall()
    audit.write(
        conn,
        admin,
        "audit.read",
        ip=audit.client_ip(request),
        resource="audit",
        patient_id=patient_id,
    )
    items = [
        AuditOut(
            id=r[0],
            at=r[1],
            actor=r[2],
            actor_id=r[3],
            role=r[4],
            action=r[5],
            patient_id=r[6],
            resource=r[7],
            client_ip=r[8],
            status=r[9],
            detail=r[10],
        )
        for r in rows
    ]
    return Page[AuditOut](
        items=items,
        total=total,
        limit=page.limit,
        offset=page.offset,
        next=page.next_url(request, total),
    )
