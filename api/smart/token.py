"""The OAuth2 client-credentials grant (RFC 6749 4.4) for SMART system clients, served by
the token endpoint ``POST /api/v1/auth/token`` with ``grant_type=client_credentials``.

Client authentication: ``client_secret_basic`` (HTTP Basic) or ``client_secret_post``
(``client_id``/``client_secret`` in the form), never both.  Errors are RFC 6749 5.2
bodies (``error``, ``error_description``) that also carry this API's ``detail``.
Attempts are limited like every sign-in (per client id + IP, counted before the secret
is checked) and audited as ``auth.client``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import psycopg
from fastapi import status
from fastapi.responses import JSONResponse

from api.core import audit
from api.core.config import ApiSettings
from api.core.principal import Principal
from api.core.security import create_token, verify_password
from api.core.throttle import Throttle, Throttled
from api.smart import clients
from api.smart import scopes as sc

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True, slots=True)
class ClientGrant:
    """What the form and the Authorization header of a token request said."""

    client_id: str | None
    client_secret: str | None
    scope: str | None
    authorization: str | None
    assertion: str | None


def oauth_error(
    status_code: int, error: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": error, "error_description": description, "detail": description}
    return JSONResponse(body, status_code=status_code, headers={**NO_STORE, **(headers or {})})


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    # RFC 6749 2.3.1: both parts are form-urlencoded before Basic encoding.
    return (unquote(user), unquote(password)) if sep else None


class _Refused(Exception):
    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def _credentials(grant: ClientGrant) -> tuple[str, str, bool]:
    """(client id, secret, whether Basic was used), or raise with the OAuth2 error."""
    if grant.assertion is not None:
        raise _Refused(
            oauth_error(
                400, "invalid_client", "client_assertion (private_key_jwt) is not supported"
            )
        )
    basic = _basic(grant.authorization) if grant.authorization else None
    if grant.authorization and basic is None:
        raise _Refused(oauth_error(400, "invalid_request", "malformed Basic authorization"))
    if basic is not None and grant.client_secret is not None:
        raise _Refused(oauth_error(400, "invalid_request", "use one client authentication method"))
    if basic is not None:
        return basic[0], basic[1], True
    if not grant.client_id or grant.client_secret is None:
        raise _Refused(
            oauth_error(
                401,
                "invalid_client",
                "client authentication required (client_secret_basic or client_secret_post)",
                {"WWW-Authenticate": 'Basic realm="homevitals"'},
            )
        )
    return grant.client_id, grant.client_secret, False


def client_credentials(
    conn: psycopg.Connection[Any],
    settings: ApiSettings,
    throttle: Throttle,
    grant: ClientGrant,
    ip: str | None,
) -> JSONResponse:
    try:
        client_id, secret, used_basic = _credentials(grant)
        requested = sc.parse(grant.scope) if grant.scope is not None else None
    except _Refused as refused:
        return refused.response
    except sc.ScopeError as exc:
        return oauth_error(400, "invalid_scope", str(exc))
    actor = (clients.ACTOR_PREFIX + client_id)[:64]
    key = f"client:{client_id}|{ip}"
    try:
        throttle.acquire(conn, key)
    except Throttled as exc:
        audit.write(
            conn,
            None,
            "auth.client",
            ip=ip,
            status=429,
            actor=actor,
            detail={"reason": "rate limited"},
        )
        return oauth_error(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "invalid_client",
            f"too many failed sign-ins; retry in {exc.retry_after} s",
            {"Retry-After": str(exc.retry_after)},
        )
    found = clients.load_client(conn, client_id) if len(client_id) <= 64 else None
    if not verify_password(secret, found[0] if found else None) or found is None:
        audit.write(
            conn,
            None,
            "auth.client",
            ip=ip,
            status=401,
            actor=actor,
            detail={"reason": "bad credentials"},
        )
        challenge = {"WWW-Authenticate": 'Basic realm="homevitals"'} if used_basic else {}
        return oauth_error(401, "invalid_client", "unknown client or wrong secret", challenge)
    throttle.reset(conn, key)
    _, registered, _ = found
    # No scope asked for: the registration is the default (RFC 6749 3.3).
    granted = sc.intersect(registered if requested is None else requested, registered)
    if not granted:
        audit.write(
            conn,
            None,
            "auth.client",
            ip=ip,
            status=400,
            actor=actor,
            detail={"reason": "no grantable scope", "requested": grant.scope},
        )
        return oauth_error(
            400, "invalid_scope", "none of the requested scopes is granted to this client"
        )
    scope = sc.render(granted)
    token, _ = create_token(
        settings.secret,
        subject=client_id,
        role="system",
        patient_id=None,
        minutes=settings.access_token_minutes,
        scope=scope,
    )
    audit.write(
        conn,
        Principal("system", actor, None, None),
        "auth.client",
        ip=ip,
        detail={"scope": scope, "requested": grant.scope},
    )
    body = {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": settings.access_token_minutes * 60,
        "scope": scope,
    }
    return JSONResponse(body, headers=NO_STORE)
