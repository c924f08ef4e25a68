"""Weight-scale, pulse-oximeter and thermometer readings (``body_readings``) as FHIR R4
vital-signs Observations, one per measured quantity, as the FHIR vital signs profiles
and US Core model them:

* scale: body weight 29463-7 ``kg``, body height 8302-2 ``cm`` (the BodyLengthUnits
  value set US Core binds is ``cm | [in_i]``, so the stored metres are converted), BMI
  39156-5 ``kg/m2``;
* oximeter: 59408-5 (pulse oximetry) + 2708-6 (the base vital-signs code) in ``%``,
  both codings as US Core Pulse Oximetry requires; its components are only for inhaled
  oxygen, so the pulse is a separate heart-rate Observation 8867-4 ``/min``, linked
  like the cuff's (``hasMember`` / ``derivedFrom``);
* thermometer: body temperature 8310-5 ``Cel``.

Ids are ``<prefix>-<reading uuid>``; the pulse shares the ``hr`` prefix with the cuff's
pulse (reading uuids are unique across tables).  An IEEE-11073 special value (ingest
keeps it as ``details["special_<component>"]``, never as a number) gives an
Observation without a value and with the matching ``dataAbsentReason``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.fhir.resources import (
    DATA_ABSENT,
    HEART_RATE,
    LOINC,
    _base_observation,
    _category,
    _coding,
    _quantity,
    original_of,
    with_original,
)


@dataclass(frozen=True, slots=True)
class VitalSign:
    kind: str  # body_readings.kind
    component: str  # key in body_readings.components
    codings: tuple[tuple[str, str], ...]  # LOINC (code, display)
    text: str
    unit: str  # human-readable unit
    ucum: str
    factor: float = 1.0  # stored canonical unit -> ``ucum``


BODY_WEIGHT = "29463-7"
BODY_HEIGHT = "8302-2"
BMI = "39156-5"
SPO2_PULSE_OX = "59408-5"
SPO2 = "2708-6"
BODY_TEMPERATURE = "8310-5"

# Observation id prefix -> what it shows.
VITALS: dict[str, VitalSign] = {
    "wt": VitalSign("weight", "weight", ((BODY_WEIGHT, "Body weight"),), "Body weight", "kg", "kg"),
    # Stored in m (the GSS canonical unit); FHIR's body-length units are cm or [in_i].
    "ht": VitalSign(
        "weight", "height", ((BODY_HEIGHT, "Body height"),), "Body height", "cm", "cm", 100.0
    ),
    "bmi": VitalSign(
        "weight", "bmi", ((BMI, "Body mass index (BMI) [Ratio]"),), "BMI", "kg/m2", "kg/m2"
    ),
    "spo2": VitalSign(
        "spo2",
        "spo2",
        (
            (SPO2_PULSE_OX, "Oxygen saturation in Arterial blood by Pulse oximetry"),
            (SPO2, "Oxygen saturation in Arterial blood"),
        ),
        "Oxygen saturation",
        "%",
        "%",
    ),
    "hr": VitalSign(
        "spo2", "pulse", ((HEART_RATE, "Heart rate"),), "Pulse rate", "beats/minute", "/min"
    ),
    "temp": VitalSign(
        "temperature",
        "temperature",
        ((BODY_TEMPERATURE, "Body temperature"),),
        "Body temperature",
        "°C",
        "Cel",
    ),
}
# The scale's weight, the oximeter's saturation and the thermometer's temperature are
# required by ingest; height/BMI and the pulse may be missing.
PRIMARY = {"weight": "wt", "spo2": "spo2", "temperature": "temp"}

# IEEE-11073 special values -> data-absent-reason codes.
SPECIAL_ABSENT = {
    "NaN": ("not-a-number", "Not a Number (NaN)"),
    "+INFINITY": ("positive-infinity", "Positive Infinity (PINF)"),
    "-INFINITY": ("negative-infinity", "Negative Infinity (NINF)"),
    "NRes": ("error", "Error"),
    "reserved": ("error", "Error"),
}


def sql_condition(prefix: str) -> str:
    """SQL over ``body_readings`` selecting the readings that have this Observation."""
    vital = VITALS[prefix]
    cond = f"kind = '{vital.kind}'"
    if PRIMARY.get(vital.kind) != prefix:
        cond += (
            f" AND (components ? '{vital.component}'"
            f" OR coalesce(details ? 'special_{vital.component}', false))"
        )
    return cond


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _special(row: dict[str, Any], component: str) -> str | None:
    details = row.get("details") or {}
    special = details.get(f"special_{component}") if isinstance(details, dict) else None
    return special if isinstance(special, str) else None


def body_observation(prefix: str, row: dict[str, Any]) -> dict[str, Any] | None:
    """The Observation ``prefix`` of a body reading, or None when the reading has none
    (another kind, or a component the device did not report)."""
    vital = VITALS.get(prefix)
    if vital is None or row.get("kind") != vital.kind:
        return None
    components = row.get("components") or {}
    value = _number(components.get(vital.component)) if isinstance(components, dict) else None
    special = _special(row, vital.component)
    primary = PRIMARY[vital.kind] == prefix
    if value is None and special is None and not primary:
        return None
    obs = _base_observation(prefix, row, _category("vital-signs", "Vital Signs"))
    obs["code"] = {
        "coding": [_coding(LOINC, code, display) for code, display in vital.codings],
        "text": vital.text,
    }
    if value is not None:
        obs["valueQuantity"] = with_original(
            _quantity(value * vital.factor, vital.unit, vital.ucum),
            original_of(row, vital.component),
        )
    else:
        code, display = SPECIAL_ABSENT.get(special or "", ("unknown", "Unknown"))
        obs["dataAbsentReason"] = {
            "coding": [_coding(DATA_ABSENT, code, display)],
            "text": f"the device reported {special}" if special else "no value stored",
        }
    rid = row["reading_id"]
    if prefix == "spo2" and body_observation("hr", row) is not None:
        obs["hasMember"] = [{"reference": f"Observation/hr-{rid}"}]
    elif prefix == "hr":
        obs["derivedFrom"] = [{"reference": f"Observation/spo2-{rid}"}]
    elif prefix == "bmi":
        # The scale computes BMI from this weight and the height entered on it.
        sources = ["wt"] + (["ht"] if body_observation("ht", row) is not None else [])
        obs["derivedFrom"] = [{"reference": f"Observation/{p}-{rid}"} for p in sources]
    return obs
