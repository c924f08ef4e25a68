"""Weight Scale Service (0x181D): Weight Measurement (0x2A9D).

References: Weight Scale Service v1.0 §3.1; GSS §3.241 Weight Measurement.

Weight Scale Feature (0x2A9E, WSS §3.2; GSS §3.240): u32, b0 time stamp supported, b1
multiple users supported, b2 BMI supported, b3-b6 weight measurement resolution, b7-b9
height measurement resolution, b10-b31 reserved (ignored).  A reserved resolution
code (weight 8-15, height 4-7) is a ``MalformedPayloadError``.

Measurement layout: flags u8 (b0 imperial, b1 time stamp, b2 user id, b3 BMI and height), weight
u16 (0.005 kg or 0.01 lb), [time stamp 7], [user id u8, 255 unknown], [BMI u16 0.1
kg/m², height u16 0.001 m or 0.1 in].

* Canonical units: kg (``lb × KG_PER_LB``) and m (``in × 0.0254``); the device values
  are kept as ``original_*`` (UCUM ``kg``/``[lb_av]``, ``m``/``[in_i]``);
  ``details["units"]`` is the :class:`WeightUnits` system.
* Weight 0xFFFF is "measurement unsuccessful": the weight Quantity has no value
  (``special=SpecialValue.NAN``) and ``Condition.MEASUREMENT_UNSUCCESSFUL`` is set.
* ``details["user_id"]``: id, None for 255 "unknown user", absent when not sent.
* Reserved flag bits b4-b7 are ignored; trailing bytes are rejected unless one is set.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from struct import Struct

from device_profiles._fields import encode_user_id, parse_user_id, units_detail
from device_profiles._wire import (
    U8,
    U16,
    U32,
    bad,
    bit_table,
    check_end,
    flags_to_set,
    need,
    set_to_flags,
)
from device_profiles.date_time import encode_date_time, parse_optional_date_time
from device_profiles.errors import UnrepresentableValueError
from device_profiles.model import (
    KG_PER_LB,
    Component,
    Condition,
    DetailValue,
    Kind,
    Measurement,
    Quantity,
    SpecialValue,
)

__all__ = [
    "HeightResolution",
    "WeightResolution",
    "WeightScaleFeature",
    "WeightScaleFeatures",
    "WeightUnits",
    "encode_weight_measurement",
    "encode_weight_scale_feature",
    "parse_weight_measurement",
    "parse_weight_scale_feature",
]

NAME = "Weight Measurement (0x2A9D)"
UNSUCCESSFUL = 0xFFFF
M_PER_IN = Decimal("0.0254")
# KG_PER_LB as an exact decimal (the international avoirdupois pound): lb -> kg is
# computed exactly, then rounded once to a float.
KG_PER_LB_EXACT = Decimal(repr(KG_PER_LB))
_BMI_HEIGHT = Struct("<HH")

_F_IMPERIAL = 0x01
_F_TIME = 0x02
_F_USER = 0x04
_F_BMI_HEIGHT = 0x08
_F_RFU = 0xF0


class WeightUnits(enum.StrEnum):
    SI = "SI"  # kg, m
    IMPERIAL = "imperial"  # lb, in


# (resolution, UCUM unit) of weight and height per unit system.
_WEIGHT = {
    WeightUnits.SI: (Decimal("0.005"), "kg"),
    WeightUnits.IMPERIAL: (Decimal("0.01"), "[lb_av]"),
}
_HEIGHT = {
    WeightUnits.SI: (Decimal("0.001"), "m"),
    WeightUnits.IMPERIAL: (Decimal("0.1"), "[in_i]"),
}
_BMI_RESOLUTION = Decimal("0.1")


def _weight(raw: int, units: WeightUnits) -> Quantity:
    resolution, unit = _WEIGHT[units]
    if raw == UNSUCCESSFUL:
        return Quantity(None, "kg", None, unit, SpecialValue.NAN)
    original = raw * resolution
    # One rounding: float(lb) * KG_PER_LB would round twice and miss the nearest float
    # of the exact product for about a third of the 0.01 lb values.
    canonical = original if units is WeightUnits.SI else original * KG_PER_LB_EXACT
    return Quantity(float(canonical), "kg", float(original), unit)


def _height(raw: int, units: WeightUnits) -> Quantity:
    resolution, unit = _HEIGHT[units]
    original = raw * resolution
    canonical = original if units is WeightUnits.SI else original * M_PER_IN
    return Quantity(float(canonical), "m", float(original), unit)


def parse_weight_measurement(data: bytes) -> Measurement:
    """Decode a Weight Measurement indication (GSS §3.241)."""
    # Flags u8, weight u16, then the optional fields in flag order (GSS §3.241).
    need(NAME, data, 0, 3, "flags_weight")
    flags = data[0]
    units = WeightUnits.IMPERIAL if flags & _F_IMPERIAL else WeightUnits.SI
    raw_weight = U16.unpack_from(data, 1)[0]
    values = {Component.WEIGHT: _weight(raw_weight, units)}
    details: dict[str, DetailValue] = {"units": units}
    device_time, offset = parse_optional_date_time(
        data, 3, flags & _F_TIME, characteristic=NAME, field="time_stamp"
    )
    if flags & _F_USER:
        details["user_id"] = parse_user_id(NAME, data, offset)
        offset += 1
    if flags & _F_BMI_HEIGHT:
        need(NAME, data, offset, 4, "bmi_height")
        bmi, height = _BMI_HEIGHT.unpack_from(data, offset)
        offset += 4
        values[Component.BMI] = Quantity(
            float(bmi * _BMI_RESOLUTION), "kg/m2", float(bmi * _BMI_RESOLUTION), "kg/m2"
        )
        values[Component.HEIGHT] = _height(height, units)
    check_end(NAME, data, offset, rfu_flags=bool(flags & _F_RFU))
    conditions = (
        frozenset({Condition.MEASUREMENT_UNSUCCESSFUL})
        if raw_weight == UNSUCCESSFUL
        else frozenset()
    )
    return Measurement(
        kind=Kind.WEIGHT,
        values=values,
        device_time=device_time,
        conditions=conditions,
        details=details,
    )


def _raw(q: Quantity | None, resolution: Decimal, what: str, limit: int = 0xFFFF) -> int:
    if q is None or q.original_value is None:
        raise UnrepresentableValueError(f"{NAME}: missing {what}")
    scaled = Decimal(repr(q.original_value)) / resolution
    if scaled != scaled.to_integral_value() or not 0 <= scaled < limit:
        raise UnrepresentableValueError(
            f"{NAME}: {what} {q.original_value} is not a multiple of {resolution} in range"
        )
    return int(scaled)


def encode_weight_measurement(m: Measurement) -> bytes:
    """Inverse of :func:`parse_weight_measurement`."""
    if m.kind is not Kind.WEIGHT:
        raise UnrepresentableValueError(f"{NAME}: kind {m.kind} is not weight")
    units = units_detail(NAME, m, WeightUnits, WeightUnits.SI)
    flags = _F_IMPERIAL if units is WeightUnits.IMPERIAL else 0
    weight = m.values.get(Component.WEIGHT)
    if m.conditions - {Condition.MEASUREMENT_UNSUCCESSFUL}:
        raise UnrepresentableValueError(f"{NAME}: cannot encode {sorted(m.conditions)}")
    unsuccessful = Condition.MEASUREMENT_UNSUCCESSFUL in m.conditions
    if unsuccessful != (weight is not None and weight.special is not None):
        raise UnrepresentableValueError(f"{NAME}: MEASUREMENT_UNSUCCESSFUL iff weight has no value")
    raw_weight = UNSUCCESSFUL if unsuccessful else _raw(weight, _WEIGHT[units][0], "weight")
    parts = [b"", U16.pack(raw_weight)]
    if m.device_time is not None:
        flags |= _F_TIME
        parts.append(encode_date_time(m.device_time))
    if "user_id" in m.details:
        flags |= _F_USER
        parts.append(encode_user_id(NAME, m.details["user_id"]))
    bmi, height = m.values.get(Component.BMI), m.values.get(Component.HEIGHT)
    if (bmi is None) != (height is None):
        raise UnrepresentableValueError(f"{NAME}: BMI and height come together")
    if bmi is not None:
        flags |= _F_BMI_HEIGHT
        parts.append(
            _BMI_HEIGHT.pack(
                _raw(bmi, _BMI_RESOLUTION, "BMI", 0x10000),
                _raw(height, _HEIGHT[units][0], "height", 0x10000),
            )
        )
    parts[0] = U8.pack(flags)
    return b"".join(parts)


# ---------------------------------------------------------------------- Weight Scale Feature
FEATURE_NAME = "Weight Scale Feature (0x2A9E)"


class WeightScaleFeature(enum.StrEnum):
    TIME_STAMP = "time_stamp"
    MULTIPLE_USERS = "multiple_users"
    BMI = "bmi"


class WeightResolution(enum.IntEnum):
    """Weight Scale Feature b3-b6 (WSS §3.2.1): the scale's display resolution."""

    NOT_SPECIFIED = 0
    KG_0_5_LB_1 = 1
    KG_0_2_LB_0_5 = 2
    KG_0_1_LB_0_2 = 3
    KG_0_05_LB_0_1 = 4
    KG_0_02_LB_0_05 = 5
    KG_0_01_LB_0_02 = 6
    KG_0_005_LB_0_01 = 7


class HeightResolution(enum.IntEnum):
    """Weight Scale Feature b7-b9 (WSS §3.2.1)."""

    NOT_SPECIFIED = 0
    M_0_01_IN_1 = 1
    M_0_005_IN_0_5 = 2
    M_0_001_IN_0_1 = 3


_FEATURE_BITS = bit_table(
    (WeightScaleFeature.TIME_STAMP, WeightScaleFeature.MULTIPLE_USERS, WeightScaleFeature.BMI)
)
_WEIGHT_RES_SHIFT, _WEIGHT_RES_MASK = 3, 0x0F
_HEIGHT_RES_SHIFT, _HEIGHT_RES_MASK = 7, 0x07


@dataclass(frozen=True, slots=True)
class WeightScaleFeatures:
    supported: frozenset[WeightScaleFeature] = frozenset()
    weight_resolution: WeightResolution = WeightResolution.NOT_SPECIFIED
    height_resolution: HeightResolution = HeightResolution.NOT_SPECIFIED


def parse_weight_scale_feature(data: bytes) -> WeightScaleFeatures:
    """Decode Weight Scale Feature (WSS §3.2: one u32 bit field, fixed length)."""
    need(FEATURE_NAME, data, 0, 4, "features")
    check_end(FEATURE_NAME, data, 4)
    value = U32.unpack_from(data, 0)[0]
    weight_code = (value >> _WEIGHT_RES_SHIFT) & _WEIGHT_RES_MASK
    height_code = (value >> _HEIGHT_RES_SHIFT) & _HEIGHT_RES_MASK
    try:
        weight_res = WeightResolution(weight_code)
    except ValueError:
        raise bad(FEATURE_NAME, data, f"reserved weight resolution {weight_code}") from None
    try:
        height_res = HeightResolution(height_code)
    except ValueError:
        raise bad(FEATURE_NAME, data, f"reserved height resolution {height_code}") from None
    return WeightScaleFeatures(flags_to_set(value, _FEATURE_BITS), weight_res, height_res)


def encode_weight_scale_feature(features: WeightScaleFeatures) -> bytes:
    """Inverse of :func:`parse_weight_scale_feature`."""
    value = set_to_flags(features.supported, _FEATURE_BITS)
    value |= int(features.weight_resolution) << _WEIGHT_RES_SHIFT
    value |= int(features.height_resolution) << _HEIGHT_RES_SHIFT
    return U32.pack(value)
