"""FHIR R4 facade: every resource kind the server produces validates with fhir.resources
(R4B models, structurally identical to R4 for these resources)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from api_helpers import Auth, Clinic, validated
from fastapi.testclient import TestClient


def test_metadata(client: TestClient) -> None:
    body = validated(client.get("/fhir/metadata"))
    assert body["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in body["rest"][0]["resource"]}
    assert types == {"Patient", "Device", "Observation", "Flag"}


def test_patient_read_and_search(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    headers = auth(clinic.dr_lee)
    patient = validated(client.get(f"/fhir/Patient/{clinic.patient_a}", headers=headers))
    assert patient["name"][0]["family"] == "Archer"
    mrn = patient["identifier"][0]["value"]
    found = validated(
        client.get(
            "/fhir/Patient", params={"identifier": f"urn:homevitals:mrn|{mrn}"}, headers=headers
        )
    )
    assert found["total"] == 1
    everyone = validated(client.get("/fhir/Patient", params={"_count": 1}, headers=headers))
    assert everyone["total"] >= 2  # Dr Lee's panel (enrolment tests add more)
    assert any(link["relation"] == "next" for link in everyone["link"])
    missing = validated(
        client.get(f"/fhir/Patient/{clinic.patient_c}", headers=headers), status=404
    )
    assert missing["issue"][0]["code"] == "not-found"


def test_devices_and_gateway(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    headers = auth(clinic.user_a)
    bundle = validated(
        client.get(
            "/fhir/Device", params={"patient": f"Patient/{clinic.patient_a}"}, headers=headers
        )
    )
    devices = [e["resource"] for e in bundle["entry"]]
    wire_ids = {d["identifier"][0]["value"] for d in devices}
    assert {
        clinic.device_cgm,
        clinic.device_meter,
        clinic.device_cuff,
        clinic.gateway_a,
    } <= wire_ids
    meter = next(d for d in devices if d["identifier"][0]["value"] == clinic.device_meter)
    assert meter["manufacturer"] == "Acme" and meter["serialNumber"] == "S2"
    assert "clock offset" in meter["note"][0]["text"]
    again = validated(client.get(f"/fhir/Device/{meter['id']}", headers=headers))
    assert again["id"] == meter["id"]
    other = auth(clinic.user_b)
    validated(client.get(f"/fhir/Device/{meter['id']}", headers=other), status=404)


def test_observation_search_codes_dates_and_paging(
    client: TestClient, auth: Auth, clinic: Clinic
) -> None:
    headers = auth(clinic.dr_lee)
    pid = clinic.patient_a
    smbg = validated(
        client.get(
            "/fhir/Observation",
            params={"patient": str(pid), "code": "http://loinc.org|2339-0", "_count": 10},
            headers=headers,
        )
    )
    assert smbg["total"] == 14 * 3
    first = smbg["entry"][0]["resource"]
    assert first["code"]["coding"][0]["code"] == "2339-0"
    assert first["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    assert first["valueQuantity"]["code"] == "mg/dL"
    assert first["device"]["reference"].startswith("Device/d-")
    urls = {e["url"]: e for e in first["extension"]}
    gateway = urls["http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"]
    assert gateway["valueReference"]["reference"].startswith("Device/gw-")
    cts_ref = urls["http://hl7.org/fhir/uv/phd/StructureDefinition/CoincidentTimeStampReference"]
    cts = validated(client.get("/fhir/" + cts_ref["valueReference"]["reference"], headers=headers))
    assert cts["code"]["coding"][0]["code"] == "67975"
    assert cts["valueDateTime"] != cts["effectiveDateTime"]  # the meter's clock was 93 s off

    nxt = next(link["url"] for link in smbg["link"] if link["relation"] == "next")
    page2 = validated(client.get(nxt, headers=headers))
    assert page2["entry"][0]["resource"]["id"] != first["id"]

    start = clinic.end - timedelta(days=14)
    window = validated(
        client.get(
            "/fhir/Observation",
            params=[
                ("patient", f"Patient/{pid}"),
                ("code", "85354-9,8867-4"),
                ("date", f"ge{start.date().isoformat()}"),
                ("date", f"lt{(start + timedelta(days=2)).isoformat()}"),
                ("_count", "100"),
            ],
            headers=headers,
        )
    )
    kinds = {e["resource"]["code"]["coding"][0]["code"] for e in window["entry"]}
    assert kinds == {"85354-9", "8867-4"}
    assert window["total"] == 8  # 2 days x 2 readings x (panel + heart rate)
    bp = next(e["resource"] for e in window["entry"] if e["resource"]["id"].startswith("bp-"))
    codes = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in bp["component"]}
    assert codes["8480-6"]["code"] == "mm[Hg]" and codes["8462-4"]["code"] == "mm[Hg]"
    hr = next(e["resource"] for e in window["entry"] if e["resource"]["id"].startswith("hr-"))
    assert hr["valueQuantity"]["code"] == "/min"

    cgm = validated(
        client.get(
            "/fhir/Observation",
            params={"patient": str(pid), "code": "99504-3", "_count": 2},
            headers=headers,
        )
    )
    assert cgm["total"] == 14 * 288
    read = validated(
        client.get(f"/fhir/Observation/{cgm['entry'][0]['resource']['id']}", headers=headers)
    )
    assert read["code"]["coding"][0]["code"] == "99504-3"


def test_observation_scope_and_errors(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    other = auth(clinic.user_b)
    empty = validated(
        client.get("/fhir/Observation", params={"patient": str(clinic.patient_a)}, headers=other)
    )
    assert empty["total"] == 0
    bad_date = validated(
        client.get("/fhir/Observation", params={"date": "ge2024-13-45"}, headers=other), status=400
    )
    assert "invalid date" in bad_date["issue"][0]["diagnostics"]
    validated(client.get("/fhir/Observation", params={"_count": 0}, headers=other), status=422)
    validated(client.get("/fhir/Observation/glu-nonsense", headers=other), status=404)
    unauth = validated(client.get("/fhir/Patient"), status=401)
    assert unauth["issue"][0]["code"] == "login"


def test_flags(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    headers = auth(clinic.admin)
    bundle = validated(
        client.get("/fhir/Flag", params={"patient": str(clinic.patient_a)}, headers=headers)
    )
    assert bundle["total"] >= 3
    flag = bundle["entry"][0]["resource"]
    assert flag["subject"]["reference"] == f"Patient/{clinic.patient_a}"
    validated(client.get(f"/fhir/Flag/{flag['id']}", headers=headers))
    validated(client.get("/fhir/Flag", headers=auth(clinic.user_a)), status=403)


def test_hi_result_and_mmol_meter(client: TestClient, auth: Auth, clinic: Clinic, db: Any) -> None:
    hi, mmol = uuid.uuid4(), uuid.uuid4()
    when = clinic.end - timedelta(days=1)
    db.execute(
        "INSERT INTO glucose (time, reading_id, device_id, patient_id, source, mgdl, conditions,"
        " original_value, original_unit) VALUES"
        " (%s, %s, 'meter-b', %s, 'smbg', NULL, '{result_above_range}', NULL, NULL),"
        " (%s, %s, 'meter-b', %s, 'smbg', 99.1, '{}', 5.5, 'mmol/L')",
        (when, hi, clinic.patient_b, when + timedelta(hours=1), mmol, clinic.patient_b),
    )
    headers = auth(clinic.user_b)
    hi_obs = validated(client.get(f"/fhir/Observation/glu-{hi}", headers=headers))
    assert "valueQuantity" not in hi_obs
    assert hi_obs["interpretation"][0]["coding"][0]["code"] == "H"
    assert hi_obs["dataAbsentReason"]["coding"][0]["code"] == "error"
    mmol_obs = validated(client.get(f"/fhir/Observation/glu-{mmol}", headers=headers))
    assert mmol_obs["code"]["coding"][0]["code"] == "15074-8"
    assert mmol_obs["valueQuantity"] == {
        "value": 5.5,
        "unit": "mmol/L",
        "system": "http://unitsofmeasure.org",
        "code": "mmol/L",
    }
    found = validated(client.get("/fhir/Observation", params={"code": "15074-8"}, headers=headers))
    assert [e["resource"]["id"] for e in found["entry"]] == [f"glu-{mmol}"]
