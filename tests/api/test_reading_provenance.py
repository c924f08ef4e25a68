"""Provenance through the API (issue #13 part 3): a weight the scale reported in pounds, a
blood pressure the cuff reported in kPa and a fingerstick the meter reported in mmol/L keep
the device's own value and unit in the readings output and in FHIR, where the value is
canonical and the device's own is the ``iso21090-PQ-translation`` extension.

The readings start as device bytes (Weight Scale Service 1.0 §3.1 Weight Measurement;
Blood Pressure Service 1.1 §3.1; Glucose Service 1.0.1 §3.106), parsed and turned into
wire readings by the gateway's own code, and go in through the real ingest path."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from api_helpers import Auth, Clinic, validated
from fastapi.testclient import TestClient
from wire_helpers import send_through_ingest

from device_profiles.blood_pressure import parse_blood_pressure_measurement
from device_profiles.glucose import parse_glucose_measurement
from device_profiles.weight import parse_weight_measurement
from ingest.patients import attach_gateway, upsert_patient
from readings import Reading, TimeContext, to_reading

PQ_TRANSLATION = "http://hl7.org/fhir/StructureDefinition/iso21090-PQ-translation"
UCUM = "http://unitsofmeasure.org"


def _time7(when: datetime) -> bytes:
    return when.year.to_bytes(2, "little") + bytes(
        (when.month, when.day, when.hour, when.minute, when.second)
    )


@pytest.fixture(scope="module")
def sent(db: psycopg.Connection[Any]) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    pid = upsert_patient(db, f"prov-{tag}", "UTC", "Pat Provenance")
    gw = f"gw-prov-{tag}"
    attach_gateway(db, gw, pid)
    scale, cuff, meter = f"scale-p-{tag}", f"cuff-p-{tag}", f"meter-p-{tag}"
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=1)
    wall = (start + timedelta(hours=2)).replace(tzinfo=None)
    clock = TimeContext(ZoneInfo("UTC"), 0.0, end)
    # Weight: flags imperial + time stamp + user; 16535 x 0.01 lb = 165.35 lb; user 1.
    weight = parse_weight_measurement(
        b"\x07" + (16535).to_bytes(2, "little") + _time7(wall) + b"\x01"
    )
    # BP: flags kPa + time stamp; SFLOAT exponent -1: 16.0 / 10.7 / 12.4 kPa.
    bp = parse_blood_pressure_measurement(
        b"\x03" + bytes.fromhex("a0f06bf07cf0") + _time7(wall + timedelta(minutes=1))
    )
    # Glucose: flags concentration present, in mol/L; seq 3; 62 x 10^-4 mol/L = 6.2 mmol/L.
    glucose = parse_glucose_measurement(
        b"\x06\x03\x00" + _time7(wall + timedelta(minutes=2)) + bytes.fromhex("3ec0") + b"\x11"
    )
    readings: dict[str, Reading] = {
        "weight": to_reading(scale, weight, clock),
        "bp": to_reading(cuff, bp, clock),
        "glucose": to_reading(meter, glucose, clock),
    }
    devices = {scale: "weight-scale", cuff: "blood-pressure", meter: "glucose-meter"}
    result = send_through_ingest(db, gw, devices, start, list(readings.values()), end)
    assert sum(result.inserted.values()) == 3, result
    return {"pid": pid, "start": start, "end": end, "ids": {k: r.id for k, r in readings.items()}}


def _item(
    client: TestClient, auth: Auth, clinic: Clinic, sent: dict[str, Any], path: str, rid: str
) -> Any:
    r = client.get(
        f"/api/v1/patients/{sent['pid']}/readings/{path}",
        params={"start": sent["start"].isoformat(), "end": sent["end"].isoformat()},
        headers=auth(clinic.admin),
    )
    assert r.status_code == 200, r.text
    return {item["reading_id"]: item for item in r.json()["items"]}[rid]


def test_readings_output_keeps_the_device_values(
    client: TestClient, auth: Auth, clinic: Clinic, sent: dict[str, Any]
) -> None:
    ids = sent["ids"]
    body = _item(client, auth, clinic, sent, "body", ids["weight"])
    assert body["original"] == {"weight": [165.35, "[lb_av]"]}
    assert body["components"]["weight"] == pytest.approx(165.35 * 0.45359237, abs=0.001)
    bp = _item(client, auth, clinic, sent, "blood-pressure", ids["bp"])
    assert bp["original"] == {
        "systolic": [16.0, "kPa"],
        "diastolic": [10.7, "kPa"],
        "mean_arterial": [12.4, "kPa"],
    }
    glucose = _item(client, auth, clinic, sent, "glucose", ids["glucose"])
    assert glucose["original"] == {"glucose": [6.2, "mmol/L"]}
    assert glucose["mgdl"] == pytest.approx(6.2 * 18.01559)
    assert glucose["record_type"] == "strip" and bp["record_type"] == "measured"


def _translation(quantity: dict[str, Any]) -> Any:
    (ext,) = quantity["extension"]
    assert ext["url"] == PQ_TRANSLATION
    return ext["valueQuantity"]


def test_fhir_value_is_canonical_with_the_device_value_as_translation(
    client: TestClient, auth: Auth, clinic: Clinic, sent: dict[str, Any]
) -> None:
    ids = sent["ids"]
    wt = validated(client.get(f"/fhir/Observation/wt-{ids['weight']}", headers=auth(clinic.admin)))
    assert wt["valueQuantity"]["code"] == "kg"
    assert wt["valueQuantity"]["value"] == pytest.approx(165.35 * 0.45359237, abs=0.001)
    assert _translation(wt["valueQuantity"]) == {
        "value": 165.35,
        "unit": "[lb_av]",
        "system": UCUM,
        "code": "[lb_av]",
    }
    bp = validated(client.get(f"/fhir/Observation/bp-{ids['bp']}", headers=auth(clinic.admin)))
    systolic = bp["component"][0]["valueQuantity"]
    assert systolic["code"] == "mm[Hg]" and systolic["value"] == pytest.approx(120.01, abs=0.01)
    assert _translation(systolic)["value"] == 16.0 and _translation(systolic)["code"] == "kPa"
    glu = validated(
        client.get(f"/fhir/Observation/glu-{ids['glucose']}", headers=auth(clinic.admin))
    )
    # A meter reporting mmol/L: the FHIR value is the device's own (LOINC 15074-8), so
    # there is nothing to translate.
    assert glu["valueQuantity"] == {
        "value": 6.2,
        "unit": "mmol/L",
        "system": UCUM,
        "code": "mmol/L",
    }
