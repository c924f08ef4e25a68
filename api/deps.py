"""Dependencies as annotated aliases: the connection, the caller, role checks, patient
scope and pagination.

Authorization model: a patient sees only their own record; a clinician only patients on
their panel; an admin everything; a SMART system client (an EHR integration) the panel
of the clinician it was registered with, through FHIR reads only (``api.fhir.access``).  A patient outside the caller's scope answers 404
(as if it did not exist) and the denied attempt is audited; an endpoint the caller's
role may not use at all answers 403.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import psycopg
from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.security import OAuth2PasswordBearer

from api.core import audit
from api.core.config import ApiSettings
from api.core.db import get_pool
from api.core.principal import Principal
from api.core.security import Role, TokenError, decode_token
from api.schemas import Page
from api.smart.clients import client_principal

T = TypeVar("T")

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_conn(request: Request) -> Iterator[psycopg.Connection[Any]]:
    with get_pool(request.app).connection() as conn:
        yield conn


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ConnDep = Annotated[psycopg.Connection[Any], Depends(get_conn)]
TokenDep = Annotated[str | None, Depends(oauth2_scheme)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"}
    )


def principal_from_token(
    conn: psycopg.Connection[Any], settings: ApiSettings, token: str, token_type: str
) -> Principal:
    try:
        claims = decode_token(
            settings.secret, token, "session" if token_type == "session" else "access"
        )
    except TokenError as exc:
        raise _unauthorized(str(exc)) from exc
    if claims.role == "system":
        client = client_principal(conn, claims.subject, claims.scope, claims.session_id)
        if client is None:
            raise _unauthorized("client revoked or its panel owner disabled")
        return client
    if claims.role == "gateway":
        row = conn.execute(
            "SELECT g.patient_id FROM gateway_credentials c JOIN gateways g ON g.id = c.gateway_id"
            " WHERE c.gateway_id = %s AND c.revoked_at IS NULL",
            (claims.subject,),
        ).fetchone()
        if row is None:
            raise _unauthorized("gateway credentials revoked")
        return Principal("gateway", claims.subject, None, row[0], claims.session_id)
    if not claims.subject.isdigit() or claims.epoch is None:
        raise _unauthorized("invalid token")
    # Revocable server-side (migration 0014): the account must be active, its token
    # epoch unchanged since the token was issued (a password reset or disabling moves
    # it on) and the token's session not ended (signed out).
    user = conn.execute(
        "SELECT username, role, patient_id FROM users WHERE id = %s AND active"
        " AND token_epoch = %s AND NOT EXISTS"
        " (SELECT 1 FROM revoked_sessions r WHERE r.session_id = %s)",
        (int(claims.subject), claims.epoch, claims.session_id),
    ).fetchone()
    if user is None:
        raise _unauthorized("session ended, or account disabled or removed")
    return Principal(
        user[1],
        user[0],
        int(claims.subject),
        user[2],
        claims.session_id,
        token_epoch=claims.epoch,
    )


def get_principal(conn: ConnDep, settings: SettingsDep, token: TokenDep) -> Principal:
    if not token:
        raise _unauthorized("not authenticated")
    return principal_from_token(conn, settings, token, "access")


PrincipalDep = Annotated[Principal, Depends(get_principal)]


CLIENT_REFUSED = (
    "system client tokens may only read FHIR resources under /fhir within their scopes;"
    " this endpoint is for people"
)


def forbidden(
    conn: psycopg.Connection[Any], principal: Principal, request: Request, message: str
) -> HTTPException:
    """403 for a caller whose role may not use an endpoint, audited as ``access.denied``
    like every other refusal (with the patient the path names, if any)."""
    raw = request.path_params.get("patient_id")
    patient_id = int(raw) if isinstance(raw, str) and raw.isdigit() and len(raw) <= 18 else None
    audit.write(
        conn,
        principal,
        "access.denied",
        ip=audit.client_ip(request),
        patient_id=patient_id,
        resource=request.url.path,
        status=status.HTTP_403_FORBIDDEN,
        detail={"reason": message[:120]},
    )
    return HTTPException(status.HTTP_403_FORBIDDEN, message)


def get_person(principal: PrincipalDep, conn: ConnDep, request: Request) -> Principal:
    if principal.is_client:
        raise forbidden(conn, principal, request, CLIENT_REFUSED)
    if not principal.is_person:
        raise forbidden(conn, principal, request, "gateways may not use this endpoint")
    return principal


CurrentUser = Annotated[Principal, Depends(get_person)]


def require_roles(*roles: Role) -> Callable[..., Principal]:
    def check(user: CurrentUser, conn: ConnDep, request: Request) -> Principal:
        if user.role not in roles:
            raise forbidden(
                conn, user, request, f"requires role {' or '.join(roles)}; you are {user.role}"
            )
        return user

    return check


StaffUser = Annotated[Principal, Depends(require_roles("clinician", "admin"))]
AdminUser = Annotated[Principal, Depends(require_roles("admin"))]


def _panel_owner(user: Principal) -> int:
    """The clinician whose panel bounds what the caller sees (a client: its grant)."""
    owner = user.panel_of if user.is_client else user.user_id
    assert owner is not None
    return owner


def visible_patients(conn: psycopg.Connection[Any], user: Principal) -> list[int] | None:
    """Patient ids the caller may see; ``None`` = all (admin)."""
    if user.role == "admin":
        return None
    if user.role in ("clinician", "system"):
        rows = conn.execute(
            "SELECT patient_id FROM clinician_panel WHERE clinician_id = %s ORDER BY patient_id",
            (_panel_owner(user),),
        ).fetchall()
        return [int(r[0]) for r in rows]
    return [] if user.patient_id is None else [user.patient_id]


def can_see(conn: psycopg.Connection[Any], user: Principal, patient_id: int) -> bool:
    if user.role == "admin":
        row = conn.execute("SELECT 1 FROM patients WHERE id = %s", (patient_id,)).fetchone()
        return row is not None
    if user.role in ("clinician", "system"):
        row = conn.execute(
            "SELECT 1 FROM clinician_panel WHERE clinician_id = %s AND patient_id = %s",
            (_panel_owner(user), patient_id),
        ).fetchone()
        return row is not None
    return user.patient_id == patient_id


@dataclass(frozen=True, slots=True)
class PatientScope:
    """A patient the caller may see, with what is needed to audit the access."""

    patient_id: int
    user: Principal
    conn: psycopg.Connection[Any]
    ip: str | None

    def audit(
        self, action: str, resource: str | None = None, detail: dict[str, Any] | None = None
    ) -> None:
        audit.write(
            self.conn,
            self.user,
            action,
            ip=self.ip,
            patient_id=self.patient_id,
            resource=resource,
            detail=detail,
        )


def check_patient(
    conn: psycopg.Connection[Any], user: Principal, patient_id: int, request: Request
) -> PatientScope:
    ip = audit.client_ip(request)
    if not can_see(conn, user, patient_id):
        audit.write(
            conn,
            user,
            "access.denied",
            ip=ip,
            patient_id=patient_id,
            resource=request.url.path,
            status=404,
        )
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"patient {patient_id} not found")
    return PatientScope(patient_id, user, conn, ip)


PatientIdPath = Annotated[int, Path(ge=1, le=2**62, description="patient id")]


def get_patient_scope(
    patient_id: PatientIdPath, conn: ConnDep, user: CurrentUser, request: Request
) -> PatientScope:
    return check_patient(conn, user, patient_id, request)


PatientDep = Annotated[PatientScope, Depends(get_patient_scope)]


@dataclass(frozen=True, slots=True)
class Pagination:
    limit: int
    offset: int

    def next_url(self, request: Request, total: int) -> str | None:
        if self.offset + self.limit >= total:
            return None
        # The configured public URL, not the Host header the client sent.
        settings: ApiSettings = request.app.state.settings
        following = request.url.include_query_params(offset=self.offset + self.limit)
        query = f"?{following.query}" if following.query else ""
        return f"{settings.public_base_url}{following.path}{query}"

    def of(self, items: list[T], total: int, request: Request) -> Page[T]:
        """This page of a list of ``total`` items.  A bare ``Page`` is enough: FastAPI
        validates it into the route's ``response_model`` (a ``Page[...]``)."""
        return Page(
            items=items,
            total=total,
            limit=self.limit,
            offset=self.offset,
            next=self.next_url(request, total),
        )


def get_pagination(
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="items to skip")] = 0,
) -> Pagination:
    return Pagination(limit, offset)


PageDep = Annotated[Pagination, Depends(get_pagination)]

DbId = Annotated[int, Path(ge=1, le=2**62)]
