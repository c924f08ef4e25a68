"""Custody requests through the API: who may approve or reject a held pairing, what a
decision does to the device and its bindings, and the audit it leaves."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from api_helpers import Auth, Clinic
from fastapi.testclient import TestClient

from ingest.patients import attach_gateway
from ingest.registry import apply_event
from readings import DevicePaired

T_PAIR = datetime.now(UTC) - timedelta(days=3)


def _hub(db: psycopg.Connection[Any], patient: int) -> str:
    hub = f"gw-cust-{uuid.uuid4().hex[:8]}"
    with db.transaction():
        attach_gateway(db, hub, patient)
    return hub


def _pair(db: psycopg.Connection[Any], hub: str, device: str, at: datetime) -> list[str]:
    with db.transaction():
        return apply_event(db, hub, DevicePaired(device=device, at=at, profile="bp-cuff"))


def _held(db: psycopg.Connection[Any], owner: int, asker: int) -> tuple[str, int, str, str]:
    """A device on ``owner``'s hub that ``asker``'s hub tried to pair: (device, request id,
    owner's hub, asker's hub)."""
    device = f"cuff-cust-{uuid.uuid4().hex[:8]}"
    owner_hub, asker_hub = _hub(db, owner), _hub(db, asker)
    assert _pair(db, owner_hub, device, T_PAIR) == [device]
    assert _pair(db, asker_hub, device, T_PAIR + timedelta(days=1)) == []
    row = db.execute(
        "SELECT id FROM custody_requests WHERE device_id = %s AND status = 'pending'", (device,)
    ).fetchone()
    assert row is not None
    return device, int(row[0]), owner_hub, asker_hub


def _open_binding(db: psycopg.Connection[Any], device: str) -> tuple[Any, ...] | None:
    return db.execute(
        "SELECT patient_id, lower(valid) FROM device_bindings"
        " WHERE device_id = %s AND upper_inf(valid)",
        (device,),
    ).fetchone()


def test_clinician_with_both_patients_approves_a_move(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    device, request, _, asker_hub = _held(db, clinic.patient_b, clinic.patient_a)
    lee = auth(clinic.dr_lee)
    listed = client.get("/api/v1/custody/requests", headers=lee)
    assert listed.status_code == 200
    assert request in [r["id"] for r in listed.json()["items"]]

    at = datetime.now(UTC) - timedelta(hours=1)
    r = client.post(
        f"/api/v1/custody/requests/{request}/approve",
        json={"reason": "cuff handed to Alice at the clinic", "at": at.isoformat()},
        headers=lee,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["decided_by"]) == ("approved", clinic.dr_lee)
    assert _open_binding(db, device) == (clinic.patient_a, at)
    closed = db.execute(
        "SELECT upper(valid) FROM device_bindings WHERE device_id = %s AND patient_id = %s",
        (device, clinic.patient_b),
    ).fetchone()
    assert closed == (at,)
    hub = db.execute("SELECT gateway_id FROM devices WHERE id = %s", (device,)).fetchone()
    assert hub == (asker_hub,)

    # Audited on both patients' trails: who, from where, why.
    audited = db.execute(
        "SELECT patient_id, actor, client_ip, detail->>'reason' FROM audit_log"
        " WHERE action = 'device.custody.approve' AND resource = %s ORDER BY patient_id",
        (f"device/{device}",),
    ).fetchall()
    assert audited == [
        (p, clinic.dr_lee, "testclient", "cuff handed to Alice at the clinic")
        for p in sorted((clinic.patient_a, clinic.patient_b))
    ]
    timeline = client.get(f"/api/v1/custody/devices/{device}/events", headers=lee).json()
    assert [e["action"] for e in timeline][:3] == [
        "custody.approved",
        "custody.held",
        "custody.taken",
    ]
    assert timeline[0]["actor"] == clinic.dr_lee

    again = client.post(
        f"/api/v1/custody/requests/{request}/approve", json={"reason": "twice"}, headers=lee
    )
    assert again.status_code == 409 and "already approved" in again.json()["detail"]


def test_a_move_touching_a_patient_outside_the_panel_is_not_found(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    # Patient C (Dr Ray's) owns the device; patient A's hub (Dr Lee's) asks for it.
    device, request, _, _ = _held(db, clinic.patient_c, clinic.patient_a)
    for clinician in (clinic.dr_lee, clinic.dr_ray):
        headers = auth(clinician)
        r = client.post(
            f"/api/v1/custody/requests/{request}/approve",
            json={"reason": "I want it moved"},
            headers=headers,
        )
        assert r.status_code == 404, (clinician, r.text)
        listed = client.get("/api/v1/custody/requests", headers=headers).json()
        assert request not in [x["id"] for x in listed["items"]]
    assert _open_binding(db, device) is not None
    assert _open_binding(db, device)[0] == clinic.patient_c  # type: ignore[index]
    denied = db.execute(
        "SELECT patient_id FROM audit_log WHERE action = 'access.denied' AND resource = %s"
        " ORDER BY id",
        (f"/api/v1/custody/requests/{request}/approve",),
    ).fetchall()
    # One row per refusal and patient the request touches (both clinicians, A and C).
    both = sorted([clinic.patient_a, clinic.patient_c])
    assert sorted(r[0] for r in denied) == sorted(both * 2)
    # A patient may not decide at all.
    assert (
        client.post(
            f"/api/v1/custody/requests/{request}/reject",
            json={"reason": "mine"},
            headers=auth(clinic.user_a),
        ).status_code
        == 403
    )
    # An admin rejects it: the device stays, C's custody flag is resolved.
    r = client.post(
        f"/api/v1/custody/requests/{request}/reject",
        json={"reason": "not a handover; hub A is not C's"},
        headers=auth(clinic.admin),
    )
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert _open_binding(db, device)[0] == clinic.patient_c  # type: ignore[index]
    flag = db.execute(
        "SELECT status, resolved_by FROM flags WHERE patient_id = %s AND rule_id = 'device_custody'"
        " ORDER BY id DESC LIMIT 1",
        (clinic.patient_c,),
    ).fetchone()
    assert flag == ("resolved", clinic.admin)


def test_a_decision_needs_a_reason_and_a_sane_time(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    device, request, _, _ = _held(db, clinic.patient_b, clinic.patient_a)
    last_reading = T_PAIR + timedelta(days=2)
    db.execute(
        "INSERT INTO blood_pressure (time, reading_id, device_id, patient_id, systolic,"
        " diastolic) VALUES (%s, %s, %s, %s, 120, 80)",
        (last_reading, uuid.uuid4(), device, clinic.patient_b),
    )
    lee = auth(clinic.dr_lee)
    url = f"/api/v1/custody/requests/{request}/approve"
    assert client.post(url, json={}, headers=lee).status_code == 422
    # Backdated before a reading already in B's chart: refused (it would stay B's).
    backdated = (last_reading - timedelta(hours=1)).isoformat()
    early = client.post(url, json={"reason": "backdated", "at": backdated}, headers=lee)
    assert early.status_code == 409 and "last reading" in early.json()["detail"]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    late = client.post(url, json={"reason": "future", "at": future}, headers=lee)
    assert late.status_code == 400 and "future" in late.json()["detail"]
    state = db.execute("SELECT status FROM custody_requests WHERE id = %s", (request,)).fetchone()
    assert state == ("pending",)
