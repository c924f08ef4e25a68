"""Registered system clients (table ``api_clients``, migration 0007): registration by an
operator, and the principal a client token stands for.

A client is bound to one clinician's panel (``panel_of``): it sees exactly the patients
that clinician sees, now, never more; disabling the clinician stops the client.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from api.core.principal import Principal
from api.core.security import hash_password, new_secret
from api.smart import scopes as sc

CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{3,64}$")
ACTOR_PREFIX = "client:"


class ClientError(ValueError):
    """A registration that cannot be made as asked."""


def register_client(
    conn: psycopg.Connection[Any], client_id: str, scope: str, panel_of: str
) -> tuple[str, str]:
    """Create the client, or rotate its secret and replace its scopes and panel; returns
    (canonical scopes, the new secret: shown once, stored only as an argon2 hash)."""
    if not CLIENT_ID.match(client_id):
        raise ClientError("client id: 3-64 characters of A-Z a-z 0-9 . _ -")
    try:
        granted = sc.parse(scope)
    except sc.ScopeError as exc:
        raise ClientError(str(exc)) from exc
    if not granted:
        raise ClientError(f"no grantable scope in {scope!r} (e.g. system/Observation.rs)")
    row = conn.execute(
        "SELECT id, role FROM users WHERE lower(username) = lower(%s)", (panel_of,)
    ).fetchone()
    if row is None or row[1] != "clinician":
        raise ClientError(f"--panel-of must name a clinician; {panel_of!r} is not one")
    secret = new_secret()
    canonical = sc.render(granted)
    conn.execute(
        "INSERT INTO api_clients (client_id, secret_hash, scopes, panel_of)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (client_id) DO UPDATE SET"
        " secret_hash = EXCLUDED.secret_hash, scopes = EXCLUDED.scopes,"
        " panel_of = EXCLUDED.panel_of, revoked_at = NULL",
        (client_id, hash_password(secret), canonical.split(), row[0]),
    )
    return canonical, secret


def revoke_client(conn: psycopg.Connection[Any], client_id: str) -> bool:
    """Stop the client at once (its live tokens too); False if there is no such client."""
    cur = conn.execute(
        "UPDATE api_clients SET revoked_at = coalesce(revoked_at, now()) WHERE client_id = %s",
        (client_id,),
    )
    return cur.rowcount > 0


def load_client(
    conn: psycopg.Connection[Any], client_id: str
) -> tuple[str, sc.ScopeSet, int] | None:
    """(secret hash, registered scopes, panel owner) of a usable client, else None."""
    row = conn.execute(
        "SELECT c.secret_hash, c.scopes, c.panel_of FROM api_clients c"
        " JOIN users u ON u.id = c.panel_of"
        " WHERE c.client_id = %s AND c.revoked_at IS NULL AND u.active",
        (client_id,),
    ).fetchone()
    if row is None:
        return None
    return str(row[0]), sc.parse(" ".join(row[1])), int(row[2])


def client_principal(
    conn: psycopg.Connection[Any], client_id: str, token_scope: str, session_id: str
) -> Principal | None:
    """The principal of a client token, or None when the client is gone.  The token's
    scopes are narrowed to the current registration, so shrinking it acts at once."""
    client = load_client(conn, client_id)
    if client is None:
        return None
    _, registered, panel_of = client
    granted = sc.intersect(sc.parse(token_scope), registered)
    return Principal(
        "system",
        ACTOR_PREFIX + client_id,
        None,
        None,
        session_id,
        scopes=granted,
        panel_of=panel_of,
    )
