"""Enrolment: clinic creates the patient, patient registers with the activation code,
a gateway enrols with its code; expired, reused and wrong codes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from api_helpers import PASSWORD, Auth, Clinic, ProvisionRecorder
from fastapi.testclient import TestClient

from api.core.security import digest, normalize_code
from ingest.registry import BindingCache, apply_event
from readings import DevicePaired


def _new_patient(client: TestClient, auth: Auth, clinic: Clinic, **extra: Any) -> dict[str, Any]:
    mrn = f"E{uuid.uuid4().hex[:8]}".upper()
    body = {
        "given_name": "Dana",
        "family_name": "Diaz",
        "birth_date": "1971-02-03",
        "mrn": mrn,
        "timezone": "America/Denver",
        **extra,
    }
    r = client.post("/api/v1/patients", json=body, headers=auth(clinic.dr_lee))
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    created["mrn"] = mrn
    return created


def _register(client: TestClient, created: dict[str, Any], code: str, **over: Any) -> Any:
    body = {
        "activation_code": code,
        "given_name": "dana ",
        "family_name": "DIAZ",
        "birth_date": "1971-02-03",
        "mrn": created["mrn"],
        "username": f"dana-{uuid.uuid4().hex[:6]}",
        "password": PASSWORD,
        **over,
    }
    return client.post("/api/v1/auth/register", json=body)


def test_full_enrolment_flow(
    client: TestClient,
    auth: Auth,
    clinic: Clinic,
    db: psycopg.Connection[Any],
    provisioned: ProvisionRecorder,
) -> None:
    created = _new_patient(client, auth, clinic)
    pid = created["patient"]["id"]
    code = created["activation"]["code"]
    assert created["patient"]["has_account"] is False
    # Dr Lee enrolled them, so they are on Dr Lee's panel.
    assert client.get(f"/api/v1/patients/{pid}", headers=auth(clinic.dr_lee)).status_code == 200

    # Typed loosely (lower case, spaces) it still works; names compare case-insensitively.
    reg = _register(client, created, code.lower().replace("-", " "))
    assert reg.status_code == 201, reg.text
    user = reg.json()
    assert user["role"] == "patient" and user["patient_id"] == pid
    headers = auth(user["username"])
    assert client.get(f"/api/v1/patients/{pid}", headers=headers).status_code == 200
    assert client.get(f"/api/v1/patients/{clinic.patient_a}", headers=headers).status_code == 404

    # Reuse of the same code is refused.
    again = _register(client, created, code)
    assert again.status_code == 400
    assert "already used" in again.json()["detail"]

    # Patient asks for a gateway code in their portal; the hub enrols with it.
    gcode = client.post(f"/api/v1/patients/{pid}/gateway-code", headers=headers)
    assert gcode.status_code == 201, gcode.text
    # A device the hub had already paired before enrolment gets bound now.
    gw_id = f"gw-{uuid.uuid4().hex[:8]}"
    db.execute(
        "INSERT INTO devices (id, gateway_id, profile) VALUES (%s, %s, 'glucose')",
        (f"pre-{gw_id}", gw_id),
    )
    enrolled = client.post(
        "/api/v1/gateways/enroll",
        json={"enrollment_code": gcode.json()["code"], "gateway_id": gw_id},
    )
    assert enrolled.status_code == 201, enrolled.text
    creds = enrolled.json()
    assert creds["gateway_id"] == gw_id and creds["mqtt_username"] == gw_id
    assert creds["topic_prefix"] == f"homevitals/v1/gw/{gw_id}/"
    assert creds["bound_devices"] == [f"pre-{gw_id}"]
    assert (gw_id, creds["mqtt_password"]) in provisioned.calls
    reuse = client.post("/api/v1/gateways/enroll", json={"enrollment_code": gcode.json()["code"]})
    assert reuse.status_code == 400 and "already used" in reuse.json()["detail"]

    # The gateway is a service principal with its own credentials.
    tok = client.post(
        "/api/v1/gateways/token", json={"gateway_id": gw_id, "secret": creds["mqtt_password"]}
    )
    assert tok.status_code == 200
    gw_headers = {"Authorization": f"Bearer {tok.json()['access_token']}"}
    me = client.get("/api/v1/gateways/me", headers=gw_headers)
    assert me.status_code == 200 and me.json()["patient_id"] == pid
    assert client.get(f"/api/v1/patients/{pid}", headers=gw_headers).status_code == 403
    bad = client.post("/api/v1/gateways/token", json={"gateway_id": gw_id, "secret": "x" * 20})
    assert bad.status_code == 401

    # A device paired later on that hub is bound by ingest (DevicePaired event).
    apply_event(
        db, gw_id, DevicePaired(at=datetime.now(UTC), device="late-" + gw_id, profile="glucose")
    )
    devices = client.get(f"/api/v1/patients/{pid}/devices", headers=headers).json()
    assert {d["id"] for d in devices["items"]} == {f"pre-{gw_id}", f"late-{gw_id}"}
    assert BindingCache is not None


def test_wrong_details_do_not_reveal_the_mrn(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    created = _new_patient(client, auth, clinic)
    code = created["activation"]["code"]
    wrong_code = _register(client, created, "ABCD-EFGH-JKMN")
    wrong_mrn = _register(client, created, code, mrn="NOSUCHMRN1")
    wrong_dob = _register(client, created, code, birth_date="1971-02-04")
    wrong_name = _register(client, created, code, family_name="Dias")
    details = {r.json()["detail"] for r in (wrong_code, wrong_mrn, wrong_dob, wrong_name)}
    assert len(details) == 1
    assert all(r.status_code == 400 for r in (wrong_code, wrong_mrn, wrong_dob, wrong_name))
    assert "do not match" in details.pop()
    # The right details still work afterwards (a failed attempt does not burn the code).
    assert _register(client, created, code).status_code == 201
    client.app.state.register_throttle.reset(db, "register|testclient")  # type: ignore[attr-defined]


def test_expired_codes(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    created = _new_patient(client, auth, clinic)
    code = created["activation"]["code"]
    db.execute(
        "UPDATE activation_codes SET expires_at = now() - interval '1 minute' WHERE code_hash = %s",
        (digest(normalize_code(code)),),
    )
    r = _register(client, created, code)
    assert r.status_code == 400 and "expired" in r.json()["detail"]
    # A fresh code replaces it.
    fresh = client.post(
        f"/api/v1/patients/{created['patient']['id']}/activation-code", headers=auth(clinic.dr_lee)
    )
    assert fresh.status_code == 201
    assert _register(client, created, fresh.json()["code"]).status_code == 201
    # Once the patient has an account no new activation code is issued.
    again = client.post(
        f"/api/v1/patients/{created['patient']['id']}/activation-code", headers=auth(clinic.dr_lee)
    )
    assert again.status_code == 409

    gcode = client.post(
        f"/api/v1/patients/{created['patient']['id']}/gateway-code", headers=auth(clinic.dr_lee)
    ).json()["code"]
    db.execute(
        "UPDATE gateway_enrollment_codes SET expires_at = now() - interval '1 s'"
        " WHERE code_hash = %s",
        (digest(normalize_code(gcode)),),
    )
    r = client.post("/api/v1/gateways/enroll", json={"enrollment_code": gcode})
    assert r.status_code == 400 and "expired" in r.json()["detail"]
    r = client.post("/api/v1/gateways/enroll", json={"enrollment_code": "ZZZZ-ZZZZ-ZZZZ"})
    assert r.status_code == 400 and r.json()["detail"] == "invalid enrolment code"
    client.app.state.register_throttle.reset(db, "enroll|testclient")  # type: ignore[attr-defined]


def test_duplicate_mrn_and_staff_only_creation(
    client: TestClient, auth: Auth, clinic: Clinic
) -> None:
    created = _new_patient(client, auth, clinic)
    dup = client.post(
        "/api/v1/patients",
        json={
            "given_name": "X",
            "family_name": "Y",
            "birth_date": "1980-01-01",
            "mrn": created["mrn"],
        },
        headers=auth(clinic.admin),
    )
    assert dup.status_code == 409
    assert (
        client.post(
            "/api/v1/patients",
            json={"given_name": "X", "family_name": "Y", "birth_date": "1980-01-01", "mrn": "Q1"},
            headers=auth(clinic.user_a),
        ).status_code
        == 403
    )


def test_gateway_cannot_be_taken_from_another_patient(
    client: TestClient, auth: Auth, clinic: Clinic
) -> None:
    created = _new_patient(client, auth, clinic)
    code = client.post(
        f"/api/v1/patients/{created['patient']['id']}/gateway-code", headers=auth(clinic.dr_lee)
    ).json()["code"]
    r = client.post(
        "/api/v1/gateways/enroll", json={"enrollment_code": code, "gateway_id": clinic.gateway_a}
    )
    assert r.status_code == 409
    # The code was not consumed by the refused attempt.
    ok = client.post("/api/v1/gateways/enroll", json={"enrollment_code": code})
    assert ok.status_code == 201


def test_device_reassignment_ends_old_binding(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    created = _new_patient(client, auth, clinic)
    new_pid = created["patient"]["id"]
    device = f"loaner-{uuid.uuid4().hex[:6]}"
    db.execute("INSERT INTO devices (id, profile) VALUES (%s, 'blood_pressure')", (device,))
    lee = auth(clinic.dr_lee)
    # Nobody holds a new loaner yet: only an admin hands it out; then it moves within
    # Dr Lee's scope.
    why = {"reason": "loaner"}
    unheld = client.post(
        f"/api/v1/patients/{clinic.patient_b}/devices",
        json={"device_id": device, **why},
        headers=lee,
    )
    assert unheld.status_code == 404, unheld.text
    first = client.post(
        f"/api/v1/patients/{clinic.patient_b}/devices",
        json={"device_id": device, **why},
        headers=auth(clinic.admin),
    )
    assert first.status_code == 200, first.text
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    moved = client.post(
        f"/api/v1/patients/{new_pid}/devices",
        json={"device_id": device, "at": at, **why},
        headers=lee,
    )
    assert moved.status_code == 200, moved.text
    b_devices = client.get(f"/api/v1/patients/{clinic.patient_b}/devices", headers=lee).json()
    old = next(d for d in b_devices["items"] if d["id"] == device)
    assert old["bound_until"] is not None
    assert moved.json()["bound_until"] is None
    missing = client.post(
        f"/api/v1/patients/{new_pid}/devices",
        json={"device_id": "nope-dev", **why},
        headers=lee,
    )
    assert missing.status_code == 404
