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

The codes, units and links are declared with each kind (readings/kinds.py).

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
    LOINC,
    _base_observation,
    _category,
    _coding,
    _quantity,
    original_of,
    with_original,
)
from device_profiles.model import Component, Kind
from readings import BODY_TABLE, KINDS


@dataclass(frozen=True, slots=True)
class VitalSign:
    kind: str  # body_readings.kind
    component: str  # key in body_readings.components
    codings: tuple[tuple[str, str], ...]  # LOINC (code, display)
    text: str
    unit: str  # human-readable unit
    ucum: str
    factor: float = 1.0  # stored canonical unit -> ``ucum``
    category: tuple[str, str] = ("vital-signs", "Vital Signs")
    member_of: str | None = None  # prefix of the Observation it is a member of
    derived_from: tuple[str, ...] = ()  # prefixes of the Observations it is computed from


# Observation id prefix -> what it shows: every component of a body kind with a FHIR
# code of its own (readings/kinds.py).
VITALS: dict[str, VitalSign] = {
    str(fhir.prefix): VitalSign(
        spec.kind.value,
        c.component.value,
        tuple((k.code, k.display) for k in fhir.codings),
        fhir.text,
        fhir.unit,
        fhir.ucum,
        fhir.factor,
        spec.category,
        fhir.member_of,
        fhir.derived_from,
    )
    for spec in KINDS.values()
    if spec.table == BODY_TABLE
    for c in spec.components
    for fhir in c.fhir
    if fhir.prefix is not None
}
# The Observation of each body kind's required component (the scale's weight, the
# oximeter's saturation, the thermometer's temperature): always there, even without a
# value; the others (height, BMI, pulse) only when the device reported them.
PRIMARY: dict[str, str] = {
    vital.kind: prefix
    for prefix, vital in VITALS.items()
    if KINDS[Kind(vital.kind)].spec(Component(vital.component)).required
}
# Prefix -> the prefixes of its member Observations (the oximeter's pulse).
MEMBERS: dict[str, tuple[str, ...]] = {
    prefix: tuple(p for p, v in VITALS.items() if v.member_of == prefix and v.kind == vital.kind)
    for prefix, vital in VITALS.items()
}

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
    obs = _base_observation(prefix, row, _category(*vital.category))
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
    members = [p for p in MEMBERS[prefix] if body_observation(p, row) is not None]
    sources = [p for p in vital.derived_from if body_observation(p, row) is not None]
    if members:
        obs["hasMember"] = [{"reference": f"Observation/{p}-{rid}"} for p in members]
    elif vital.member_of is not None:
        obs["derivedFrom"] = [{"reference": f"Observation/{vital.member_of}-{rid}"}]
    elif sources:
        obs["derivedFrom"] = [{"reference": f"Observation/{p}-{rid}"} for p in sources]
    return obs
