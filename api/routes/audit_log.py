"""The audit log (admin only, read-only: the table is append-only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from psycopg.rows import dict_row
from pydantic import AwareDatetime

from api.core import audit
from api.core.db import count_rows
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
    total = count_rows(conn, f"SELECT count(*) FROM audit_log WHERE {where}", params)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id, at, actor, actor_id, role, action, patient_id, resource, client_ip,"
            f" status, detail FROM audit_log WHERE {where} ORDER BY at DESC, id DESC"
            " LIMIT %s OFFSET %s",
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
    return page.of([AuditOut(**r) for r in rows], total, request)
