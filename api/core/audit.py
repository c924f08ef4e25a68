"""Append-only audit trail: who (actor, role), did what (action, resource), about whom
(patient), when, from where (client IP), with what outcome (HTTP status)."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg

from api.core.principal import Principal


def client_ip(request: Any) -> str | None:
    client = getattr(request, "client", None)
    return None if client is None else str(client.host)


def write(
    conn: psycopg.Connection[Any],
    principal: Principal | None,
    action: str,
    *,
    ip: str | None,
    patient_id: int | None = None,
    resource: str | None = None,
    status: int = 200,
    detail: dict[str, Any] | None = None,
    actor: str | None = None,
    role: str | None = None,
) -> None:
    """Append one row; the database chains it to the previous one (migration 0009)."""
    conn.execute(
        "INSERT INTO audit_log (actor, actor_id, role, action, patient_id, resource, client_ip,"
        " status, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            actor or (principal.name if principal else "anonymous"),
            principal.user_id if principal else None,
            role or (principal.role if principal else "anonymous"),
            action,
            patient_id,
            resource,
            ip,
            status,
            orjson.dumps(detail or {}, default=str).decode(),
        ),
    )
