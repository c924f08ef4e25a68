"""Blood Pressure Service characteristics: Blood Pressure Measurement (0x2A35),
Intermediate Cuff Pressure (0x2A36) and Blood Pressure Feature (0x2A49).

References: Blood Pressure Service (BLS) v1.1.1 §3.1-3.3; GSS §3.31 Blood Pressure
Feature, §3.32 Blood Pressure Measurement, §3.131 Intermediate Cuff Pressure.

* Pressures are SFLOAT in mmHg or kPa (flag b0); canonical unit mmHg (``kPa ×
  MMHG_PER_KPA``), the device's value and unit kept as ``original_*`` (UCUM ``mm[Hg]`` /
  ``kPa``); ``details["units"]`` is the :class:`PressureUnit`.
* Pulse rate SFLOAT beats/min -> ``Component.PULSE`` (``/min``).
* User ID: ``details["user_id"]`` is the id, or None for 255 "unknown user"; the key is
  absent when the field is.
* Measurement Status -> Conditions.  The 2-bit pulse-rate-range field's value 3 is
  reserved: the reading is kept (the pressures are valid), no pulse-range condition is
  set and ``details["pulse_rate_range_reserved"] = True`` records it.
* Intermediate Cuff Pressure uses the same layout (BLS §3.2: the current cuff pressure
  in the systolic field, diastolic and MAP NaN).  It decodes with
  ``details["intermediate"] = True`` and the first value as
  ``Component.CUFF_PRESSURE`` instead of SYSTOLIC, so it can never be stored as a
  reading.  Blood Pressure Measurement has ``details["intermediate"] = False``.
* A time stamp with an unknown date (year/month/day 0) gives ``device_time=None``.

Reserved flag bits (b5-b7) and status bits (b6-b15) are ignored; trailing bytes are
rejected unless a reserved flag bit is set.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from struct import Struct

from device_profiles._fields import encode_user_id, parse_user_id, units_detail
from device_profiles._wire import (
    U8,
    U16,
    bit_table,
    check_end,
    encode_feature_bits,
    flags_to_set,
    need,
    original_sfloat,
    parse_feature_bits,
    quantity,
    set_to_flags,
    sfloat_decimal,
)
from device_profiles.date_time import encode_date_time, parse_optional_date_time
from device_profiles.errors import UnrepresentableValueError
from device_profiles.model import (
    MMHG_PER_KPA,
    Component,
    Condition,
    DetailValue,
    Kind,
    Measurement,
    Quantity,
)

__all__ = [
    "BloodPressureFeature",
    "BloodPressureFeatures",
    "PressureUnit",
    "encode_blood_pressure_feature",
    "encode_blood_pressure_measurement",
    "encode_intermediate_cuff_pressure",
    "parse_blood_pressure_feature",
    "parse_blood_pressure_measurement",
    "parse_intermediate_cuff_pressure",
]

MEASUREMENT = "Blood Pressure Measurement (0x2A35)"
INTERMEDIATE = "Intermediate Cuff Pressure (0x2A36)"
FEATURE = "Blood Pressure Feature (0x2A49)"

_PRESSURES = Struct("<HHH")

_F_KPA = 0x01
_F_TIME = 0x02
_F_PULSE = 0x04
_F_USER = 0x08
_F_STATUS = 0x10
_F_RFU = 0xE0

_PULSE_RANGE_MASK = 0x0018
_PULSE_ABOVE = 0x0008
_PULSE_BELOW = 0x0010
_PULSE_RESERVED = 0x0018

STATUS_BITS: tuple[tuple[int, Condition], ...] = (
    (0x0001, Condition.BODY_MOVEMENT),
    (0x0002, Condition.CUFF_TOO_LOOSE),
    (0x0004, Condition.IRREGULAR_PULSE),
    (0x0020, Condition.IMPROPER_POSITION),
)
_ALL_CONDITIONS = frozenset(
    {c for _, c in STATUS_BITS} | {Condition.PULSE_ABOVE_RANGE, Condition.PULSE_BELOW_RANGE}
)


class PressureUnit(enum.StrEnum):
    MMHG = "mmHg"
    KPA = "kPa"


def _mmhg(kpa: Decimal) -> float:
    return float(kpa) * MMHG_PER_KPA


@lru_cache(maxsize=8192)
def _pressure(raw: int, unit: PressureUnit) -> Quantity:
    exact = sfloat_decimal(raw)
    if unit is PressureUnit.KPA:
        return quantity(exact, "kPa", "mm[Hg]", _mmhg)
    return quantity(exact, "mm[Hg]")


@lru_cache(maxsize=4096)
def _pulse(raw: int) -> Quantity:
    return quantity(sfloat_decimal(raw), "/min")


def _parse(name: str, data: bytes, first: Component) -> Measurement:
    # Flags u8, systolic / diastolic / MAP SFLOAT (BLS §3.1.1).
    if len(data) < 7:
        need(name, data, 0, 1, "flags")
        need(name, data, 1, 6, "pressures")
    flags = data[0]
    systolic, diastolic, mean = _PRESSURES.unpack_from(data, 1)
    unit = PressureUnit.KPA if flags & _F_KPA else PressureUnit.MMHG
    values = {
        first: _pressure(systolic, unit),
        Component.DIASTOLIC: _pressure(diastolic, unit),
        Component.MEAN_ARTERIAL: _pressure(mean, unit),
    }
    details: dict[str, DetailValue] = {
        "units": unit,
        "intermediate": first is Component.CUFF_PRESSURE,
    }
    # Then the optional fields in flag order (BLS §3.1.1).
    device_time, offset = parse_optional_date_time(
        data, 7, flags & _F_TIME, characteristic=name, field="time_stamp"
    )
    if flags & _F_PULSE:
        need(name, data, offset, 2, "pulse_rate")
        values[Component.PULSE] = _pulse(U16.unpack_from(data, offset)[0])
        offset += 2
    if flags & _F_USER:
        details["user_id"] = parse_user_id(name, data, offset)
        offset += 1
    conditions: frozenset[Condition] = frozenset()
    if flags & _F_STATUS:
        need(name, data, offset, 2, "measurement_status")
        (status,) = U16.unpack_from(data, offset)
        offset += 2
        conditions = flags_to_set(status, STATUS_BITS)
        pulse_range = status & _PULSE_RANGE_MASK
        if pulse_range == _PULSE_ABOVE:
            conditions |= {Condition.PULSE_ABOVE_RANGE}
        elif pulse_range == _PULSE_BELOW:
            conditions |= {Condition.PULSE_BELOW_RANGE}
        elif pulse_range == _PULSE_RESERVED:
            details["pulse_rate_range_reserved"] = True
    check_end(name, data, offset, rfu_flags=bool(flags & _F_RFU))
    return Measurement(
        kind=Kind.BLOOD_PRESSURE,
        values=values,
        device_time=device_time,
        conditions=conditions,
        details=details,
    )


def parse_blood_pressure_measurement(data: bytes) -> Measurement:
    """Decode a Blood Pressure Measurement indication (GSS §3.32)."""
    return _parse(MEASUREMENT, data, Component.SYSTOLIC)


def parse_intermediate_cuff_pressure(data: bytes) -> Measurement:
    """Decode an Intermediate Cuff Pressure notification (GSS §3.131): not a reading."""
    return _parse(INTERMEDIATE, data, Component.CUFF_PRESSURE)


def _word(name: str, q: Quantity | None, component: Component) -> int:
    if q is None:
        raise UnrepresentableValueError(f"{name}: missing {component}")
    return original_sfloat(name, q)


def _encode(name: str, m: Measurement, first: Component) -> bytes:
    if m.kind is not Kind.BLOOD_PRESSURE:
        raise UnrepresentableValueError(f"{name}: kind {m.kind} is not blood_pressure")
    unit = units_detail(name, m, PressureUnit, PressureUnit.MMHG)
    flags = _F_KPA if unit is PressureUnit.KPA else 0
    words = [
        _word(name, m.values.get(c), c)
        for c in (first, Component.DIASTOLIC, Component.MEAN_ARTERIAL)
    ]
    parts = [b"", _PRESSURES.pack(*words)]
    if m.device_time is not None:
        flags |= _F_TIME
        parts.append(encode_date_time(m.device_time))
    pulse = m.values.get(Component.PULSE)
    if pulse is not None:
        flags |= _F_PULSE
        parts.append(U16.pack(original_sfloat(name, pulse)))
    if "user_id" in m.details:
        flags |= _F_USER
        parts.append(encode_user_id(name, m.details["user_id"]))
    unknown = m.conditions - _ALL_CONDITIONS
    if unknown:
        raise UnrepresentableValueError(f"{name}: cannot encode {sorted(unknown)}")
    status = set_to_flags(m.conditions, STATUS_BITS)
    above = Condition.PULSE_ABOVE_RANGE in m.conditions
    below = Condition.PULSE_BELOW_RANGE in m.conditions
    reserved = bool(m.details.get("pulse_rate_range_reserved"))
    if above + below + reserved > 1:
        raise UnrepresentableValueError(f"{name}: pulse rate range is one 2-bit value")
    status |= (
        _PULSE_ABOVE if above else _PULSE_BELOW if below else _PULSE_RESERVED if reserved else 0
    )
    if status:
        flags |= _F_STATUS
        parts.append(U16.pack(status))
    parts[0] = U8.pack(flags)
    return b"".join(parts)


def encode_blood_pressure_measurement(m: Measurement) -> bytes:
    """Inverse of :func:`parse_blood_pressure_measurement`."""
    return _encode(MEASUREMENT, m, Component.SYSTOLIC)


def encode_intermediate_cuff_pressure(m: Measurement) -> bytes:
    """Inverse of :func:`parse_intermediate_cuff_pressure`."""
    return _encode(INTERMEDIATE, m, Component.CUFF_PRESSURE)


class BloodPressureFeature(enum.StrEnum):
    """BLS §3.3 feature bits 0-5 (later bits are RFU in BLS 1.0/1.1.1 and ignored)."""

    BODY_MOVEMENT_DETECTION = "body_movement_detection"
    CUFF_FIT_DETECTION = "cuff_fit_detection"
    IRREGULAR_PULSE_DETECTION = "irregular_pulse_detection"
    PULSE_RATE_RANGE_DETECTION = "pulse_rate_range_detection"
    MEASUREMENT_POSITION_DETECTION = "measurement_position_detection"
    MULTIPLE_BOND = "multiple_bond"


FEATURE_BITS: tuple[tuple[int, BloodPressureFeature], ...] = bit_table(BloodPressureFeature)


@dataclass(frozen=True, slots=True)
class BloodPressureFeatures:
    supported: frozenset[BloodPressureFeature] = frozenset()


def parse_blood_pressure_feature(data: bytes) -> BloodPressureFeatures:
    """Decode Blood Pressure Feature (GSS §3.31): u16 bit field."""
    return BloodPressureFeatures(parse_feature_bits(FEATURE, data, FEATURE_BITS))


def encode_blood_pressure_feature(features: BloodPressureFeatures) -> bytes:
    return encode_feature_bits(features.supported, FEATURE_BITS)
