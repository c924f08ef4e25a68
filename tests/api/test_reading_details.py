"""What ingest keeps beyond the main values (migration 0004: CGM trend and quality,
``details``) reaches the raw readings and the FHIR Observations.  The readings go in
through the real ingest path (``ingest.pipeline.process``), as a gateway sends them."""

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

from device_profiles.model import Component, Kind
from ingest.patients import attach_gateway, upsert_patient
from readings import wire

SNOMED = "http://snomed.info/sct"


@dataclass(frozen=True)
class Sent:
    patient_id: int
    start: datetime
    end: datetime
    ids: dict[str, str]  # name -> reading id


def _reading(
    device: str,
    kind: Kind,
    when: datetime,
    values: dict[Component, float],
    details: Details,
    seq: int | None = None,
) -> wire.Reading:
    return wire_reading(device, kind, when, values, seq=seq, skew_s=2.0, details=details)


@pytest.fixture(scope="module")
def sent(db: psycopg.Connection[Any]) -> Sent:
    tag = uuid.uuid4().hex[:6]
    pid = upsert_patient(db, f"details-{tag}", "Europe/Berlin", "Dana Detail")
    gw = f"gw-details-{tag}"
    attach_gateway(db, gw, pid)
    devices = {
        "meter": (f"meter-d-{tag}", "glucose"),
        "cgm": (f"cgm-d-{tag}", "cgm"),
        "cuff": (f"cuff-d-{tag}", "blood_pressure"),
        "scale": (f"scale-d-{tag}", "weight"),
    }
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=1)
    t = start + timedelta(hours=1)
    meter, cgm, cuff, scale = (devices[k][0] for k in ("meter", "cgm", "cuff", "scale"))
    readings = {
        "finger": _reading(
            meter,
            Kind.GLUCOSE,
            t,
            {Component.GLUCOSE: 112.0},
            {"units": "kg/L", "sample_type": "capillary_plasma", "sample_location": "finger"},
            seq=1,
        ),
        "earlobe": _reading(
            meter,
            Kind.GLUCOSE,
            t + timedelta(hours=1),
            {Component.GLUCOSE: 98.0},
            {"sample_type": "venous_whole_blood", "sample_location": "earlobe"},
            seq=2,
        ),
        "alternate": _reading(
            meter,
            Kind.GLUCOSE,
            t + timedelta(hours=2),
            {Component.GLUCOSE: 131.0},
            {"sample_type": "undetermined_plasma", "sample_location": "alternate_site_test"},
            seq=3,
        ),
        "bare": _reading(
            meter, Kind.GLUCOSE, t + timedelta(hours=3), {Component.GLUCOSE: 90.0}, {}, 4
        ),
        "cgm": _reading(
            cgm,
            Kind.CGM,
            t + timedelta(hours=4),
            {Component.GLUCOSE: 145.0, Component.CGM_TREND: -1.5, Component.CGM_QUALITY: 97.0},
            {"time_offset_min": 600, "e2e_crc": False},
            seq=600,
        ),
        "bp": _reading(
            cuff,
            Kind.BLOOD_PRESSURE,
            t + timedelta(hours=5),
            {
                Component.SYSTOLIC: 131.0,
                Component.DIASTOLIC: 84.0,
                Component.MEAN_ARTERIAL: 99.7,
                Component.PULSE: 71.0,
            },
            {"units": "mmHg", "user_id": 1},
        ),
        "weight": _reading(
            scale, Kind.WEIGHT, t + timedelta(hours=6), {Component.WEIGHT: 81.3}, {"user_id": 2}
        ),
    }
    result = send_through_ingest(
        db, gw, dict(devices.values()), start, list(readings.values()), end
    )
    assert result.inserted == {"glucose": 5, "blood_pressure": 1, "body_readings": 1}, result
    return Sent(pid, start, end, {name: r.id for name, r in readings.items()})


def _items(client: TestClient, auth: Auth, clinic: Clinic, sent: Sent, path: str) -> Any:
    r = client.get(
        f"/api/v1/patients/{sent.patient_id}/readings/{path}",
        params={"start": sent.start.isoformat(), "end": sent.end.isoformat()},
        headers=auth(clinic.admin),
    )
    assert r.status_code == 200, r.text
    return {item["reading_id"]: item for item in r.json()["items"]}


def test_raw_readings_carry_trend_quality_and_details(
    client: TestClient, auth: Auth, clinic: Clinic, sent: Sent
) -> None:
    glucose = _items(client, auth, clinic, sent, "glucose")
    finger = glucose[sent.ids["finger"]]
    assert finger["details"] == {
        "units": "kg/L",
        "sample_type": "capillary_plasma",
        "sample_location": "finger",
    }
    assert finger["trend_mgdl_min"] is None and finger["quality_pct"] is None
    bare = glucose[sent.ids["bare"]]
    assert bare["details"] is None  # nothing beyond the value: null, not {}
    cgm = glucose[sent.ids["cgm"]]
    assert cgm["trend_mgdl_min"] == -1.5
    assert cgm["quality_pct"] == 97.0
    assert cgm["details"] == {"time_offset_min": 600, "e2e_crc": False}

    bp = _items(client, auth, clinic, sent, "blood-pressure")[sent.ids["bp"]]
    assert bp["details"] == {"units": "mmHg", "user_id": 1}
    body = _items(client, auth, clinic, sent, "body")[sent.ids["weight"]]
    assert body["details"] == {"user_id": 2}
    assert body["components"] == {"weight": 81.3}


def test_seeded_readings_without_details_answer_null(
    client: TestClient, auth: Auth, clinic: Clinic
) -> None:
    r = client.get(
        f"/api/v1/patients/{clinic.patient_a}/readings/blood-pressure",
        params={"limit": 1, "start": (clinic.end - timedelta(days=14)).isoformat()},
        headers=auth(clinic.dr_lee),
    )
    assert r.status_code == 200, r.text
    assert r.json()["items"][0]["details"] is None


def _observation(client: TestClient, auth: Auth, clinic: Clinic, prefix: str, rid: str) -> Any:
    return validated(client.get(f"/fhir/Observation/{prefix}-{rid}", headers=auth(clinic.admin)))


def test_fhir_fingerstick_sample_site_and_specimen(
    client: TestClient, auth: Auth, clinic: Clinic, sent: Sent
) -> None:
    finger = _observation(client, auth, clinic, "glu", sent.ids["finger"])
    assert finger["bodySite"]["coding"] == [
        {"system": SNOMED, "code": "7569003", "display": "Finger structure"}
    ]
    assert finger["specimen"] == {"reference": "#sample"}
    (specimen,) = finger["contained"]
    assert specimen["resourceType"] == "Specimen" and specimen["id"] == "sample"
    assert specimen["type"]["coding"][0]["code"] == "122554006"  # capillary blood
    assert specimen["type"]["text"] == "Capillary plasma"
    assert specimen["subject"] == {"reference": f"Patient/{sent.patient_id}"}

    earlobe = _observation(client, auth, clinic, "glu", sent.ids["earlobe"])
    assert earlobe["bodySite"]["coding"][0]["code"] == "48800003"
    assert earlobe["contained"][0]["type"]["coding"][0]["code"] == "122555007"  # venous

    alternate = _observation(client, auth, clinic, "glu", sent.ids["alternate"])
    assert "coding" not in alternate["bodySite"]  # no single structure: text only
    assert alternate["bodySite"]["text"].startswith("Alternate site")
    assert "coding" not in alternate["contained"][0]["type"]

    bare = _observation(client, auth, clinic, "glu", sent.ids["bare"])
    assert not {"bodySite", "specimen", "contained"} & bare.keys()
    cgm = _observation(client, auth, clinic, "glu", sent.ids["cgm"])
    assert not {"bodySite", "specimen", "contained"} & cgm.keys()
    assert cgm["code"]["coding"][0]["code"] == "99504-3"

    # Search results carry the same (and validate as a Bundle with its entries).
    bundle = validated(
        client.get(
            "/fhir/Observation",
            params={"patient": str(sent.patient_id), "code": "2339-0"},
            headers=auth(clinic.admin),
        )
    )
    sites = {
        e["resource"]["id"]: e["resource"].get("bodySite", {}).get("text") for e in bundle["entry"]
    }
    assert sites[f"glu-{sent.ids['finger']}"] == "Finger"
    assert sites[f"glu-{sent.ids['bare']}"] is None
