"""Weight-scale, pulse-oximeter and thermometer readings reach FHIR as vital-signs
Observations (read, search by code/category/date), within the same patient scope and
SMART scopes as glucose and blood pressure.  The readings go in through the real ingest
path (``ingest.pipeline.process``); every resource is validated with fhir.resources."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from api_helpers import Auth, Clinic, validated
from fastapi.testclient import TestClient
from wire_helpers import Details, send_through_ingest, wire_reading

from api.bootstrap import add_to_panel
from api.smart.clients import register_client
from device_profiles.model import Component, Kind
from ingest.patients import attach_gateway, upsert_patient
from readings import wire

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITAL_SIGNS = "http://terminology.hl7.org/CodeSystem/observation-category"


@dataclass(frozen=True)
class Body:
    patient_id: int
    ids: dict[str, str]  # name -> reading id


def _reading(
    device: str,
    kind: Kind,
    when: datetime,
    values: dict[Component, float],
    details: Details | None = None,
) -> wire.Reading:
    return wire_reading(device, kind, when, values, skew_s=-3.0, details=details)


@pytest.fixture(scope="module")
def body(db: psycopg.Connection[Any], clinic: Clinic) -> Body:
    tag = uuid.uuid4().hex[:6]
    pid = upsert_patient(db, f"body-{tag}", "Europe/Berlin", "Vera Vital")
    add_to_panel(db, clinic.dr_lee, pid)
    gw = f"gw-body-{tag}"
    attach_gateway(db, gw, pid)
    scale, oxi, thermo = f"scale-{tag}", f"oxi-{tag}", f"thermo-{tag}"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    paired = {scale: "weight", oxi: "pulse_oximeter", thermo: "thermometer"}
    t = start + timedelta(hours=1)
    readings = {
        "weight": _reading(
            scale,
            Kind.WEIGHT,
            t,
            {Component.WEIGHT: 72.5, Component.HEIGHT: 1.75, Component.BMI: 23.7},
        ),
        "bare_weight": _reading(
            scale, Kind.WEIGHT, t + timedelta(hours=1), {Component.WEIGHT: 73.0}
        ),
        "spo2": _reading(
            oxi,
            Kind.SPO2,
            t + timedelta(hours=2),
            {Component.SPO2: 97.0, Component.PULSE: 64.0, Component.PULSE_AMPLITUDE_INDEX: 3.1},
        ),
        # The oximeter sent NaN for the pulse: ingest names it in details, no number.
        "spo2_nan": _reading(
            oxi, Kind.SPO2, t + timedelta(hours=3), {Component.SPO2: 93.0}, {"special_pulse": "NaN"}
        ),
        "temp": _reading(
            thermo, Kind.TEMPERATURE, t + timedelta(hours=4), {Component.TEMPERATURE: 36.8}
        ),
    }
    result = send_through_ingest(
        db, gw, paired, start, list(readings.values()), t + timedelta(hours=5)
    )
    assert result.inserted == {"body_readings": 5}, result
    return Body(pid, {name: r.id for name, r in readings.items()})


def _get(client: TestClient, headers: dict[str, str], path: str, status: int = 200) -> Any:
    return validated(client.get(f"/fhir/{path}", headers=headers), status=status)


def _search(client: TestClient, headers: dict[str, str], **params: str) -> Any:
    return validated(client.get("/fhir/Observation", params=params, headers=headers))


def _codes(obs: dict[str, Any]) -> list[str]:
    return [c["code"] for c in obs["code"]["coding"]]


def _quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def _is_vital_sign(obs: dict[str, Any]) -> None:
    assert obs["category"][0]["coding"][0] == {
        "system": VITAL_SIGNS,
        "code": "vital-signs",
        "display": "Vital Signs",
    }
    assert obs["status"] == "final"
    assert obs["device"]["reference"].startswith("Device/d-")


def test_weight_height_and_bmi(client: TestClient, auth: Auth, clinic: Clinic, body: Body) -> None:
    headers = auth(clinic.dr_lee)
    rid = body.ids["weight"]
    weight = _get(client, headers, f"Observation/wt-{rid}")
    _is_vital_sign(weight)
    assert _codes(weight) == ["29463-7"]
    assert weight["valueQuantity"] == _quantity(72.5, "kg", "kg")
    assert weight["subject"]["reference"] == f"Patient/{body.patient_id}"
    assert weight["identifier"][0]["value"] == f"urn:uuid:{rid}"
    exts = {e["url"]: e["valueReference"]["reference"] for e in weight["extension"]}
    cts_ref = exts["http://hl7.org/fhir/uv/phd/StructureDefinition/CoincidentTimeStampReference"]
    cts = _get(client, headers, cts_ref)  # the scale's clock, like the meter's
    assert cts["valueDateTime"] != cts["effectiveDateTime"]

    height = _get(client, headers, f"Observation/ht-{rid}")
    assert _codes(height) == ["8302-2"]
    assert height["valueQuantity"] == _quantity(175.0, "cm", "cm")
    bmi = _get(client, headers, f"Observation/bmi-{rid}")
    assert _codes(bmi) == ["39156-5"]
    assert bmi["valueQuantity"] == _quantity(23.7, "kg/m2", "kg/m2")
    assert [r["reference"] for r in bmi["derivedFrom"]] == [
        f"Observation/wt-{rid}",
        f"Observation/ht-{rid}",
    ]
    # A weight without height/BMI has neither Observation.
    bare = body.ids["bare_weight"]
    _get(client, headers, f"Observation/wt-{bare}")
    _get(client, headers, f"Observation/ht-{bare}", status=404)
    _get(client, headers, f"Observation/bmi-{bare}", status=404)
    # A prefix of another kind is not found.
    _get(client, headers, f"Observation/temp-{rid}", status=404)
    _get(client, headers, f"Observation/glu-{rid}", status=404)

    found = _search(
        client,
        headers,
        patient=str(body.patient_id),
        code=f"{LOINC}|29463-7",
        category="vital-signs",
    )
    assert found["total"] == 2
    assert [e["resource"]["id"] for e in found["entry"]] == [f"wt-{rid}", f"wt-{bare}"]
    both = _search(client, headers, patient=str(body.patient_id), code="8302-2,39156-5")
    assert {e["resource"]["id"] for e in both["entry"]} == {f"ht-{rid}", f"bmi-{rid}"}


def test_spo2_with_pulse(client: TestClient, auth: Auth, clinic: Clinic, body: Body) -> None:
    headers = auth(clinic.dr_lee)
    rid = body.ids["spo2"]
    spo2 = _get(client, headers, f"Observation/spo2-{rid}")
    _is_vital_sign(spo2)
    assert _codes(spo2) == ["59408-5", "2708-6"]
    assert spo2["valueQuantity"] == _quantity(97.0, "%", "%")
    assert spo2["hasMember"] == [{"reference": f"Observation/hr-{rid}"}]
    assert "component" not in spo2  # US Core's components are inhaled O2 only
    pulse = _get(client, headers, f"Observation/hr-{rid}")
    _is_vital_sign(pulse)
    assert _codes(pulse) == ["8867-4"]
    assert pulse["valueQuantity"] == _quantity(64.0, "beats/minute", "/min")
    assert pulse["derivedFrom"] == [{"reference": f"Observation/spo2-{rid}"}]

    nan = body.ids["spo2_nan"]
    no_pulse = _get(client, headers, f"Observation/hr-{nan}")
    assert "valueQuantity" not in no_pulse
    assert no_pulse["dataAbsentReason"]["coding"][0]["code"] == "not-a-number"

    pid = str(body.patient_id)
    for code in ("59408-5", f"{LOINC}|2708-6", "59408-5,2708-6"):
        found = _search(client, headers, patient=pid, code=code)
        assert [e["resource"]["id"] for e in found["entry"]] == [f"spo2-{rid}", f"spo2-{nan}"]
    pulses = _search(client, headers, patient=pid, code=f"{LOINC}|8867-4")
    assert [e["resource"]["id"] for e in pulses["entry"]] == [f"hr-{rid}", f"hr-{nan}"]


def test_temperature(client: TestClient, auth: Auth, clinic: Clinic, body: Body) -> None:
    headers = auth(clinic.dr_lee)
    rid = body.ids["temp"]
    temp = _get(client, headers, f"Observation/temp-{rid}")
    _is_vital_sign(temp)
    assert _codes(temp) == ["8310-5"]
    assert temp["valueQuantity"] == _quantity(36.8, "°C", "Cel")
    found = _search(client, headers, patient=str(body.patient_id), code=f"{LOINC}|8310-5")
    assert [e["resource"]["id"] for e in found["entry"]] == [f"temp-{rid}"]


def test_category_and_dates(client: TestClient, auth: Auth, clinic: Clinic, body: Body) -> None:
    headers = auth(clinic.dr_lee)
    pid = str(body.patient_id)
    vitals = _search(client, headers, patient=pid, category=f"{VITAL_SIGNS}|vital-signs")
    # 2 weights + height + BMI, 2 SpO2 + 2 pulses, 1 temperature
    assert vitals["total"] == 9
    assert _search(client, headers, patient=pid, category="laboratory")["total"] == 0
    assert _search(client, headers, patient=pid, category="urn:other|vital-signs")["total"] == 0
    lab = _search(client, headers, patient=str(clinic.patient_a), category="laboratory", _count="1")
    assert lab["entry"][0]["resource"]["category"][0]["coding"][0]["code"] == "laboratory"
    # Dates, sort and paging as for the others.
    ids = body.ids
    first = _search(client, headers, patient=pid, category="vital-signs", _sort="-date", _count="2")
    assert first["entry"][0]["resource"]["id"] == f"temp-{ids['temp']}"
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert validated(client.get(nxt, headers=headers))["entry"]
    later = _search(client, headers, patient=pid, code="29463-7,8310-5", date="ge2000-01-01")
    assert later["total"] == 3


def test_scope(
    client: TestClient, auth: Auth, clinic: Clinic, body: Body, db: psycopg.Connection[Any]
) -> None:
    rid, pid = body.ids["weight"], str(body.patient_id)
    outside = auth(clinic.dr_ray)
    _get(client, outside, f"Observation/wt-{rid}", status=404)
    _get(client, outside, f"Observation/hr-{body.ids['spo2']}", status=404)
    assert _search(client, outside, patient=pid)["total"] == 0
    assert _search(client, outside, code="29463-7")["total"] == 0
    leaked = db.execute(
        "SELECT count(*) FILTER (WHERE action <> 'access.denied'),"
        " count(*) FILTER (WHERE action = 'access.denied')"
        " FROM audit_log WHERE actor = %s AND patient_id = %s",
        (clinic.dr_ray, body.patient_id),
    ).fetchone()
    # Nothing was read; each refused read or search is on record.
    assert leaked is not None and leaked == (0, 3)

    client_id = f"ehr-body-{clinic.tag}"
    _, secret = register_client(db, client_id, "system/Observation.rs", clinic.dr_lee)
    token = client.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert token.status_code == 200, token.text
    ehr = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert _get(client, ehr, f"Observation/wt-{rid}")["valueQuantity"]["value"] == 72.5
    found = _search(client, ehr, patient=pid, category="vital-signs")
    assert found["total"] == 9
    assert _search(client, ehr, patient=str(clinic.patient_c), code="29463-7")["total"] == 0
    audited = db.execute(
        "SELECT count(*) FROM audit_log WHERE actor = %s AND action = 'fhir.observation.read'"
        " AND patient_id = %s",
        (f"client:{client_id}", body.patient_id),
    ).fetchone()
    assert audited is not None and audited[0] == 1


@pytest.mark.parametrize(
    "params",
    [
        {"code": "|29463-7"},
        {"code": ",,,"},
        {"category": "|"},
        {"category": "vital-signs,laboratory", "code": "http://loinc.org|"},
        {"code": "'; DROP TABLE body_readings; --"},
        {"category": "x" * 300},
    ],
)
def test_odd_queries(
    client: TestClient, auth: Auth, clinic: Clinic, body: Body, params: dict[str, str]
) -> None:
    r = client.get("/fhir/Observation", params=params, headers=auth(clinic.dr_lee))
    validated(r)


@pytest.mark.parametrize(
    "fhir_id", ["wt-", "spo2-nonsense", "temp-00000000-0000-0000-0000-000000000000", "ht-x-y"]
)
def test_odd_ids(client: TestClient, auth: Auth, clinic: Clinic, fhir_id: str) -> None:
    _get(client, auth(clinic.dr_lee), f"Observation/{fhir_id}", status=404)
