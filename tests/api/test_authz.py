"""Sign-in, tokens and the authorization matrix across roles."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from api_helpers import PASSWORD, Auth, Clinic
from fastapi.testclient import TestClient


def test_login_gives_short_lived_access_and_rotating_refresh(
    client: TestClient, auth: Auth, clinic: Clinic
) -> None:
    pair = auth.token(clinic.dr_lee)
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 15 * 60
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status_code == 200
    assert me.json()["role"] == "clinician"

    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert rotated.status_code == 200
    new_refresh = rotated.json()["refresh_token"]
    assert new_refresh != pair["refresh_token"]
    # Replaying the old token revokes the family, including the newest token.
    replay = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert replay.status_code == 401
    assert "already used" in replay.json()["detail"]
    after = client.post("/api/v1/auth/refresh", json={"refresh_token": new_refresh})
    assert after.status_code == 401


def test_bad_password_and_rate_limit(
    client: TestClient, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    user = clinic.user_b
    for _ in range(5):
        r = client.post("/api/v1/auth/token", data={"username": user, "password": "wrong-password"})
        assert r.status_code == 401
        assert r.json() == {"detail": "incorrect username or password"}
    limited = client.post("/api/v1/auth/token", data={"username": user, "password": PASSWORD})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    # Other users from the same address are not affected.
    other = client.post(
        "/api/v1/auth/token", data={"username": clinic.dr_ray, "password": PASSWORD}
    )
    assert other.status_code == 200
    client.app.state.login_throttle.reset(db, f"{user.lower()}|testclient")  # type: ignore[attr-defined]


def test_missing_and_garbage_tokens(client: TestClient, clinic: Clinic) -> None:
    assert client.get("/api/v1/patients").status_code == 401
    r = client.get("/api/v1/patients", headers={"Authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401
    assert r.json()["detail"] == "invalid token"
    assert r.headers["WWW-Authenticate"] == "Bearer"


def _patient_paths(pid: int) -> list[str]:
    return [
        f"/api/v1/patients/{pid}",
        f"/api/v1/patients/{pid}/devices",
        f"/api/v1/patients/{pid}/readings/glucose",
        f"/api/v1/patients/{pid}/readings/blood-pressure/buckets",
        f"/api/v1/patients/{pid}/glucose/summary",
        f"/api/v1/patients/{pid}/targets",
    ]


@pytest.mark.parametrize(
    ("who", "target", "allowed"),
    [
        ("user_a", "patient_a", True),
        ("user_a", "patient_b", False),
        ("user_b", "patient_a", False),
        ("dr_lee", "patient_a", True),
        ("dr_lee", "patient_b", True),
        ("dr_lee", "patient_c", False),
        ("dr_ray", "patient_a", False),
        ("dr_ray", "patient_c", True),
        ("admin", "patient_a", True),
        ("admin", "patient_c", True),
    ],
)
def test_patient_scope_matrix(
    client: TestClient, auth: Auth, clinic: Clinic, who: str, target: str, allowed: bool
) -> None:
    headers = auth(getattr(clinic, who))
    pid = getattr(clinic, target)
    for path in _patient_paths(pid):
        r = client.get(path, headers=headers)
        if allowed:
            assert r.status_code == 200, (path, r.text)
        else:
            assert r.status_code == 404, (path, r.text)
            assert r.json() == {"detail": f"patient {pid} not found"}


def test_role_gates(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    patient = auth(clinic.user_a)
    clinician = auth(clinic.dr_lee)
    admin = auth(clinic.admin)
    for path in ("/api/v1/flags", "/api/v1/panel", "/api/v1/audit", "/api/v1/users"):
        r = client.get(path, headers=patient)
        assert r.status_code == 403, path
        assert "requires role" in r.json()["detail"]
    assert client.get("/api/v1/audit", headers=clinician).status_code == 403
    assert client.get("/api/v1/users", headers=clinician).status_code == 403
    assert client.get("/api/v1/audit", headers=admin).status_code == 200
    # Patients may read but not change their targets.
    put = client.put(
        f"/api/v1/patients/{clinic.patient_a}/targets",
        json={"category": "standard"},
        headers=patient,
    )
    assert put.status_code == 403


def test_patient_lists_only_self_and_clinician_only_panel(
    client: TestClient, auth: Auth, clinic: Clinic
) -> None:
    def ids(headers: dict[str, str]) -> set[int]:
        body: dict[str, Any] = client.get("/api/v1/patients", headers=headers).json()
        return {p["id"] for p in body["items"]}

    assert ids(auth(clinic.user_a)) == {clinic.patient_a}
    assert ids(auth(clinic.dr_lee)) == {clinic.patient_a, clinic.patient_b}
    assert ids(auth(clinic.dr_ray)) == {clinic.patient_c}
    assert {clinic.patient_a, clinic.patient_b, clinic.patient_c} <= ids(auth(clinic.admin))


def test_disabled_user_is_locked_out(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    admin = auth(clinic.admin)
    created = client.post(
        "/api/v1/users",
        json={"username": f"temp-{clinic.tag}", "password": PASSWORD, "role": "clinician"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    temp = {"Authorization": f"Bearer {auth.token(f'temp-{clinic.tag}')['access_token']}"}
    assert client.get("/api/v1/auth/me", headers=temp).status_code == 200
    dup = client.post(
        "/api/v1/users",
        json={"username": f"TEMP-{clinic.tag}", "password": PASSWORD, "role": "admin"},
        headers=admin,
    )
    assert dup.status_code == 409
    off = client.patch(
        f"/api/v1/users/{created.json()['id']}", json={"active": False}, headers=admin
    )
    assert off.status_code == 200 and off.json()["active"] is False
    assert client.get("/api/v1/auth/me", headers=temp).status_code == 401


def test_admin_manages_panels(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    admin = auth(clinic.admin)
    ray = client.get("/api/v1/auth/me", headers=auth(clinic.dr_ray)).json()["id"]
    url = f"/api/v1/users/{ray}/panel"
    assert client.get(url, headers=admin).json()["items"] == [clinic.patient_c]
    added = client.post(url, json={"patient_id": clinic.patient_b}, headers=admin)
    assert added.status_code == 204
    headers = auth(clinic.dr_ray)
    assert client.get(f"/api/v1/patients/{clinic.patient_b}", headers=headers).status_code == 200
    removed = client.delete(f"{url}/{clinic.patient_b}", headers=admin)
    assert removed.status_code == 204
    assert client.get(f"/api/v1/patients/{clinic.patient_b}", headers=headers).status_code == 404
    assert client.delete(f"{url}/{clinic.patient_b}", headers=admin).status_code == 404
    assert client.post(url, json={"patient_id": 2**40}, headers=admin).status_code == 404
    me = client.get("/api/v1/auth/me", headers=admin).json()["id"]
    not_clinician = client.get(f"/api/v1/users/{me}/panel", headers=admin)
    assert not_clinician.status_code == 400
