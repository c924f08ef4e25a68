"""Shared helpers of the API tests: the seeded clinic, sign-in, FHIR validation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.specimen import Specimen

from api.bootstrap import add_to_panel, create_user
from ingest.patients import attach_gateway, upsert_patient
from ingest.registry import bind_device

PASSWORD = "correct horse battery staple"


@dataclass
class ProvisionRecorder:
    """Stands in for the broker's password file: records what create_app asked for."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, gateway_id: str, password: str) -> None:
        self.calls.append((gateway_id, password))


@dataclass(frozen=True)
class Clinic:
    tag: str
    admin: str
    dr_lee: str
    dr_ray: str
    patient_a: int
    patient_b: int
    patient_c: int
    user_a: str
    user_b: str
    device_cgm: str
    device_meter: str
    device_cuff: str
    gateway_a: str
    end: datetime
    flags: dict[str, int]


def _insert_glucose(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor().copy(
        "COPY glucose (time, reading_id, device_id, patient_id, source, mgdl, conditions,"
        " device_time, skew_s, gateway_id) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)


def seed_clinic(conn: psycopg.Connection[Any]) -> Clinic:
    tag = uuid.uuid4().hex[:6]
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=14)
    ids = {}
    for key, (name, tz) in {
        "a": ("Alice Archer", "America/New_York"),
        "b": ("Bob Baker", "Europe/Berlin"),
        "c": ("Cora Cole", "America/Chicago"),
    }.items():
        ids[key] = upsert_patient(
            conn,
            f"api-{tag}-{key}",
            tz,
            name,
            f"MRN{tag}{key}".upper(),
            datetime(1960, 5, 17).date(),
        )
    admin, lee, ray = f"admin-{tag}", f"lee-{tag}", f"ray-{tag}"
    create_user(conn, admin, PASSWORD, "admin")
    create_user(conn, lee, PASSWORD, "clinician", display_name="Dr Lee")
    create_user(conn, ray, PASSWORD, "clinician", display_name="Dr Ray")
    add_to_panel(conn, lee, ids["a"])
    add_to_panel(conn, lee, ids["b"])
    add_to_panel(conn, ray, ids["c"])
    user_a, user_b = f"alice-{tag}", f"bob-{tag}"
    create_user(conn, user_a, PASSWORD, "patient", patient_id=ids["a"])
    create_user(conn, user_b, PASSWORD, "patient", patient_id=ids["b"])

    gw = f"gw-api-{tag}"
    cgm, meter, cuff = f"cgm-{tag}", f"meter-{tag}", f"cuff-{tag}"
    conn.execute(
        "INSERT INTO devices (id, gateway_id, profile, manufacturer, model, serial,"
        " battery_percent, clock_skew_s, last_sync) VALUES"
        " (%s, %s, 'cgm', 'Acme', 'CGM-1', 'S1', 80, 0.5, %s),"
        " (%s, %s, 'glucose', 'Acme', 'Meter-2', 'S2', 55, -93.0, %s),"
        " (%s, %s, 'blood_pressure', 'Acme', 'Cuff-3', 'S3', 15, 4.0, %s)",
        (cgm, gw, end, meter, gw, end - timedelta(days=4), cuff, gw, end),
    )
    attach_gateway(conn, gw, ids["a"])
    for dev in (cgm, meter, cuff):
        bind_device(conn, dev, ids["a"], start)

    rng = np.random.default_rng(7)
    pid = ids["a"]
    rows: list[tuple[Any, ...]] = []
    n = 14 * 288
    minutes = np.arange(n) * 5
    day_phase = np.sin(2 * np.pi * (minutes % 1440) / 1440)
    values = 140 + 50 * day_phase + rng.normal(0, 15, n)
    values[100:110] = 50  # a hypo
    for m, v in zip(minutes.tolist(), values.tolist(), strict=True):
        t = start + timedelta(minutes=m)
        rows.append((t, uuid.uuid4(), cgm, pid, "cgm", round(v, 1), [], None, 0.5, gw))
    for d in range(14):
        for hour in (7, 12, 19):
            t = start + timedelta(days=d, hours=hour)
            conditions = ["manual_entry"] if d == 13 else []
            rows.append(
                (
                    t,
                    uuid.uuid4(),
                    meter,
                    pid,
                    "smbg",
                    120.0 + d,
                    conditions,
                    t.strftime("%Y-%m-%dT%H:%M:%S"),
                    -93.0,
                    gw,
                )
            )
    _insert_glucose(conn, rows)
    for d in range(10):
        for hour in (7, 20):
            t = start + timedelta(days=d, hours=hour)
            conn.execute(
                "INSERT INTO blood_pressure (time, reading_id, device_id, patient_id, systolic,"
                " diastolic, mean_arterial, pulse, conditions, skew_s, gateway_id)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    t,
                    uuid.uuid4(),
                    cuff,
                    pid,
                    128.0 + d,
                    82.0,
                    97.0,
                    70.0,
                    ["irregular_pulse"] if d == 3 else [],
                    4.0,
                    gw,
                ),
            )
    flags = {}
    for rule, severity in (
        ("urgent_low_glucose", "urgent"),
        ("cgm_tbr_over_target", "high"),
        ("bp_home_average_above_target", "medium"),
    ):
        row = conn.execute(
            "INSERT INTO flags (patient_id, rule_id, severity, summary, evidence, evidence_from,"
            " evidence_to) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (pid, rule, severity, f"{rule} for testing", '{"value": 1}', start, end),
        ).fetchone()
        assert row is not None
        flags[rule] = int(row[0])
    row = conn.execute(
        "INSERT INTO flags (patient_id, rule_id, severity, summary, evidence)"
        " VALUES (%s, 'adherence_no_data', 'low', 'no data', '{}') RETURNING id",
        (ids["c"],),
    ).fetchone()
    assert row is not None
    flags["c_adherence"] = int(row[0])
    return Clinic(
        tag=tag,
        admin=admin,
        dr_lee=lee,
        dr_ray=ray,
        patient_a=ids["a"],
        patient_b=ids["b"],
        patient_c=ids["c"],
        user_a=user_a,
        user_b=user_b,
        device_cgm=cgm,
        device_meter=meter,
        device_cuff=cuff,
        gateway_a=gw,
        end=end,
        flags=flags,
    )


class Auth:
    """Bearer headers per username, signing in once per session."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self._headers: dict[str, dict[str, str]] = {}

    def token(self, username: str, password: str = PASSWORD) -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/auth/token", data={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def __call__(self, username: str) -> dict[str, str]:
        if username not in self._headers:
            self._headers[username] = {
                "Authorization": f"Bearer {self.token(username)['access_token']}"
            }
        return self._headers[username]


FHIR_MODELS: dict[str, Any] = {
    "Patient": Patient,
    "Device": Device,
    "Observation": Observation,
    "Specimen": Specimen,
    "Flag": Flag,
    "Bundle": Bundle,
    "OperationOutcome": OperationOutcome,
    "CapabilityStatement": CapabilityStatement,
}


def _validate_resource(resource: dict[str, Any]) -> None:
    FHIR_MODELS[resource["resourceType"]].model_validate(resource)
    for inner in resource.get("contained", []):
        _validate_resource(inner)


def validated(response: Any, status: int = 200) -> dict[str, Any]:
    """The FHIR body of ``response``, validated with fhir.resources (R4B models), with
    the entries of a Bundle and contained resources."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    _validate_resource(body)
    if body["resourceType"] == "Bundle":
        for entry in body.get("entry", []):
            _validate_resource(entry["resource"])
    return body
