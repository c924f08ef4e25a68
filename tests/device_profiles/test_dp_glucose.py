"""Glucose Measurement / Context / Feature vectors and error cases."""

from __future__ import annotations

from datetime import datetime

import pytest

from device_profiles.errors import (
    InvalidDateTimeError,
    MalformedPayloadError,
    UnrepresentableValueError,
)
from device_profiles.glucose import (
    CarbohydrateId,
    GlucoseContext,
    GlucoseFeature,
    GlucoseFeatures,
    GlucoseUnit,
    Health,
    Meal,
    MedicationId,
    SampleLocation,
    SampleType,
    encode_glucose_context,
    encode_glucose_measurement,
    glucose_measurement,
    parse_glucose_context,
    parse_glucose_feature,
    parse_glucose_measurement,
)
from device_profiles.glucose import (
    Tester as GlucoseTester,
)
from device_profiles.model import (
    MGDL_PER_MMOLL,
    Component,
    Condition,
    Kind,
    Measurement,
    Quantity,
    SpecialValue,
)
from device_profiles.profiles import get_profile

# Nordic Android-BLE-Common-Library GlucoseMeasurementDataCallbackTest: flags 0b011011,
# seq 1, 2019-02-27 11:10:30, offset -5 min, 30 (exp 0) kg/L, type 2 / location 1,
# status 0x0105.
NORDIC = bytes.fromhex("1b0100e307021b0b0a1efbff1e00120501")


def test_nordic_vector() -> None:
    assert parse_glucose_measurement(NORDIC) == Measurement(
        kind=Kind.GLUCOSE,
        values={Component.GLUCOSE: Quantity(3_000_000.0, "mg/dL", 3_000_000.0, "mg/dL")},
        device_time=datetime(2019, 2, 27, 11, 10, 30),
        time_offset_minutes=-5,
        sequence=1,
        conditions=frozenset(
            {
                Condition.BATTERY_LOW,
                Condition.SAMPLE_SIZE_INSUFFICIENT,
                Condition.TEMPERATURE_TOO_LOW,
            }
        ),
        details={
            "context_follows": True,
            "units": GlucoseUnit.KG_PER_L,
            "sample_type": SampleType.CAPILLARY_PLASMA,
            "sample_location": SampleLocation.FINGER,
        },
    )
    assert encode_glucose_measurement(parse_glucose_measurement(NORDIC)) == NORDIC


# Hand-built per GSS §3.104: 105 mg/dL = 105e-5 kg/L (0xB069), capillary whole blood, finger.
KGL_105 = bytes.fromhex("020700e807030f071e0069b011")
# 5.5 mmol/L = 55e-4 mol/L (0xC037), mol/L flag, HI (0x0020) status, time offset +60.
MOLL_HI = bytes.fromhex("0f0800e807030f0800003c0037c0112000")
# Control solution: type 10, location 4.
CONTROL = bytes.fromhex("020900e807030f09000064004a")


def test_kg_per_l() -> None:
    assert parse_glucose_measurement(KGL_105) == glucose_measurement(
        sequence=7,
        device_time=datetime(2024, 3, 15, 7, 30),
        mg_dl=105.0,
        sample_type=SampleType.CAPILLARY_WHOLE_BLOOD,
    )
    assert encode_glucose_measurement(parse_glucose_measurement(KGL_105)) == KGL_105


def test_mol_per_l_and_hi_flag() -> None:
    m = parse_glucose_measurement(MOLL_HI)
    assert m.values[Component.GLUCOSE] == Quantity(5.5 * MGDL_PER_MMOLL, "mg/dL", 5.5, "mmol/L")
    assert m.conditions == {Condition.RESULT_ABOVE_RANGE}
    assert m.local_time == datetime(2024, 3, 15, 9, 0)
    assert encode_glucose_measurement(m) == MOLL_HI


def test_control_solution_is_flagged() -> None:
    m = parse_glucose_measurement(CONTROL)
    assert Condition.CONTROL_SOLUTION in m.conditions
    assert m.details["sample_type"] is SampleType.CONTROL_SOLUTION
    assert m.details["sample_location"] is SampleLocation.CONTROL_SOLUTION


def test_special_value_never_becomes_a_number() -> None:
    m = parse_glucose_measurement(bytes.fromhex("020100e807030f070000ff0711"))
    assert m.values[Component.GLUCOSE] == Quantity(None, "mg/dL", None, "mg/dL", SpecialValue.NAN)
    assert m.value(Component.GLUCOSE) is None


def test_unknown_date_gives_no_device_time() -> None:
    m = parse_glucose_measurement(bytes.fromhex("00010000000000000000"))
    assert m.device_time is None
    assert m.values == {}


@pytest.mark.parametrize(
    ("hex_", "reason"),
    [
        ("", "truncated at field 'flags' (need 1 bytes at offset 0, have 0)"),
        ("000100e807", "truncated at field 'base_time' (need 7 bytes at offset 3, have 2)"),
        ("020100e807030f07000069b010", "reserved sample type 0x0"),
        ("020100e807030f07000069b051", "reserved sample location 0x5"),
        ("000100e807030f07000000", "1 unexpected trailing bytes at offset 10"),
        (
            "010100e807030f070000ff",
            "truncated at field 'time_offset' (need 2 bytes at offset 10, have 1)",
        ),
    ],
)
def test_malformed(hex_: str, reason: str) -> None:
    with pytest.raises(MalformedPayloadError) as info:
        parse_glucose_measurement(bytes.fromhex(hex_))
    assert info.value.reason == reason
    assert info.value.hex == hex_


def test_trailing_bytes_allowed_when_rfu_flag_set() -> None:
    m = parse_glucose_measurement(bytes.fromhex("200100e807030f070000abcd"))
    assert m.sequence == 1


MONTH_13 = bytes.fromhex("000200e7070d05080000")


def test_month_13_is_a_typed_error_and_the_quirk_profile_corrects_it() -> None:
    with pytest.raises(InvalidDateTimeError) as info:
        parse_glucose_measurement(MONTH_13)
    assert (info.value.field, info.value.value) == ("month", 13)
    m = get_profile("glucose-meter-month13").parse_measurement(MONTH_13)
    assert isinstance(m, Measurement)
    assert m.device_time == datetime(2024, 1, 5, 8, 0)
    with pytest.raises(InvalidDateTimeError):
        get_profile("glucose-meter").parse_measurement(MONTH_13)


def test_encode_rejects_inconsistent_measurements() -> None:
    m = glucose_measurement(sequence=1, device_time=None, mg_dl=1234.5)
    with pytest.raises(UnrepresentableValueError):
        encode_glucose_measurement(m)
    bad = Measurement(
        kind=Kind.GLUCOSE, values={}, sequence=1, conditions=frozenset({Condition.BODY_MOVEMENT})
    )
    with pytest.raises(UnrepresentableValueError):
        encode_glucose_measurement(bad)


# Hand-built per GSS §3.105: all fields, carbs 62e-4 kg (62 g), medication 5e-6 kg (5 mg).
CONTEXT = bytes.fromhex("df050000013ec00121100e320105a03e00")


def test_context() -> None:
    ctx = parse_glucose_context(CONTEXT)
    assert ctx == GlucoseContext(
        sequence=5,
        extended_flags=0,
        carbohydrate=CarbohydrateId.BREAKFAST,
        carbohydrate_amount=Quantity(6.2, "g", 0.0062, "kg"),
        meal=Meal.PREPRANDIAL,
        tester=GlucoseTester.SELF,
        health=Health.MAJOR_HEALTH_ISSUES,
        exercise_duration_s=3600,
        exercise_intensity_percent=50,
        medication=MedicationId.RAPID_ACTING_INSULIN,
        medication_amount=Quantity(5.0, "mg", 5e-06, "kg"),
        hba1c=Quantity(62.0, "%", 62.0, "%"),
    )
    assert encode_glucose_context(ctx) == CONTEXT


def test_context_liters_and_reserved_meal() -> None:
    ctx = parse_glucose_context(bytes.fromhex("300100020af0"))  # 10 × 10^-1 L
    assert ctx.medication_amount == Quantity(1000.0, "mL", 1.0, "L")
    with pytest.raises(MalformedPayloadError, match="reserved meal 0x6"):
        parse_glucose_context(bytes.fromhex("02010006"))


def test_feature() -> None:
    assert parse_glucose_feature(bytes.fromhex("0104")) == GlucoseFeatures(
        frozenset({GlucoseFeature.LOW_BATTERY_DETECTION, GlucoseFeature.MULTIPLE_BOND})
    )
