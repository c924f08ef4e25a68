"""Property tests over every characteristic in the registry.

* round trip: for valid bytes b of every flag combination, m = decode(b) satisfies
  decode(encode(m)) == m (so parse(encode(m)) == m over every decodable m);
* fuzz: arbitrary bytes give a result or exactly MalformedPayloadError.
"""

from __future__ import annotations

import contextlib

import dp_strategies as s
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_profiles import uuids
from device_profiles.errors import MalformedPayloadError
from device_profiles.registry import CHARACTERISTICS, decode, encode

VALID = {
    uuids.GLUCOSE_MEASUREMENT: s.glucose_measurement(),
    uuids.GLUCOSE_CONTEXT: s.glucose_context(),
    uuids.GLUCOSE_FEATURE: s.feature16,
    uuids.RACP: s.racp(),
    uuids.BLOOD_PRESSURE_MEASUREMENT: s.blood_pressure(),
    uuids.INTERMEDIATE_CUFF_PRESSURE: s.blood_pressure(),
    uuids.BLOOD_PRESSURE_FEATURE: s.feature16,
    uuids.MANUFACTURER_NAME: s.dis_string,
    uuids.MODEL_NUMBER: s.dis_string,
    uuids.SERIAL_NUMBER: s.dis_string,
    uuids.FIRMWARE_REVISION: s.dis_string,
    uuids.HARDWARE_REVISION: s.dis_string,
    uuids.SOFTWARE_REVISION: s.dis_string,
    uuids.BATTERY_LEVEL: s.battery,
    uuids.CURRENT_TIME: s.current_time,
    uuids.LOCAL_TIME_INFORMATION: s.local_time,
    uuids.CGM_MEASUREMENT: s.cgm_measurement,
    uuids.CGM_FEATURE: s.cgm_feature(),
    uuids.CGM_STATUS: s.cgm_status,
    uuids.CGM_SESSION_START_TIME: s.cgm_session_start,
    uuids.WEIGHT_MEASUREMENT: s.weight(),
    uuids.PLX_SPOT_CHECK: s.plx(),
    uuids.WEIGHT_SCALE_FEATURE: s.weight_scale_feature(),
    uuids.PLX_FEATURES: s.plx_features(),
    uuids.TEMPERATURE_MEASUREMENT: s.thermometer(),
}


def test_every_registered_characteristic_has_a_strategy() -> None:
    assert set(VALID) == set(CHARACTERISTICS)


ALL = pytest.mark.parametrize("uuid", sorted(VALID), ids=lambda u: u[4:8])


@ALL
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(uuid: str, data: st.DataObject) -> None:
    decoded = decode(uuid, data.draw(VALID[uuid]))
    assert decode(uuid, encode(uuid, decoded)) == decoded


@ALL
@settings(max_examples=200)
@given(raw=st.binary(max_size=48))
def test_fuzz_only_malformed_payload_error(uuid: str, raw: bytes) -> None:
    try:
        decode(uuid, raw)
    except MalformedPayloadError as exc:
        assert exc.hex == raw.hex()
        assert exc.reason


@ALL
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutated_valid_payloads(uuid: str, data: st.DataObject) -> None:
    """Truncations, extensions and bit flips of valid payloads reach deeper branches."""
    raw = data.draw(VALID[uuid])
    mutation = data.draw(st.sampled_from(["truncate", "extend", "flip"]))
    if mutation == "truncate":
        raw = raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)))]
    elif mutation == "extend":
        raw += data.draw(st.binary(min_size=1, max_size=4))
    elif raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ (1 << data.draw(st.integers(0, 7)))]) + raw[i + 1 :]
    with contextlib.suppress(MalformedPayloadError):
        decode(uuid, raw)
