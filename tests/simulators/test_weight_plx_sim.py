"""Weight scale and pulse oximeter simulators without a radio: the feature codecs they
serve (Hypothesis round trips and fuzz), the records they store (reading -> bytes ->
the gateway profile's parser -> the same reading), the reading spec's new fields, and
``reading_from_measurement`` mapping each kind to its own device."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import pytest
from dbus_fast.aio import MessageBus
from hypothesis import given
from hypothesis import strategies as st

from device_profiles.cgm import cgm_measurement
from device_profiles.errors import MalformedPayloadError
from device_profiles.glucose import glucose_measurement
from device_profiles.model import Component, Condition, Kind, Measurement, Quantity
from device_profiles.plx import (
    DEVICE_STATUS_BITS,
    MEASUREMENT_STATUS_BITS,
    PlxFeature,
    PlxFeatures,
    encode_plx_features,
    parse_plx_features,
)
from device_profiles.profiles import get_profile
from device_profiles.weight import (
    HeightResolution,
    WeightResolution,
    WeightScaleFeature,
    WeightScaleFeatures,
    encode_weight_scale_feature,
    parse_weight_measurement,
    parse_weight_scale_feature,
)
from simulators.ble.core import DeviceCore
from simulators.ble.pulse_oximeter import FEATURES as PLX_FEATURES
from simulators.ble.pulse_oximeter import PulseOximeter, spot_check_measurement
from simulators.ble.readings import (
    Reading,
    ReadingFormatError,
    parse_lines,
    reading_from_json,
    reading_from_measurement,
)
from simulators.ble.spec import DeviceSpec
from simulators.ble.weight_scale import FEATURES as SCALE_FEATURES
from simulators.ble.weight_scale import WeightScale, weight_measurement

T0 = datetime(2026, 11, 20, 7, 0)
KG_PER_LB = Decimal("0.45359237")
MEASUREMENT_CONDITIONS = [c for _, c in MEASUREMENT_STATUS_BITS]
DEVICE_CONDITIONS = [c for _, c in DEVICE_STATUS_BITS]


def _core(profile: str, **spec: Any) -> DeviceCore:
    # The behaviours only touch the bus once a central connects.
    return DeviceCore(DeviceSpec(profile, "hci1", **spec), cast(MessageBus, None))


# ------------------------------------------------------------------ feature codecs
weight_features = st.builds(
    WeightScaleFeatures,
    st.frozensets(st.sampled_from(WeightScaleFeature)),
    st.sampled_from(WeightResolution),
    st.sampled_from(HeightResolution),
)


@st.composite
def plx_features(draw: st.DrawFn) -> PlxFeatures:
    supported = draw(st.frozensets(st.sampled_from(PlxFeature)))
    measurement = frozenset[Condition]()
    device = frozenset[Condition]()
    if PlxFeature.MEASUREMENT_STATUS in supported:
        measurement = draw(st.frozensets(st.sampled_from(MEASUREMENT_CONDITIONS)))
    if PlxFeature.DEVICE_AND_SENSOR_STATUS in supported:
        device = draw(st.frozensets(st.sampled_from(DEVICE_CONDITIONS)))
    return PlxFeatures(supported, measurement, device)


@given(weight_features)
def test_weight_scale_feature_round_trip(features: WeightScaleFeatures) -> None:
    data = encode_weight_scale_feature(features)
    assert len(data) == 4
    assert parse_weight_scale_feature(data) == features


@given(plx_features())
def test_plx_features_round_trip(features: PlxFeatures) -> None:
    assert parse_plx_features(encode_plx_features(features)) == features


@given(st.binary(max_size=12))
def test_feature_parsers_take_any_bytes(data: bytes) -> None:
    for parse in (parse_weight_scale_feature, parse_plx_features):
        with contextlib.suppress(MalformedPayloadError):
            parse(data)


def test_feature_vectors() -> None:
    # WSS §3.2: b0-b2 features, b3-b6 weight resolution 7, b7-b9 height resolution 3.
    assert encode_weight_scale_feature(SCALE_FEATURES) == bytes.fromhex("bf010000")
    assert parse_weight_scale_feature(bytes.fromhex("bf010000")) == SCALE_FEATURES
    with pytest.raises(MalformedPayloadError, match="reserved weight resolution 8"):
        parse_weight_scale_feature((8 << 3).to_bytes(4, "little"))
    with pytest.raises(MalformedPayloadError, match="reserved height resolution 4"):
        parse_weight_scale_feature((4 << 7).to_bytes(4, "little"))
    # PLXS §3.3: features 0x004B, measurement status support u16, device status u24.
    data = encode_plx_features(PLX_FEATURES)
    assert data[:2] == bytes.fromhex("4b00") and len(data) == 2 + 2 + 3
    assert parse_plx_features(data) == PLX_FEATURES
    with pytest.raises(MalformedPayloadError, match="device_and_sensor_status_support"):
        parse_plx_features(data[:-1])
    with pytest.raises(ValueError, match="without the"):
        encode_plx_features(PlxFeatures(frozenset(), frozenset({Condition.VALIDATED_DATA})))


# ------------------------------------------------------------------ weight: exact units
@given(st.integers(0, 0xFFFE))
def test_imperial_weight_converts_exactly(raw: int) -> None:
    m = parse_weight_measurement(bytes([0x01]) + raw.to_bytes(2, "little"))
    q = m.values[Component.WEIGHT]
    lb = Decimal(raw) * Decimal("0.01")  # GSS §3.241: 0.01 lb resolution
    assert q.original_value == float(lb) and q.original_unit == "[lb_av]"
    assert q.value == float(lb * KG_PER_LB)  # one rounding of the exact product


# ------------------------------------------------------------------ simulator records
def _weight_readings() -> st.SearchStrategy[Reading]:
    times = st.integers(0, 10 * 365 * 24 * 60).map(lambda m: T0 + timedelta(minutes=m))
    users = st.none() | st.integers(0, 254)
    si = st.builds(
        lambda t, w, u, bh: Reading(
            Kind.WEIGHT,
            t,
            weight_kg=float(Decimal(w) * Decimal("0.005")),
            user_id=u,
            bmi=None if bh is None else float(Decimal(bh[0]) / 10),
            height_m=None if bh is None else float(Decimal(bh[1]) / 1000),
        ),
        times,
        st.integers(0, 0xFFFE),
        users,
        st.none() | st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    )
    imperial = st.builds(
        lambda t, w, u, bh: Reading(
            Kind.WEIGHT,
            t,
            weight_lb=float(Decimal(w) / 100),
            user_id=u,
            bmi=None if bh is None else float(Decimal(bh[0]) / 10),
            height_in=None if bh is None else float(Decimal(bh[1]) / 10),
        ),
        times,
        st.integers(0, 0xFFFE),
        users,
        st.none() | st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    )
    return si | imperial


@given(_weight_readings())
def test_scale_record_round_trips_through_the_gateway_parser(reading: Reading) -> None:
    scale = WeightScale(_core("weight-scale"), [reading])
    data = scale.memory[0].data
    m = get_profile("weight-scale").parse_measurement(data)
    assert isinstance(m, Measurement)
    assert m.details["user_id"] == reading.user_id  # always sent: multiple users
    assert reading_from_measurement(m) == reading
    assert scale.truncate(data) == data[:2]
    with pytest.raises(MalformedPayloadError):
        get_profile("weight-scale").parse_measurement(scale.truncate(data))


@given(
    st.integers(0, 1000),
    st.integers(0, 250),
    st.none() | st.integers(0, 200),
    st.frozensets(st.sampled_from(sorted(PLX_FEATURES.measurement_status_support))),
    st.frozensets(st.sampled_from(sorted(PLX_FEATURES.device_status_support))),
)
def test_oximeter_record_round_trips_through_the_gateway_parser(
    spo2_tenths: int,
    pulse: int,
    pai_tenths: int | None,
    measurement: frozenset[Condition],
    device: frozenset[Condition],
) -> None:
    reading = Reading(
        Kind.SPO2,
        T0,
        spo2=float(Decimal(spo2_tenths) / 10),
        pulse=pulse,
        pulse_amplitude_index=None if pai_tenths is None else float(Decimal(pai_tenths) / 10),
        conditions=measurement | device,
    )
    oximeter = PulseOximeter(_core("pulse-oximeter"), [reading])
    m = get_profile("pulse-oximeter").parse_measurement(oximeter.memory[0].data)
    assert isinstance(m, Measurement)
    assert reading_from_measurement(m) == reading


def test_oximeter_refuses_a_condition_its_features_do_not_announce() -> None:
    reading = Reading(
        Kind.SPO2, T0, spo2=97, pulse=70, conditions=frozenset({Condition.SENSOR_INTERFERENCE})
    )
    with pytest.raises(ReadingFormatError, match="sensor_interference"):
        PulseOximeter(_core("pulse-oximeter"), [reading])
    with pytest.raises(ReadingFormatError, match=r"97\.123 is not exactly representable"):
        PulseOximeter(_core("pulse-oximeter"), [Reading(Kind.SPO2, T0, spo2=97.123, pulse=70)])


def test_scale_refuses_what_it_cannot_store() -> None:
    core = _core("weight-scale")
    with pytest.raises(ReadingFormatError, match="device_time"):
        WeightScale(core, [Reading(Kind.WEIGHT, None, weight_kg=80.0)])
    with pytest.raises(ReadingFormatError, match=r"multiple of 0\.005"):
        WeightScale(core, [Reading(Kind.WEIGHT, T0, weight_kg=80.001)])
    with pytest.raises(ReadingFormatError, match="cannot store"):
        weight_measurement(Reading(Kind.SPO2, T0, spo2=97, pulse=70))
    with pytest.raises(ReadingFormatError, match="cannot store"):
        spot_check_measurement(Reading(Kind.WEIGHT, T0, weight_kg=80.0))


def test_unsuccessful_weighing_is_the_0xffff_record() -> None:
    reading = reading_from_json(
        {
            "kind": "weight",
            "device_time": T0.isoformat(),
            "conditions": ["measurement_unsuccessful"],
        }
    )
    scale = WeightScale(_core("weight-scale"), [reading])
    assert scale.memory[0].data[1:3] == b"\xff\xff"
    m = parse_weight_measurement(scale.memory[0].data)
    assert m.values[Component.WEIGHT].value is None
    assert reading_from_measurement(m) == reading


# ------------------------------------------------------------------ readings file
def test_readings_file_weight_and_spo2_lines() -> None:
    lines = [
        '{"device_time": "2026-11-20T07:00:00", "weight_kg": 82.35, "user_id": 1}',
        '{"device_time": "2026-11-20T07:01:00", "weight_lb": 181.4, "bmi": 24.6, "height_in": 71.5}',
        '{"device_time": "2026-11-20T08:00:00", "spo2": 97, "pulse": 72}',
    ]
    weight_si, weight_lb, spo2 = parse_lines(lines)
    assert weight_si == Reading(Kind.WEIGHT, T0, weight_kg=82.35, user_id=1)
    assert weight_lb.kind is Kind.WEIGHT and weight_lb.height_in == 71.5
    assert spo2 == Reading(Kind.SPO2, T0 + timedelta(hours=1), spo2=97, pulse=72)
    for r in (weight_si, weight_lb, spo2):
        assert reading_from_json(r.to_json()) == r


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"weight_kg": 80, "weight_lb": 176}, "not both"),
        ({"kind": "weight"}, "needs weight_kg or weight_lb"),
        ({"weight_kg": 80, "bmi": 25}, "bmi and height come together"),
        ({"weight_kg": 80, "bmi": 25, "height_in": 70}, "same unit system"),
        ({"weight_kg": 80, "conditions": ["measurement_unsuccessful"]}, "has no weight"),
        ({"spo2": 97}, "needs spo2 and pulse"),
        ({"systolic": 120, "diastolic": 80, "spo2": 97}, "needs spo2 and pulse"),
        ({"kind": "blood_pressure", "systolic": 1, "diastolic": 1, "spo2": 97}, "SpO2 readings"),
        ({"mg_dl": 100, "weight_kg": 80}, "weight reading has no mg_dl"),
        ({"weight_kg": 80, "pulse": 60, "sequence": 3}, "has no pulse, sequence"),
        ({"spo2": 97, "pulse": 60, "user_id": 1}, "spo2 reading has no user_id"),
        ({"kind": "temperature"}, "not temperature"),
    ],
)
def test_readings_file_rejects(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(ReadingFormatError, match=message):
        reading_from_json(obj)


# ------------------------------------------------------------------ reading_from_measurement
def test_cgm_measurement_becomes_a_cgm_record_not_a_fingerstick() -> None:
    m = cgm_measurement(time_offset_minutes=125, mg_dl=143, conditions=frozenset())
    reading = reading_from_measurement(m)
    assert reading == Reading(Kind.CGM, None, mg_dl=143, time_offset_minutes=125)
    assert reading_from_json(reading.to_json()) == reading  # a valid CGM readings line


def test_glucose_measurement_stays_a_meter_record() -> None:
    m = glucose_measurement(sequence=7, device_time=T0, mg_dl=112)
    reading = reading_from_measurement(m)
    assert (reading.kind, reading.mg_dl, reading.sequence) == (Kind.GLUCOSE, 112, 7)


def test_kinds_no_device_stores_are_refused() -> None:
    m = Measurement(Kind.TEMPERATURE, {Component.TEMPERATURE: Quantity(37.0, "Cel", 37.0, "Cel")})
    with pytest.raises(ReadingFormatError, match="no simulated device stores temperature"):
        reading_from_measurement(m)
    no_offset = Measurement(Kind.CGM, {Component.GLUCOSE: Quantity(100.0, "mg/dL", 100.0, "mg/dL")})
    with pytest.raises(ReadingFormatError, match="time_offset_minutes"):
        reading_from_measurement(no_offset)
