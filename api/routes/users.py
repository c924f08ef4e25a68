"""User management (admin): accounts for clinicians and admins, clinician panels."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from api.core import audit
from api.core.db import count_rows
from api.core.errors import COMMON, CONFLICT
from api.core.revocation import revoke_all
from api.core.security import hash_password
from api.deps import AdminUser, ConnDep, DbId, PageDep
from api.routes.auth import USER_COLUMNS, user_out
from api.schemas import Page, PanelIn, UserCreateIn, UserOut, UserPatchIn

router = APIRouter(prefix="/users", tags=["users"], responses=COMMON)


@router.get("", response_model=Page[UserOut], summary="List users")
def list_users(admin: AdminUser, conn: ConnDep, page: PageDep, request: Request) -> Page[UserOut]:
    total = count_rows(conn, "SELECT count(*) FROM users")
    rows = conn.execute(
        f"SELECT {USER_COLUMNS} FROM users ORDER BY id LIMIT %s OFFSET %s",
        (page.limit, page.offset),
    ).fetchall()
    # Accounts (and which patient each portal user is) are identifying data: on record.
    audit.write(
        conn,
        admin,
        "user.list",
        ip=audit.client_ip(request),
        resource="users",
        detail={"users": [int(r[0]) for r in rows]},
    )
    return page.of([user_out(r) for r in rows], total, request)


@router.post(
    "",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a clinician or admin account",
    responses=CONFLICT,
)
def create_user(body: UserCreateIn, admin: AdminUser, conn: ConnDep, request: Request) -> UserOut:
    """Patients get their account by registering with an activation code instead."""
    row = conn.execute(
        "INSERT INTO users (username, password_hash, role, display_name) VALUES (%s, %s, %s, %s)"
        f" ON CONFLICT (lower(username)) DO NOTHING RETURNING {USER_COLUMNS}",
        (body.username, hash_password(body.password), body.role, body.display_name),
    ).fetchone()
    if row is None:
        # Refused administrative actions are on record too.
        audit.write(
            conn,
            admin,
            "user.create",
            ip=audit.client_ip(request),
            status=status.HTTP_409_CONFLICT,
            detail={"username": body.username, "role": body.role, "reason": "username taken"},
        )
        raise HTTPException(status.HTTP_409_CONFLICT, f"username {body.username!r} is taken")
    audit.write(
        conn,
        admin,
        "user.create",
        ip=audit.client_ip(request),
        resource=f"user/{row[0]}",
        detail={"username": body.username, "role": body.role},
    )
    return user_out(row)


@router.patch("/{user_id}", response_model=UserOut, summary="Enable/disable a user, reset password")
def patch_user(
    user_id: DbId, body: UserPatchIn, admin: AdminUser, conn: ConnDep, request: Request
) -> UserOut:
    with conn.transaction():
        row = conn.execute(
            f"UPDATE users SET active = coalesce(%s, active),"
            " display_name = coalesce(%s, display_name),"
            " password_hash = coalesce(%s, password_hash)"
            f" WHERE id = %s RETURNING {USER_COLUMNS}",
            (
                body.active,
                body.display_name,
                hash_password(body.password) if body.password else None,
                user_id,
            ),
        ).fetchone()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"user {user_id} not found")
        if body.active is False or body.password is not None:
            conn.execute(
                "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now())"
                " WHERE user_id = %s",
                (user_id,),
            )
            # Access tokens and dashboard sessions too, not only refresh tokens.
            revoke_all(conn, user_id)
        changed = sorted(
            k for k, v in body.model_dump(exclude={"password"}).items() if v is not None
        )
        audit.write(
            conn,
            admin,
            "user.update",
            ip=audit.client_ip(request),
            resource=f"user/{user_id}",
            detail={"fields": changed, "password_reset": body.password is not None},
        )
    return user_out(row)


def _clinician(conn: ConnDep, user_id: int) -> None:
    row = conn.execute("SELECT role FROM users WHERE id = %s", (user_id,)).fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"user {user_id} not found")
    if row[0] != "clinician":
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"user {user_id} is not a clinician")


@router.get(
    "/{user_id}/panel", response_model=Page[int], summary="A clinician's panel (patient ids)"
)
def get_panel(
    user_id: DbId, admin: AdminUser, conn: ConnDep, page: PageDep, request: Request
) -> Page[int]:
    _clinician(conn, user_id)
    total = count_rows(
        conn, "SELECT count(*) FROM clinician_panel WHERE clinician_id = %s", (user_id,)
    )
    rows = conn.execute(
        "SELECT patient_id FROM clinician_panel WHERE clinician_id = %s ORDER BY patient_id"
        " LIMIT %s OFFSET %s",
        (user_id, page.limit, page.offset),
    ).fetchall()
    audit.write(
        conn,
        admin,
        "panel.read",
        ip=audit.client_ip(request),
        resource=f"user/{user_id}/panel",
        detail={"patients": [int(r[0]) for r in rows]},
    )
    return page.of([int(r[0]) for r in rows], total, request)


@router.post(
    "/{user_id}/panel",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Add a patient to a clinician's panel",
)
def add_panel(
    user_id: DbId, body: PanelIn, admin: AdminUser, conn: ConnDep, request: Request
) -> Response:
    _clinician(conn, user_id)
    if conn.execute("SELECT 1 FROM patients WHERE id = %s", (body.patient_id,)).fetchone() is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"patient {body.patient_id} not found")
    conn.execute(
        "INSERT INTO clinician_panel (clinician_id, patient_id) VALUES (%s, %s)"
        " ON CONFLICT DO NOTHING",
        (user_id, body.patient_id),
    )
    audit.write(
        conn,
        admin,
        "panel.add",
        ip=audit.client_ip(request),
        patient_id=body.patient_id,
        resource=f"user/{user_id}/panel",
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/{user_id}/panel/{patient_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a patient from a clinician's panel",
)
def remove_panel(
    user_id: DbId, patient_id: DbId, admin: AdminUser, conn: ConnDep, request: Request
) -> Response:
    cur = conn.execute(
        "DELETE FROM clinician_panel WHERE clinician_id = %s AND patient_id = %s",
        (user_id, patient_id),
    )
    if cur.rowcount == 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not on the panel")
    audit.write(
        conn,
        admin,
        "panel.remove",
        ip=audit.client_ip(request),
        patient_id=patient_id,
        resource=f"user/{user_id}/panel",
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
