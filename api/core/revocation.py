"""Server-side revocation of person tokens (migration 0014): access tokens and dashboard
sessions are JWTs, so without this a signed-out cookie or the bearer token of a reset
account kept working until it expired.

* ``revoke_session``: one session ends (the dashboard's session id, or the refresh-token
  family an access token belongs to).  Every request checks its token's session id
  against ``revoked_sessions`` (``api.deps.principal_from_token``).
* ``revoke_all``: every token and session of a user ends (password reset, disabled
  account): their ``users.token_epoch`` moves on and tokens carry the epoch they were
  issued under.
"""

from __future__ import annotations

from typing import Any

import psycopg


def revoke_session(
    conn: psycopg.Connection[Any], session_id: str, user_id: int | None, minutes: int
) -> None:
    """End ``session_id``; kept ``minutes`` (the longest a token of it lives) from now."""
    if not session_id:
        return
    conn.execute("DELETE FROM revoked_sessions WHERE expires_at <= now()")
    conn.execute(
        "INSERT INTO revoked_sessions (session_id, user_id, expires_at)"
        " VALUES (%s, %s, now() + make_interval(mins => %s))"
        " ON CONFLICT (session_id) DO UPDATE SET expires_at ="
        " greatest(revoked_sessions.expires_at, EXCLUDED.expires_at)",
        (session_id, user_id, minutes),
    )


def revoke_all(conn: psycopg.Connection[Any], user_id: int) -> None:
    """End every access token and dashboard session of ``user_id`` at once."""
    conn.execute("UPDATE users SET token_epoch = token_epoch + 1 WHERE id = %s", (user_id,))
