"""Sign-in (OAuth2 password flow), refresh-token rotation, sign-out, and "who am I"."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Form, HTTPException, Request, Response, status

from api.core import audit
from api.core.config import ApiSettings
from api.core.errors import COMMON, PUBLIC, TOO_MANY, UNAUTHORIZED
from api.core.principal import Principal
from api.core.revocation import revoke_session
from api.core.security import (
    TokenType,
    create_token,
    digest,
    new_refresh_token,
    verify_password,
)
from api.core.throttle import Throttle, Throttled
from api.deps import ConnDep, CurrentUser, SettingsDep
from api.schemas import RefreshIn, TokenPair, UserOut
from api.smart.token import ClientGrant, client_credentials, oauth_error

router = APIRouter(prefix="/auth", tags=["auth"])

USER_COLUMNS = "id, username, role, patient_id, display_name, active, created_at"


def user_out(row: tuple[Any, ...]) -> UserOut:
    return UserOut(
        id=row[0],
        username=row[1],
        role=row[2],
        patient_id=row[3],
        display_name=row[4],
        active=row[5],
        created_at=row[6],
    )


def login_throttle(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.login_throttle
    return throttle


def _audit_refused(
    conn: psycopg.Connection[Any], username: str, ip: str | None, code: int, reason: str
) -> None:
    # No principal yet: the entry names the account that was tried.
    audit.write(
        conn,
        None,
        "auth.login",
        ip=ip,
        status=code,
        actor=username[:64],
        detail={"reason": reason},
    )


def authenticate(
    conn: psycopg.Connection[Any],
    settings: ApiSettings,
    throttle: Throttle,
    username: str,
    password: str,
    ip: str | None,
) -> Principal:
    """Check a username/password with rate limiting per username+IP; audits the outcome.

    The attempt is counted before the password is checked (see ``api.core.throttle``)
    and forgotten, with the key's earlier failures, when it succeeds."""
    key = f"{username.lower()}|{ip}"
    try:
        throttle.acquire(conn, key)
    except Throttled as exc:
        _audit_refused(conn, username, ip, status.HTTP_429_TOO_MANY_REQUESTS, "rate limited")
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed sign-ins; retry in {exc.retry_after} s",
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc
    row = conn.execute(
        "SELECT id, username, role, patient_id, password_hash, active, token_epoch FROM users"
        " WHERE lower(username) = lower(%s)",
        (username,),
    ).fetchone()
    ok = verify_password(password, row[4] if row else None)
    if row is None or not ok or not row[5]:
        _audit_refused(conn, username, ip, status.HTTP_401_UNAUTHORIZED, "bad credentials")
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    throttle.reset(conn, key)
    principal = Principal(row[2], row[1], int(row[0]), row[3], token_epoch=int(row[6]))
    audit.write(conn, principal, "auth.login", ip=ip, patient_id=row[3])
    return principal


def signed_token(
    settings: ApiSettings,
    user: Principal,
    token_type: TokenType = "access",
    session_id: str | None = None,
) -> str:
    """A token for a person, valid for the access-token lifetime: a bearer token, or the
    dashboard's session cookie."""
    token, _ = create_token(
        settings.secret,
        subject=str(user.user_id),
        role=user.role,
        patient_id=user.patient_id,
        minutes=settings.access_token_minutes,
        token_type=token_type,
        session_id=session_id,
        epoch=user.token_epoch,
    )
    return token


def issue_tokens(
    conn: psycopg.Connection[Any],
    settings: ApiSettings,
    user: Principal,
    family: uuid.UUID | None = None,
) -> TokenPair:
    family = family or uuid.uuid4()
    # The access token's session is its refresh family: signing out (or a replayed
    # refresh token) revokes the family and, through ``revoked_sessions``, its access
    # tokens too.
    access = signed_token(settings, user, session_id=str(family))
    refresh = new_refresh_token()
    conn.execute(
        "INSERT INTO refresh_tokens (user_id, token_hash, family, expires_at)"
        " VALUES (%s, %s, %s, %s)",
        (
            user.user_id,
            digest(refresh),
            family,
            datetime.now(UTC) + timedelta(days=settings.refresh_token_days),
        ),
    )
    return TokenPair(
        access_token=access,
        expires_in=settings.access_token_minutes * 60,
        refresh_token=refresh,
    )


FormStr = Annotated[str | None, Form()]


@router.post(
    "/token",
    response_model=TokenPair,
    summary="Token endpoint: password (people) or client_credentials (SMART system clients)",
    responses={**UNAUTHORIZED, **TOO_MANY, **PUBLIC},
)
def login(
    conn: ConnDep,
    settings: SettingsDep,
    request: Request,
    grant_type: FormStr = None,
    username: FormStr = None,
    password: FormStr = None,
    scope: FormStr = None,
    client_id: FormStr = None,
    client_secret: FormStr = None,
    client_assertion_type: FormStr = None,
    client_assertion: FormStr = None,
) -> TokenPair | Response:
    """``grant_type=password`` (or none): exchange username and password for a 15-minute
    access token and a refresh token.  ``grant_type=client_credentials``: a registered
    system client (``homevitals api add-client``) gets an access token for FHIR reads
    within its SMART scopes; errors are RFC 6749 bodies (``error``, ``error_description``
    and ``detail``)."""
    ip = audit.client_ip(request)
    if grant_type == "client_credentials":
        grant = ClientGrant(
            client_id,
            client_secret,
            scope,
            request.headers.get("authorization"),
            client_assertion or client_assertion_type,
        )
        return client_credentials(conn, settings, login_throttle(request), grant, ip)
    if grant_type not in (None, "password"):
        return oauth_error(400, "unsupported_grant_type", f"unsupported grant_type {grant_type!r}")
    if username is None or password is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "username and password are required"
        )
    user = authenticate(conn, settings, login_throttle(request), username, password, ip)
    return issue_tokens(conn, settings, user)


@router.post(
    "/refresh",
    response_model=TokenPair,
    summary="Rotate a refresh token",
    responses={**UNAUTHORIZED, **PUBLIC},
)
def refresh(body: RefreshIn, conn: ConnDep, settings: SettingsDep, request: Request) -> TokenPair:
    """A new access token and a new refresh token; the old refresh token stops working.

    Presenting an already-rotated token revokes its whole family (theft detection)."""
    ip = audit.client_ip(request)
    problem: str | None = None
    with conn.transaction():
        row = conn.execute(
            "SELECT t.id, t.user_id, t.family, t.expires_at, t.rotated_at, t.revoked_at,"
            " u.username, u.role, u.patient_id, u.active, u.token_epoch"
            " FROM refresh_tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.token_hash = %s FOR UPDATE OF t",
            (digest(body.refresh_token),),
        ).fetchone()
        if row is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid refresh token")
        token_id, user_id, family, expires_at, rotated_at, revoked_at = row[:6]
        user = Principal(row[7], row[6], int(user_id), row[8], token_epoch=int(row[10]))
        if rotated_at is not None or revoked_at is not None:
            # Committed before answering: a replayed token ends the whole session family.
            conn.execute(
                "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now())"
                " WHERE family = %s",
                (family,),
            )
            revoke_session(conn, str(family), int(user_id), settings.access_token_minutes)
            audit.write(
                conn, user, "auth.refresh_reuse", ip=ip, status=401, detail={"family": str(family)}
            )
            problem = "refresh token already used or revoked"
        elif expires_at <= datetime.now(UTC) or not row[9]:
            problem = "refresh token expired"
        else:
            conn.execute("UPDATE refresh_tokens SET rotated_at = now() WHERE id = %s", (token_id,))
            return issue_tokens(conn, settings, user, family)
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, problem)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a refresh token (and its rotation family)",
    responses=PUBLIC,
)
def logout(body: RefreshIn, conn: ConnDep, settings: SettingsDep, request: Request) -> Response:
    """Ends the session: the refresh token's family and the access tokens issued with it."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE family ="
            " (SELECT family FROM refresh_tokens WHERE token_hash = %s)"
            " RETURNING family, user_id",
            (digest(body.refresh_token),),
        ).fetchone()
        if row is not None:
            revoke_session(conn, str(row[0]), int(row[1]), settings.access_token_minutes)
            who = conn.execute(
                "SELECT username, role, patient_id FROM users WHERE id = %s", (row[1],)
            ).fetchone()
            user = None if who is None else Principal(who[1], who[0], int(row[1]), who[2])
            audit.write(
                conn,
                user,
                "auth.logout",
                ip=audit.client_ip(request),
                detail={"family": str(row[0])},
            )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=UserOut, summary="The signed-in user", responses=COMMON)
def me(user: CurrentUser, conn: ConnDep) -> UserOut:
    row = conn.execute(
        f"SELECT {USER_COLUMNS} FROM users WHERE id = %s", (user.user_id,)
    ).fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    return user_out(row)
