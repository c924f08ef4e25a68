"""Account set-up without the HTTP layer (the CLI and the demo use these).

``create_user(conn, "dr-lee", "pw...", "clinician")``;
``create_user(conn, "pat-1", "pw...", "patient", patient_id=7)``;
``add_to_panel(conn, "dr-lee", 7)``.
"""

from __future__ import annotations

from typing import Any

import psycopg

from api.core.security import hash_password

ROLES = ("patient", "clinician", "admin")


class BootstrapError(ValueError):
    """A user or panel entry that cannot be created as asked."""


def create_user(
    conn: psycopg.Connection[Any],
    username: str,
    password: str,
    role: str,
    patient_id: int | None = None,
    display_name: str | None = None,
) -> int:
    """Create (or reset the password/role of) a user; returns the user id.

    A patient user needs ``patient_id`` (the patients row it may see); other roles must
    not have one.
    """
    if role not in ROLES:
        raise BootstrapError(f"role must be one of {ROLES}, not {role!r}")
    if (role == "patient") != (patient_id is not None):
        raise BootstrapError("a patient user needs patient_id; other roles must not have one")
    row = conn.execute(
        "INSERT INTO users (username, password_hash, role, patient_id, display_name)"
        " VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (lower(username)) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
        " role = EXCLUDED.role, patient_id = EXCLUDED.patient_id, active = true,"
        # A reset ends the account's live tokens and sessions (migration 0014).
        " token_epoch = users.token_epoch + 1,"
        " display_name = coalesce(EXCLUDED.display_name, users.display_name)"
        " RETURNING id",
        (username, hash_password(password), role, patient_id, display_name),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_to_panel(conn: psycopg.Connection[Any], clinician_username: str, patient_id: int) -> None:
    """Put ``patient_id`` on the clinician's panel (idempotent)."""
    row = conn.execute(
        "SELECT id, role FROM users WHERE lower(username) = lower(%s)", (clinician_username,)
    ).fetchone()
    if row is None:
        raise BootstrapError(f"no user {clinician_username!r}")
    if row[1] != "clinician":
        raise BootstrapError(f"{clinician_username!r} is a {row[1]}, not a clinician")
    conn.execute(
        "INSERT INTO clinician_panel (clinician_id, patient_id) VALUES (%s, %s)"
        " ON CONFLICT DO NOTHING",
        (row[0], patient_id),
    )
