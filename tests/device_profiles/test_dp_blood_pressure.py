"""Blood Pressure Measurement / Intermediate Cuff Pressure / Feature vectors."""

from __future__ import annotations

from datetime import datetime

import pytest

from device_profiles.blood_pressure import (
    BloodPressureFeature,
    BloodPressureFeatures,
    PressureUnit,
    encode_blood_pressure_measurement,
    parse_blood_pressure_feature,
    parse_blood_pressure_measurement,
    parse_intermediate_cuff_pressure,
)
from device_profiles.errors import MalformedPayloadError
from device_profiles.model import (
    MMHG_PER_KPA,
    Component,
    Condition,
    Kind,
    Measurement,
    Quantity,
    SpecialValue,
)


def mmhg(v: float) -> Quantity:
    return Quantity(v, "mm[Hg]", v, "mm[Hg]")


# Hand-built per GSS §3.32: 120/80 MAP 93 mmHg, time, pulse 72, user 1, pulse above range.
FULL = bytes.fromhex("1e780050005d00e807030f07001e4800010800")


def test_full_mmhg() -> None:
    m = parse_blood_pressure_measurement(FULL)
    assert m == Measurement(
        kind=Kind.BLOOD_PRESSURE,
        values={
            Component.SYSTOLIC: mmhg(120.0),
            Component.DIASTOLIC: mmhg(80.0),
            Component.MEAN_ARTERIAL: mmhg(93.0),
            Component.PULSE: Quantity(72.0, "/min", 72.0, "/min"),
        },
        device_time=datetime(2024, 3, 15, 7, 0, 30),
        conditions=frozenset({Condition.PULSE_ABOVE_RANGE}),
        details={"units": PressureUnit.MMHG, "intermediate": False, "user_id": 1},
    )
    assert encode_blood_pressure_measurement(m) == FULL


def test_kpa_is_converted_and_original_kept() -> None:
    # 16.0 / 10.7 / 12.5 kPa (mantissa × 10^-1), user 255 = unknown, all status bits.
    m = parse_blood_pressure_measurement(bytes.fromhex("19a0f06bf07df0ff2f00"))
    assert m.values[Component.SYSTOLIC] == Quantity(16.0 * MMHG_PER_KPA, "mm[Hg]", 16.0, "kPa")
    assert m.details["user_id"] is None
    assert m.conditions == {
        Condition.BODY_MOVEMENT,
        Condition.CUFF_TOO_LOOSE,
        Condition.IRREGULAR_PULSE,
        Condition.PULSE_ABOVE_RANGE,
        Condition.IMPROPER_POSITION,
    }


def test_pulse_range_reserved_value_is_recorded_not_fatal() -> None:
    m = parse_blood_pressure_measurement(bytes.fromhex("10780050005d001800"))
    assert m.conditions == frozenset()
    assert m.details["pulse_rate_range_reserved"] is True
    assert parse_blood_pressure_measurement(encode_blood_pressure_measurement(m)) == m


def test_intermediate_cuff_pressure_is_not_a_reading() -> None:
    # BLS §3.2: current cuff pressure 152 mmHg, diastolic and MAP NaN.
    m = parse_intermediate_cuff_pressure(bytes.fromhex("009800ff07ff07"))
    assert Component.SYSTOLIC not in m.values
    assert m.values[Component.CUFF_PRESSURE] == mmhg(152.0)
    assert m.values[Component.DIASTOLIC].special is SpecialValue.NAN
    assert m.details["intermediate"] is True


def test_truncated() -> None:
    with pytest.raises(MalformedPayloadError, match="truncated at field 'pulse_rate'"):
        parse_blood_pressure_measurement(bytes.fromhex("04780050005d0048"))


def test_feature() -> None:
    assert parse_blood_pressure_feature(bytes.fromhex("2100")) == BloodPressureFeatures(
        frozenset(
            {BloodPressureFeature.BODY_MOVEMENT_DETECTION, BloodPressureFeature.MULTIPLE_BOND}
        )
    )
