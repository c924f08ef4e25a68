"""Database rows to FHIR R4 resources (plain dicts; the tests validate every kind with
``fhir.resources``).

Mapping (see docs/api.md, "FHIR"):

* Glucose: fingerstick 2339-0 (mg/dL) or 15074-8 (mmol/L, when the meter reported
  mmol/L), CGM 99504-3 (mg/dL, HL7 CGM IG); category laboratory.  HI/LO results without
  a number carry ``dataAbsentReason`` and an H/L interpretation.
* A fingerstick's sample location -> ``bodySite`` (SNOMED CT), its sample type -> a
  contained Specimen (``glucose_sample``).
* Blood pressure: panel 85354-9 with components 8480-6 / 8462-4 (and 8478-0 mean
  arterial) in ``mm[Hg]``; pulse as a separate heart-rate Observation 8867-4 ``/min``;
  category vital-signs.  UCUM system http://unitsofmeasure.org throughout.
* Weight, height, BMI, SpO2 (+ pulse) and temperature from ``body_readings``:
  ``body_vitals``; category vital-signs.
* Provenance: ``valueQuantity`` is in the canonical unit; the value and unit the device
  itself reported (a scale's 165.35 ``[lb_av]``, a cuff's kPa, a meter's ``kg/L``) ride
  on it as the FHIR core extension ``iso21090-PQ-translation`` ("the same physical
  quantity expressed in a different unit", context Quantity), whenever they differ.
  That is the PHD IG's notion of the measurement (PhdNumericObservation: the value as the
  PHD reports it, its unit the UCUM mapping of the device's MDC unit code, "Obtaining the
  Unit Code"), kept beside the converted value instead of replacing it.
* Personal Health Device IG (STU 2): ``Observation.device`` is the measuring device;
  the gateway that uploaded it is the ``observation-gatewayDevice`` extension
  (PhdBaseObservation's gatewayDevice slice); the device clock is related to the
  gateway clock by a PhdCoincidentTimeStampObservation referenced through the
  ``CoincidentTimeStampReference`` extension (``effectiveDateTime`` = gateway/UTC time,
  ``valueDateTime`` = what the device clock read at that instant).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import orjson
from fastapi.responses import Response

from api.fhir.glucose_sample import add_sample
from device_profiles import Kind
from device_profiles.model import Component
from device_profiles.profiles import PROFILES
from readings import GLUCOSE_TABLE, KINDS, FhirCode, KindSpec

FHIR_JSON = "application/fhir+json"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
GATEWAY_EXT = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
PQ_TRANSLATION_EXT = "http://hl7.org/fhir/StructureDefinition/iso21090-PQ-translation"
COINCIDENT_EXT = "http://hl7.org/fhir/uv/phd/StructureDefinition/CoincidentTimeStampReference"
TIMEZONE_EXT = "http://hl7.org/fhir/StructureDefinition/timezone"
MRN_SYSTEM = "urn:homevitals:mrn"
EXTERNAL_ID_SYSTEM = "urn:homevitals:patient"
DEVICE_ID_SYSTEM = "urn:homevitals:device"
GATEWAY_ID_SYSTEM = "urn:homevitals:gateway"
RULE_SYSTEM = "urn:homevitals:rule"
FLAG_SEVERITY_SYSTEM = "urn:homevitals:flag-severity"

# MDC: absolute time stamp (coincident time stamp observation), device specialisations.
MDC_ATTR_TIME_ABS = "67975"
MDC_MOC_VMS_MDS_AHD = "531981"  # application hosting device = the gateway
# 11073-104zz device specialisations, MDC_DEV_SPEC_PROFILE_*, by what the device
# measures.  Keyed by ``Kind`` (every kind must have one: tests/api check it), and a
# device's ``profile`` column holds a device profile id ("glucose-meter", "bp-cuff",
# vendor variants...), so ``specialization`` goes profile -> family -> code.
SPECIALIZATION: Mapping[Kind, tuple[str, str]] = MappingProxyType(
    {kind: (spec.device.code, spec.device.display) for kind, spec in KINDS.items()}
)


def device_family(profile: str | None) -> Kind | None:
    """What a device measures, from its stored profile id (older rows and tests may hold
    the reading kind itself, e.g. "glucose")."""
    if not profile:
        return None
    known = PROFILES.get(profile)
    if known is not None:
        return known.family
    try:
        return Kind(profile)
    except ValueError:
        return None


# The glucose table's kinds by its ``source`` column, and the codes of their glucose.
GLUCOSE_KIND_OF_SOURCE: Mapping[str, KindSpec] = MappingProxyType(
    {spec.source: spec for spec in KINDS.values() if spec.table == GLUCOSE_TABLE and spec.source}
)
GLUCOSE_DISPLAY = {
    coding.code: coding.display
    for spec in GLUCOSE_KIND_OF_SOURCE.values()
    for fhir in spec.spec(Component.GLUCOSE).fhir
    for coding in fhir.codings
}
BP = KINDS[Kind.BLOOD_PRESSURE]
BP_PULSE = BP.spec(Component.PULSE).fhir[0]


# --- ids ---------------------------------------------------------------------------------
# FHIR ids are [A-Za-z0-9.-]{1,64}; device ids on the wire may hold ':' (MAC addresses),
# so they are encoded reversibly (base32) or, if too long, by a SHA-256 prefix.


def _b32(text: str) -> str:
    return base64.b32encode(text.encode()).decode().rstrip("=").lower()


def _unb32(text: str) -> str | None:
    try:
        padded = text.upper() + "=" * (-len(text) % 8)
        return base64.b32decode(padded).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def device_fhir_id(device_id: str, prefix: str = "d") -> str:
    encoded = _b32(device_id)
    if len(encoded) + len(prefix) + 1 <= 64:
        return f"{prefix}-{encoded}"
    return f"{prefix}h-{hashlib.sha256(device_id.encode()).hexdigest()[:40]}"


def gateway_fhir_id(gateway_id: str) -> str:
    return device_fhir_id(gateway_id, "gw")


def parse_device_id(fhir_id: str) -> tuple[str, str, str] | None:
    """(kind 'device'|'gateway', match 'exact'|'sha256', value) of a Device id."""
    for prefix, kind in (("d-", "device"), ("gw-", "gateway")):
        if fhir_id.startswith(prefix):
            value = _unb32(fhir_id[len(prefix) :])
            return None if value is None else (kind, "exact", value)
    for prefix, kind in (("dh-", "device"), ("gwh-", "gateway")):
        if fhir_id.startswith(prefix) and len(fhir_id) == len(prefix) + 40:
            return kind, "sha256", fhir_id[len(prefix) :]
    return None


# Body readings' Observations (weight, height, BMI, SpO2, temperature): ``body_vitals``.
OBS_PREFIXES = tuple(
    dict.fromkeys(
        [
            *(spec.panel.prefix for spec in KINDS.values() if spec.panel is not None),
            *(
                fhir.prefix
                for spec in KINDS.values()
                for c in spec.components
                for fhir in c.fhir
                if fhir.prefix is not None
            ),
            "cts",
        ]
    )
)


def parse_observation_id(fhir_id: str) -> tuple[str, uuid.UUID] | None:
    kind, _, rest = fhir_id.partition("-")
    if kind not in OBS_PREFIXES:
        return None
    try:
        return kind, uuid.UUID(rest)
    except ValueError:
        return None


# --- helpers -------------------------------------------------------------------------------


def instant(value: datetime) -> str:
    return value.isoformat()


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": round(float(value), 3), "unit": unit, "system": UCUM, "code": code}


# Device unit texts that are not their UCUM code.
_UCUM_OF = {"mmHg": "mm[Hg]"}


def with_original(quantity: dict[str, Any], original: Any) -> dict[str, Any]:
    """``quantity`` plus the device's own ``[value, unit]`` as a PQ-translation extension,
    when the device reported something other than what ``quantity`` says."""
    if not isinstance(original, list | tuple) or len(original) != 2:
        return quantity
    value, unit = original
    if not isinstance(value, int | float) or isinstance(value, bool) or not isinstance(unit, str):
        return quantity
    code = _UCUM_OF.get(unit, unit)
    if code == quantity["code"] and round(float(value), 3) == quantity["value"]:
        return quantity
    translation = {"value": float(value), "unit": unit, "system": UCUM, "code": code}
    return {**quantity, "extension": [{"url": PQ_TRANSLATION_EXT, "valueQuantity": translation}]}


def original_of(row: dict[str, Any], component: str) -> Any:
    """The stored ``[value, unit]`` of ``component`` (``original`` jsonb, or glucose's
    two columns), or None."""
    if component == "glucose" and row.get("original_unit") is not None:
        return [row.get("original_value"), row["original_unit"]]
    original = row.get("original")
    return original.get(component) if isinstance(original, dict) else None


def _category(code: str, display: str) -> list[dict[str, Any]]:
    return [{"coding": [_coding(OBS_CATEGORY, code, display)]}]


def _device_extensions(row: dict[str, Any]) -> list[dict[str, Any]]:
    ext: list[dict[str, Any]] = []
    if row.get("gateway_id"):
        ext.append(
            {
                "url": GATEWAY_EXT,
                "valueReference": {"reference": f"Device/{gateway_fhir_id(row['gateway_id'])}"},
            }
        )
    if row.get("skew_s") is not None:
        ext.append(
            {
                "url": COINCIDENT_EXT,
                "valueReference": {"reference": f"Observation/cts-{row['reading_id']}"},
            }
        )
    return ext


def _base_observation(
    prefix: str, row: dict[str, Any], category: list[dict[str, Any]]
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"{prefix}-{row['reading_id']}",
        "status": "final",
        "category": category,
        "subject": {"reference": f"Patient/{row['patient_id']}"},
        "effectiveDateTime": instant(row["time"]),
        "device": {"reference": f"Device/{device_fhir_id(row['device_id'])}"},
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{row['reading_id']}"}],
    }
    ext = _device_extensions(row)
    if ext:
        obs["extension"] = ext
    if row.get("conditions"):
        obs["note"] = [{"text": "Device status: " + ", ".join(row["conditions"])}]
    return obs


def glucose_fhir(row: dict[str, Any]) -> FhirCode:
    """The code of a glucose row: its kind's (by ``source``), the one for the unit the
    meter reported when there is one (mmol/L), else the kind's first."""
    codes = GLUCOSE_KIND_OF_SOURCE[row["source"]].spec(Component.GLUCOSE).fhir
    unit = row.get("original_unit")
    return next(
        (c for c in codes if c.original_unit is not None and c.original_unit == unit), codes[0]
    )


def glucose_code(row: dict[str, Any]) -> str:
    return glucose_fhir(row).codings[0].code


def glucose_observation(row: dict[str, Any]) -> dict[str, Any]:
    spec = GLUCOSE_KIND_OF_SOURCE[row["source"]]
    obs = _base_observation("glu", row, _category(*spec.category))
    fhir = glucose_fhir(row)
    obs["code"] = {
        "coding": [_coding(LOINC, c.code, c.display) for c in fhir.codings],
        "text": fhir.text,
    }
    conditions = row.get("conditions") or []
    if row.get("mgdl") is None:
        high = "result_above_range" in conditions
        obs["dataAbsentReason"] = {
            "coding": [_coding(DATA_ABSENT, "error", "Error")],
            "text": "HI: above the meter's range" if high else "LO: below the meter's range",
        }
        obs["interpretation"] = [
            {"coding": [_coding(INTERPRETATION, "H" if high else "L", "High" if high else "Low")]}
        ]
    else:
        # The meter's own value when it reported this unit (no conversion round trip).
        value = (row.get("original_value") if fhir.original_unit is not None else None) or (
            row["mgdl"] * fhir.factor
        )
        obs["valueQuantity"] = with_original(
            _quantity(value, fhir.unit, fhir.ucum), original_of(row, "glucose")
        )
    if row["source"] == "smbg":
        add_sample(obs, row.get("details"), row["patient_id"])
    return obs


def bp_observation(row: dict[str, Any]) -> dict[str, Any]:
    panel = BP.panel
    assert panel is not None  # declared in readings/kinds.py
    obs = _base_observation(panel.prefix, row, _category(*BP.category))
    obs["code"] = {
        "coding": [_coding(LOINC, panel.coding.code, panel.coding.display)],
        "text": panel.text,
    }
    components = []
    for c in BP.components:
        column = str(c.column)
        for fhir in c.fhir:
            if fhir.prefix is not None or (not c.required and row.get(column) is None):
                continue
            components.append(
                {
                    "code": {"coding": [_coding(LOINC, k.code, k.display) for k in fhir.codings]},
                    "valueQuantity": with_original(
                        _quantity(row[column] * fhir.factor, fhir.unit, fhir.ucum),
                        original_of(row, c.component.value),
                    ),
                }
            )
    obs["component"] = components
    if row.get("pulse") is not None:
        obs["hasMember"] = [{"reference": f"Observation/{BP_PULSE.prefix}-{row['reading_id']}"}]
    return obs


def heart_rate_observation(row: dict[str, Any]) -> dict[str, Any]:
    hr = BP_PULSE
    obs = _base_observation(str(hr.prefix), row, _category(*BP.category))
    obs["code"] = {
        "coding": [_coding(LOINC, c.code, c.display) for c in hr.codings],
        "text": hr.text,
    }
    obs["valueQuantity"] = with_original(
        _quantity(row["pulse"] * hr.factor, hr.unit, hr.ucum), original_of(row, "pulse")
    )
    obs["derivedFrom"] = [{"reference": f"Observation/{hr.member_of}-{row['reading_id']}"}]
    return obs


def coincident_timestamp_observation(row: dict[str, Any]) -> dict[str, Any]:
    """PhdCoincidentTimeStampObservation: the device clock read ``time + skew`` when the
    gateway (UTC-synchronised) clock read ``time``."""
    device_clock = row["time"] + timedelta(seconds=float(row["skew_s"]))
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"cts-{row['reading_id']}",
        "status": "final",
        "code": {
            "coding": [_coding(MDC, MDC_ATTR_TIME_ABS, "MDC_ATTR_TIME_ABS")],
            "text": "Coincident time stamp (absolute time clock)",
        },
        "subject": {"reference": f"Patient/{row['patient_id']}"},
        "effectiveDateTime": instant(row["time"]),
        "valueDateTime": instant(device_clock),
        "device": {"reference": f"Device/{device_fhir_id(row['device_id'])}"},
    }
    if row.get("gateway_id"):
        obs["extension"] = [
            {
                "url": GATEWAY_EXT,
                "valueReference": {"reference": f"Device/{gateway_fhir_id(row['gateway_id'])}"},
            }
        ]
    if row.get("device_time"):
        obs["note"] = [{"text": f"Device-reported local time: {row['device_time']}"}]
    return obs


def patient_resource(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(row["id"]),
        "identifier": [{"system": EXTERNAL_ID_SYSTEM, "value": row["external_id"]}],
        "active": True,
        "extension": [{"url": TIMEZONE_EXT, "valueCode": row["timezone"]}],
    }
    if row.get("mrn"):
        out["identifier"].insert(
            0,
            {
                "type": {
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "MR",
                            "Medical record number",
                        )
                    ]
                },
                "system": MRN_SYSTEM,
                "value": row["mrn"],
            },
        )
    name: dict[str, Any] = {}
    if row.get("family_name"):
        name["family"] = row["family_name"]
    if row.get("given_name"):
        name["given"] = [row["given_name"]]
    if name:
        out["name"] = [{"use": "official", **name}]
    if row.get("birth_date"):
        out["birthDate"] = row["birth_date"].isoformat()
    return out


def device_resource(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Device",
        "id": device_fhir_id(row["id"]),
        "identifier": [{"system": DEVICE_ID_SYSTEM, "value": row["id"]}],
        "status": "active",
    }
    for key, field in (
        ("manufacturer", "manufacturer"),
        ("model", "modelNumber"),
        ("serial", "serialNumber"),
    ):
        if row.get(key):
            out[field] = row[key]
    if row.get("name"):
        out["deviceName"] = [{"name": row["name"], "type": "user-friendly-name"}]
    family = device_family(row.get("profile"))
    spec = None if family is None else SPECIALIZATION[family]
    if spec:
        out["specialization"] = [{"systemType": {"coding": [_coding(MDC, spec[0], spec[1])]}}]
    if row.get("patient_id") is not None:
        out["patient"] = {"reference": f"Patient/{row['patient_id']}"}
    notes = []
    if row.get("battery_percent") is not None:
        notes.append(f"battery {row['battery_percent']} %")
    if row.get("clock_skew_s") is not None:
        notes.append(f"clock offset at last sync {row['clock_skew_s']:+.1f} s (device - gateway)")
    if row.get("last_sync") is not None:
        notes.append(f"last sync {instant(row['last_sync'])}")
    if notes:
        out["note"] = [{"text": "; ".join(notes)}]
    return out


def gateway_resource(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Device",
        "id": gateway_fhir_id(row["id"]),
        "identifier": [{"system": GATEWAY_ID_SYSTEM, "value": row["id"]}],
        "status": "active",
        "type": {"coding": [_coding(MDC, MDC_MOC_VMS_MDS_AHD, "MDC_MOC_VMS_MDS_AHD")]},
        "deviceName": [{"name": f"HomeVitals gateway {row['id']}", "type": "user-friendly-name"}],
    }
    if row.get("version"):
        out["version"] = [{"value": row["version"]}]
    if row.get("patient_id") is not None:
        out["patient"] = {"reference": f"Patient/{row['patient_id']}"}
    return out


def flag_resource(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Flag",
        "id": str(row["id"]),
        "status": "inactive" if row["status"] == "resolved" else "active",
        "category": [
            {
                "coding": [
                    _coding(
                        "http://terminology.hl7.org/CodeSystem/flag-category",
                        "clinical",
                        "Clinical",
                    )
                ]
            },
            {"coding": [_coding(FLAG_SEVERITY_SYSTEM, row["severity"])]},
        ],
        "code": {"coding": [_coding(RULE_SYSTEM, row["rule_id"])], "text": row["summary"]},
        "subject": {"reference": f"Patient/{row['patient_id']}"},
        "period": {"start": instant(row["opened_at"])},
    }
    if row.get("resolved_at") is not None:
        out["period"]["end"] = instant(row["resolved_at"])
    return out


SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


PATIENT_PARAM = {
    "name": "patient",
    "type": "reference",
    "documentation": "[id], Patient/[id] or [base]/Patient/[id]; comma = OR, repeat = AND;"
    " chained: patient.identifier=[system|]value",
}
SUBJECT_PARAM = {
    "name": "subject",
    "type": "reference",
    "documentation": "as patient (subject:Patient, subject:Patient.identifier); other"
    " subject types match nothing",
}


def capability_statement(base: str, token_url: str) -> dict[str, Any]:
    search = [
        PATIENT_PARAM,
        SUBJECT_PARAM,
        {"name": "code", "type": "token"},
        {"name": "category", "type": "token"},
        {"name": "date", "type": "date"},
        {"name": "_count", "type": "number"},
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "json"],
        "software": {"name": "HomeVitals", "version": "1.0.0"},
        "implementation": {"description": "HomeVitals remote patient monitoring", "url": base},
        "rest": [
            {
                "mode": "server",
                "security": {
                    "extension": [
                        {
                            "url": SMART_OAUTH_URIS,
                            "extension": [{"url": "token", "valueUri": token_url}],
                        }
                    ],
                    "description": (
                        "OAuth2 bearer tokens from the token endpoint: people by password,"
                        " SMART system clients by client_credentials with system/<Type>.rs"
                        " scopes (see .well-known/smart-configuration)"
                    ),
                    "service": [
                        {"coding": [_coding(SECURITY_SERVICE, "OAuth")]},
                        {"coding": [_coding(SECURITY_SERVICE, "SMART-on-FHIR")]},
                    ],
                },
                "resource": [
                    {
                        "type": "Patient",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {"name": "_id", "type": "token"},
                            {"name": "identifier", "type": "token"},
                        ],
                    },
                    {
                        "type": "Device",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [PATIENT_PARAM],
                    },
                    {
                        "type": "Observation",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": search,
                    },
                    {
                        "type": "Flag",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            PATIENT_PARAM,
                            SUBJECT_PARAM,
                            {"name": "date", "type": "date"},
                            {"name": "status", "type": "token"},
                            {"name": "_count", "type": "number"},
                        ],
                    },
                ],
            }
        ],
    }


def bundle(
    resources: list[dict[str, Any]], base: str, total: int, self_url: str, next_url: str | None
) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def operation_outcome(status_code: int, detail: str) -> dict[str, Any]:
    code = {
        400: "invalid",
        401: "login",
        403: "forbidden",
        404: "not-found",
        405: "not-supported",
        409: "conflict",
        422: "invalid",
        429: "throttled",
    }.get(status_code, "exception")
    severity = "error" if status_code < 500 else "fatal"
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": detail}],
    }


class FhirResponse(Response):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def operation_outcome_response(
    status_code: int, detail: str, headers: dict[str, str] | None = None
) -> Response:
    return FhirResponse(
        operation_outcome(status_code, detail), status_code=status_code, headers=headers
    )
