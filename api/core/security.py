"""Passwords (argon2id), JWT access tokens, opaque refresh tokens, one-time codes and CSRF
tokens (attempt limits: ``api.core.throttle``).

* Access tokens: HS256 JWT, short-lived (15 min by default), carrying the principal's
  id, role and (for patients) patient id.  ``typ`` distinguishes API access tokens from
  dashboard session tokens, so a leaked cookie is not a bearer token and vice versa.
* Refresh tokens: 256-bit random strings, stored as SHA-256 digests, rotated on every
  use; presenting a rotated token again revokes its whole family (replay detection).
* Activation / enrolment codes: 60-bit random, typed by people as ``XXXX-XXXX-XXXX``
  (Crockford base32 without ambiguous letters), stored as SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ALGORITHM = "HS256"
TokenType = Literal["access", "session"]
Role = Literal["patient", "clinician", "admin", "gateway", "system"]

_hasher = PasswordHasher()
# Verifying against this keeps the timing of "no such user" equal to "wrong password".
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
CODE_GROUPS = 3
CODE_GROUP_LEN = 4


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def digest(token: str) -> bytes:
    """SHA-256 of a high-entropy token (refresh token, one-time code)."""
    return hashlib.sha256(token.encode()).digest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def new_secret() -> str:
    """A machine credential (gateway MQTT / API secret)."""
    return secrets.token_urlsafe(24)


def new_code() -> str:
    chars = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUPS * CODE_GROUP_LEN))
    return "-".join(chars[i : i + CODE_GROUP_LEN] for i in range(0, len(chars), CODE_GROUP_LEN))


def normalize_code(code: str) -> str:
    """Accept the code as people type it: any case, spaces or dashes, O for 0, I/L for 1."""
    raw = "".join(ch for ch in code.upper() if ch.isalnum())
    raw = raw.translate(str.maketrans("OIL", "011"))
    return "-".join(raw[i : i + CODE_GROUP_LEN] for i in range(0, len(raw), CODE_GROUP_LEN))


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str  # user id, or the gateway id for a gateway
    role: Role
    patient_id: int | None
    session_id: str
    expires: datetime
    scope: str = ""  # SMART scopes of a system client's token
    epoch: int | None = None  # a person's token epoch when issued (claim "gen")


class TokenError(Exception):
    """An invalid, expired or wrong-type token."""


def create_token(
    secret: bytes,
    *,
    subject: str,
    role: Role,
    patient_id: int | None,
    minutes: int,
    token_type: TokenType = "access",
    session_id: str | None = None,
    scope: str | None = None,
    epoch: int | None = None,
) -> tuple[str, datetime]:
    now = datetime.now(UTC)
    expires = now + timedelta(minutes=minutes)
    payload: dict[str, Any] = {
        "sub": subject,
        "role": role,
        "pid": patient_id,
        "typ": token_type,
        "sid": session_id or uuid.uuid4().hex,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if scope is not None:
        payload["scope"] = scope
    if epoch is not None:
        payload["gen"] = epoch
    return jwt.encode(payload, secret, algorithm=ALGORITHM), expires


def decode_token(secret: bytes, token: str, token_type: TokenType = "access") -> TokenClaims:
    try:
        payload = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "typ"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("invalid token") from exc
    if payload.get("typ") != token_type:
        raise TokenError("wrong token type")
    role = payload.get("role")
    if role not in ("patient", "clinician", "admin", "gateway", "system"):
        raise TokenError("invalid token")
    pid = payload.get("pid")
    gen = payload.get("gen")
    return TokenClaims(
        subject=str(payload["sub"]),
        role=role,
        patient_id=int(pid) if isinstance(pid, int) else None,
        session_id=str(payload.get("sid", "")),
        expires=datetime.fromtimestamp(int(payload["exp"]), UTC),
        scope=str(payload.get("scope", "")),
        epoch=gen if isinstance(gen, int) and not isinstance(gen, bool) else None,
    )


def csrf_token(secret: bytes, session_id: str) -> str:
    """Dashboard form token bound to the session (HMAC of its id)."""
    return hmac.new(secret, b"csrf:" + session_id.encode(), hashlib.sha256).hexdigest()


def csrf_valid(secret: bytes, session_id: str, token: str) -> bool:
    return hmac.compare_digest(csrf_token(secret, session_id), token)
