"""CGM, weight, PLX, thermometer, Current Time, DIS and battery vectors."""

from __future__ import annotations

from datetime import datetime

import pytest

from device_profiles.cgm import (
    CgmSessionStartTime,
    CgmStatus,
    crc16_mcrf4xx,
    encode_cgm_measurement,
    parse_cgm_measurement,
    parse_cgm_session_start_time,
    parse_cgm_status,
)
from device_profiles.current_time import (
    AdjustReason,
    CurrentTime,
    DstOffset,
    LocalTimeInformation,
    current_time_now,
    encode_current_time,
    parse_current_time,
    parse_local_time_information,
)
from device_profiles.device_info import parse_battery_level, parse_dis_string
from device_profiles.errors import MalformedPayloadError
from device_profiles.model import (
    KG_PER_LB,
    Component,
    Condition,
    Kind,
    Measurement,
    Quantity,
    SpecialValue,
)
from device_profiles.plx import parse_plx_spot_check
from device_profiles.thermometer import (
    TemperatureType,
    TemperatureUnit,
    parse_temperature_measurement,
)
from device_profiles.weight import WeightUnits, parse_weight_measurement

# Nordic Android-BLE-Common-Library ContinuousGlucoseMeasurementDataCallbackTest "full":
# size 15, flags 0xE3, 12.34 mg/dL, offset 5, octets 02 14 FF, trend 0.2, quality 99.7,
# E2E-CRC 0x3F8E (their test value; our CRC-16/MCRF4XX must agree).
NORDIC_CGM_FULL = bytes.fromhex("0fe3d2e405000214ff02f0e5f38e3f")


def test_cgm_nordic_full_vector_and_crc() -> None:
    assert crc16_mcrf4xx(NORDIC_CGM_FULL[:13]) == 0x3F8E
    (m,) = parse_cgm_measurement(NORDIC_CGM_FULL)
    assert m == Measurement(
        kind=Kind.CGM,
        values={
            Component.GLUCOSE: Quantity(12.34, "mg/dL", 12.34, "mg/dL"),
            Component.CGM_TREND: Quantity(0.2, "mg/dL/min", 0.2, "mg/dL/min"),
            Component.CGM_QUALITY: Quantity(99.7, "%", 99.7, "%"),
        },
        time_offset_minutes=5,
        conditions=frozenset(
            {
                Condition.BATTERY_LOW,  # status octet 0x02
                Condition.CALIBRATION_RECOMMENDED,  # cal/temp octet 0x14
                Condition.TEMPERATURE_TOO_HIGH,
                Condition.BELOW_PATIENT_LOW,  # warning octet 0xFF: all eight
                Condition.ABOVE_PATIENT_HIGH,
                Condition.BELOW_HYPO,
                Condition.ABOVE_HYPER,
                Condition.RATE_OF_DECREASE_EXCEEDED,
                Condition.RATE_OF_INCREASE_EXCEEDED,
                Condition.RESULT_BELOW_RANGE,
                Condition.RESULT_ABOVE_RANGE,
            }
        ),
        details={"e2e_crc": True},
    )
    assert encode_cgm_measurement((m,)) == NORDIC_CGM_FULL


def test_cgm_two_records_in_one_notification() -> None:
    # Nordic "double" test: two 6-byte records, 120 mg/dL (12 × 10^1), offsets 5 and 6.
    records = parse_cgm_measurement(bytes.fromhex("06000c10050006000c100600"))
    assert [r.time_offset_minutes for r in records] == [5, 6]
    assert all(r.value(Component.GLUCOSE) == 120.0 for r in records)


def test_cgm_crc_mismatch() -> None:
    # Nordic "crcError" test: correct CRC is 0x6F59, the packet carries 0x6F58.
    with pytest.raises(MalformedPayloadError, match="E2E-CRC mismatch"):
        parse_cgm_measurement(bytes.fromhex("08000c100600586f"))


def test_cgm_size_mismatch() -> None:
    with pytest.raises(MalformedPayloadError, match="size 7 but flags 0xe3 need 13"):
        parse_cgm_measurement(bytes.fromhex("07e30c1006000000"))


def test_cgm_status_and_session_start() -> None:
    assert parse_cgm_status(bytes.fromhex("3c00010000")) == CgmStatus(
        60, frozenset({Condition.SESSION_STOPPED})
    )
    assert parse_cgm_session_start_time(bytes.fromhex("e807030f0700000404")) == CgmSessionStartTime(
        datetime(2024, 3, 15, 7, 0), 60, DstOffset.DAYLIGHT_TIME
    )


def test_weight_si_with_bmi_height() -> None:
    # GSS §3.241: 70.5 kg = 14100 × 0.005, BMI 23.0, height 1.750 m, user 2.
    m = parse_weight_measurement(bytes.fromhex("0c143702e600d606"))
    assert m.values == {
        Component.WEIGHT: Quantity(70.5, "kg", 70.5, "kg"),
        Component.BMI: Quantity(23.0, "kg/m2", 23.0, "kg/m2"),
        Component.HEIGHT: Quantity(1.75, "m", 1.75, "m"),
    }
    assert m.details == {"units": WeightUnits.SI, "user_id": 2}


def test_weight_imperial_and_unsuccessful() -> None:
    m = parse_weight_measurement(bytes.fromhex("018c3c"))  # 15500 × 0.01 lb
    assert m.values[Component.WEIGHT] == Quantity(155.0 * KG_PER_LB, "kg", 155.0, "[lb_av]")
    failed = parse_weight_measurement(bytes.fromhex("00ffff"))
    assert failed.values[Component.WEIGHT].special is SpecialValue.NAN
    assert failed.conditions == {Condition.MEASUREMENT_UNSUCCESSFUL}


def test_plx_spot_check() -> None:
    # SpO2 98 %, PR 72, measurement status "validated" (b7), device status "low perfusion" (b5).
    m = parse_plx_spot_check(bytes.fromhex("16620048008000200000"))
    assert m.values == {
        Component.SPO2: Quantity(98.0, "%", 98.0, "%"),
        Component.PULSE: Quantity(72.0, "/min", 72.0, "/min"),
    }
    assert m.conditions == {
        Condition.VALIDATED_DATA,
        Condition.LOW_PERFUSION,
        Condition.DEVICE_CLOCK_NOT_SET,
    }


def test_thermometer_fahrenheit() -> None:
    # HTS: 98.6 °F = 986 × 10^-1 (FLOAT 0xFF0003DA), type 6 mouth.
    m = parse_temperature_measurement(bytes.fromhex("05da0300ff06"))
    q = m.values[Component.TEMPERATURE]
    assert (q.original_value, q.original_unit, q.unit) == (98.6, "[degF]", "Cel")
    assert q.value == pytest.approx(37.0)
    assert m.details == {
        "units": TemperatureUnit.FAHRENHEIT,
        "temperature_type": TemperatureType.MOUTH,
    }


def test_current_time_and_local_time() -> None:
    # CTS §3.1: 2024-03-15 07:00:30, Friday (5), 128/256 s, manual update.
    data = bytes.fromhex("e807030f07001e058001")
    ct = parse_current_time(data)
    assert ct == CurrentTime(
        datetime(2024, 3, 15, 7, 0, 30), 5, 128, frozenset({AdjustReason.MANUAL_TIME_UPDATE})
    )
    assert encode_current_time(ct) == data
    assert current_time_now(datetime(2024, 3, 15, 7, 0, 30, 500000)) == ct
    assert parse_local_time_information(bytes.fromhex("0400")) == LocalTimeInformation(
        60, DstOffset.STANDARD_TIME
    )
    assert parse_local_time_information(bytes.fromhex("80ff")) == LocalTimeInformation(
        None, DstOffset.UNKNOWN
    )


def test_dis_and_battery() -> None:
    assert parse_dis_string(b"Roche\x00\x00") == "Roche"
    with pytest.raises(MalformedPayloadError, match="invalid UTF-8"):
        parse_dis_string(b"\xff\xfe")
    assert parse_battery_level(b"\x64") == 100
    with pytest.raises(MalformedPayloadError, match="reserved"):
        parse_battery_level(b"\x65")
