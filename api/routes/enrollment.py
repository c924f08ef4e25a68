"""Patient self-registration with an activation code, and gateway enrolment.

Flow (MyChart-like): the clinic creates the patient and hands over an activation code;
the patient registers with the code plus name, date of birth and MRN and picks a
password; later a gateway enrolment code (from the clinic or the patient's portal) is
entered on the home hub, which trades it for its MQTT credentials here.  Codes are
single-use and expire.  A wrong code, or details that do not match the code's patient,
give one message that does not reveal whether the MRN exists.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Request, status

from api.core import audit
from api.core.errors import BAD_REQUEST, COMMON, CONFLICT, PUBLIC, TOO_MANY, UNAUTHORIZED
from api.core.principal import Principal
from api.core.security import (
    create_token,
    digest,
    hash_password,
    new_secret,
    normalize_code,
    verify_password,
)
from api.core.throttle import Throttle, Throttled
from api.deps import ConnDep, PrincipalDep, SettingsDep
from api.routes.auth import USER_COLUMNS, user_out
from api.schemas import (
    GatewayEnrolled,
    GatewayEnrollIn,
    GatewayOut,
    GatewayTokenIn,
    RegisterIn,
    TokenPair,
    UserOut,
)
from ingest.patients import attach_gateway
from readings import SERVICE_ACCOUNT_PREFIX, is_service_account

router = APIRouter(tags=["enrollment"])

MISMATCH = (
    "activation failed: the code, or the name, date of birth and MRN entered with it,"
    " do not match our records"
)
BAD_GATEWAY_CODE = "invalid enrolment code"

ProvisionGateway = Callable[[str, str], None]


def register_throttle(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.register_throttle
    return throttle


ThrottleDep = Annotated[Throttle, Depends(register_throttle)]


def _same_text(a: str | None, b: str) -> bool:
    def norm(s: str) -> str:
        return unicodedata.normalize("NFKC", s).strip().casefold()

    return a is not None and norm(a) == norm(b)


def _attempt(throttle: Throttle, conn: psycopg.Connection[Any], key: str) -> datetime:
    """Count an attempt (429 when over the limit); successes are forgiven afterwards, so
    only failures count, as the limit promises."""
    try:
        return throttle.acquire(conn, key)
    except Throttled as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many attempts; retry in {exc.retry_after} s",
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc


@router.post(
    "/auth/register",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    summary="Patient registration with the clinic's activation code",
    responses={**PUBLIC, **CONFLICT, **TOO_MANY},
)
def register(body: RegisterIn, conn: ConnDep, throttle: ThrottleDep, request: Request) -> UserOut:
    ip = audit.client_ip(request)
    key = f"register|{ip}"
    attempt = _attempt(throttle, conn, key)
    problem: tuple[int, str] | None = None
    registered: UserOut | None = None
    with conn.transaction():
        row = conn.execute(
            "SELECT c.id, c.patient_id, c.expires_at, c.used_at, p.given_name, p.family_name,"
            " p.birth_date, p.mrn FROM activation_codes c JOIN patients p ON p.id = c.patient_id"
            " WHERE c.code_hash = %s FOR UPDATE OF c",
            (digest(normalize_code(body.activation_code)),),
        ).fetchone()
        matches = (
            row is not None
            and _same_text(row[4], body.given_name)
            and _same_text(row[5], body.family_name)
            and row[6] == body.birth_date
            and _same_text(row[7], body.mrn)
        )
        if row is None or not matches:
            problem = (400, MISMATCH)
        elif row[3] is not None:
            problem = (400, "this activation code was already used; ask your clinic for a new one")
        elif row[2] <= datetime.now(UTC):
            problem = (400, "this activation code has expired; ask your clinic for a new one")
        elif conn.execute("SELECT 1 FROM users WHERE patient_id = %s", (row[1],)).fetchone():
            problem = (409, "this patient already has an account")
        else:
            assert row is not None
            created = conn.execute(
                "INSERT INTO users (username, password_hash, role, patient_id)"
                " VALUES (%s, %s, 'patient', %s)"
                f" ON CONFLICT (lower(username)) DO NOTHING RETURNING {USER_COLUMNS}",
                (body.username, hash_password(body.password), row[1]),
            ).fetchone()
            if created is None:
                problem = (409, f"username {body.username!r} is taken; choose another")
            else:
                conn.execute(
                    "UPDATE activation_codes SET used_at = now(), used_by = %s WHERE id = %s",
                    (created[0], row[0]),
                )
                user = Principal("patient", body.username, int(created[0]), int(row[1]))
                audit.write(
                    conn,
                    user,
                    "auth.register",
                    ip=ip,
                    patient_id=int(row[1]),
                    resource=f"user/{created[0]}",
                )
                registered = user_out(created)
    if registered is not None:
        throttle.forgive(conn, key, attempt)
        return registered
    assert problem is not None
    audit.write(
        conn, None, "auth.register", ip=ip, status=problem[0], detail={"reason": problem[1][:60]}
    )
    raise HTTPException(problem[0], problem[1])


@router.post(
    "/gateways/enroll",
    response_model=GatewayEnrolled,
    status_code=status.HTTP_201_CREATED,
    summary="Enrol a home gateway with an enrolment code",
    responses={**PUBLIC, **CONFLICT, **TOO_MANY},
)
def enroll_gateway(
    body: GatewayEnrollIn,
    conn: ConnDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    request: Request,
) -> GatewayEnrolled:
    """Registers the gateway to the code's patient, returns its MQTT credentials (shown
    once; the broker ACL confines it to ``homevitals/v1/gw/<gateway_id>/#``) and binds
    the devices already paired on it.  Devices paired later are bound by ingest."""
    ip = audit.client_ip(request)
    key = f"enroll|{ip}"
    attempt = _attempt(throttle, conn, key)
    provision: ProvisionGateway | None = request.app.state.provision_gateway
    problem: tuple[int, str] | None = None
    enrolled: GatewayEnrolled | None = None
    gateway_id = body.gateway_id or f"gw-{secrets.token_hex(5)}"
    if is_service_account(gateway_id):
        # Before the code is even looked at: the broker account of that name belongs to
        # a service (ingest, admin), and enrolment would hand its password to the hub.
        problem = (
            400,
            f"gateway id {gateway_id!r} is reserved: ids starting with"
            f" {SERVICE_ACCOUNT_PREFIX!r} name the broker's service accounts",
        )
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT id, patient_id, expires_at, used_at FROM gateway_enrollment_codes"
                " WHERE code_hash = %s FOR UPDATE",
                (digest(normalize_code(body.enrollment_code)),),
            ).fetchone()
            if problem is not None:
                pass
            elif row is None:
                problem = (400, BAD_GATEWAY_CODE)
            elif row[3] is not None:
                problem = (400, "this enrolment code was already used")
            elif row[2] <= datetime.now(UTC):
                problem = (400, "this enrolment code has expired")
            else:
                problem = _not_owned(conn, gateway_id, int(row[1]))
            if problem is None:
                assert row is not None
                patient_id = int(row[1])
                enrolled = _enroll(
                    conn,
                    settings.mqtt_public_url,
                    provision,
                    gateway_id,
                    patient_id,
                    int(row[0]),
                    ip,
                )
    except HTTPException:
        # Only the broker provisioning raises here: its failure is not the caller's.
        throttle.forgive(conn, key, attempt)
        raise
    if enrolled is not None:
        throttle.forgive(conn, key, attempt)
        return enrolled
    assert problem is not None
    audit.write(
        conn,
        None,
        "gateway.enroll",
        ip=ip,
        status=problem[0],
        resource=f"gateway/{gateway_id}",
        detail={"reason": problem[1], "gateway_id": gateway_id},
    )
    raise HTTPException(problem[0], problem[1])


def _not_owned(
    conn: psycopg.Connection[Any], gateway_id: str, patient_id: int
) -> tuple[int, str] | None:
    """Enrolment creates a new gateway account or re-keys one this patient owns; it never
    overwrites an account it does not own.  A gateway ingest already knows without an
    owner got its broker credentials elsewhere (the operator): re-keying it here would
    hand its account, and the devices paired on it, to whoever holds a code."""
    owner = conn.execute(
        "SELECT patient_id FROM gateways WHERE id = %s FOR UPDATE", (gateway_id,)
    ).fetchone()
    if owner is None or owner[0] == patient_id:
        return None
    if owner[0] is None:
        return (409, f"gateway {gateway_id} is already registered and not enrolled to you")
    return (409, f"gateway {gateway_id} is enrolled to another patient")


def _enroll(
    conn: psycopg.Connection[Any],
    mqtt_url: str | None,
    provision: ProvisionGateway | None,
    gateway_id: str,
    patient_id: int,
    code_id: int,
    ip: str | None,
) -> GatewayEnrolled:
    secret = new_secret()
    devices = attach_gateway(conn, gateway_id, patient_id)
    conn.execute(
        "INSERT INTO gateway_credentials (gateway_id, secret_hash) VALUES (%s, %s)"
        " ON CONFLICT (gateway_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash,"
        " created_at = now(), revoked_at = NULL",
        (gateway_id, hash_password(secret)),
    )
    conn.execute(
        "UPDATE gateway_enrollment_codes SET used_at = now(), gateway_id = %s WHERE id = %s",
        (gateway_id, code_id),
    )
    audit.write(
        conn,
        Principal("gateway", gateway_id, None, patient_id),
        "gateway.enroll",
        ip=ip,
        patient_id=patient_id,
        resource=f"gateway/{gateway_id}",
        detail={"bound_devices": devices},
    )
    if provision is not None:
        # Inside the transaction: if the broker cannot be provisioned nothing is kept.
        try:
            provision(gateway_id, secret)
        except Exception as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "could not provision broker credentials"
            ) from exc
    return GatewayEnrolled(
        gateway_id=gateway_id,
        patient_id=patient_id,
        mqtt_username=gateway_id,
        mqtt_password=secret,
        mqtt_url=mqtt_url,
        topic_prefix=f"homevitals/v1/gw/{gateway_id}/",
        bound_devices=devices,
    )


@router.post(
    "/gateways/token",
    response_model=TokenPair,
    summary="Gateway service principal sign-in (client credentials)",
    responses={**UNAUTHORIZED, **TOO_MANY, **BAD_REQUEST, 422: COMMON[422]},
)
def gateway_token(
    body: GatewayTokenIn, conn: ConnDep, settings: SettingsDep, request: Request
) -> TokenPair:
    ip = audit.client_ip(request)
    throttle: Throttle = request.app.state.login_throttle
    key = f"gw:{body.gateway_id}|{ip}"
    actor = body.gateway_id[:64]

    def refused(code: int, reason: str) -> None:
        # Every gateway sign-in is on record, as people's are (auth.login).
        audit.write(
            conn,
            None,
            "gateway.token",
            ip=ip,
            status=code,
            actor=actor,
            role="gateway",
            resource=f"gateway/{actor}",
            detail={"reason": reason},
        )

    try:
        attempt = _attempt(throttle, conn, key)
    except HTTPException as exc:
        refused(exc.status_code, "rate limited")
        raise
    if is_service_account(body.gateway_id):
        # Never a gateway (enrolment refuses these names); same answer as a wrong secret.
        refused(status.HTTP_401_UNAUTHORIZED, "reserved service account name")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid gateway credentials")
    row = conn.execute(
        "SELECT c.secret_hash, g.patient_id FROM gateway_credentials c"
        " JOIN gateways g ON g.id = c.gateway_id WHERE c.gateway_id = %s AND c.revoked_at IS NULL",
        (body.gateway_id,),
    ).fetchone()
    if not verify_password(body.secret, row[0] if row else None) or row is None:
        refused(status.HTTP_401_UNAUTHORIZED, "bad credentials")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid gateway credentials")
    throttle.forgive(conn, key, attempt)
    audit.write(
        conn,
        Principal("gateway", body.gateway_id, None, row[1]),
        "gateway.token",
        ip=ip,
        patient_id=row[1],
        resource=f"gateway/{actor}",
    )
    token, _ = create_token(
        settings.secret,
        subject=body.gateway_id,
        role="gateway",
        patient_id=row[1],
        minutes=settings.access_token_minutes,
    )
    return TokenPair(access_token=token, expires_in=settings.access_token_minutes * 60)


@router.get(
    "/gateways/me",
    response_model=GatewayOut,
    summary="The calling gateway's own registration",
    responses=COMMON,
)
def gateway_me(principal: PrincipalDep, conn: ConnDep) -> GatewayOut:
    if principal.role != "gateway":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only gateways have a gateway registration")
    row = conn.execute(
        "SELECT id, patient_id, last_seen, state, outbox_depth, version, created_at"
        " FROM gateways WHERE id = %s",
        (principal.name,),
    ).fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "gateway not found")
    return GatewayOut(
        id=row[0],
        patient_id=row[1],
        last_seen=row[2],
        state=row[3],
        outbox_depth=row[4],
        version=row[5],
        created_at=row[6],
    )
