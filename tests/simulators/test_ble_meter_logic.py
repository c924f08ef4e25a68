"""Glucose meter store and RACP selection, without the bed (quirks that need no radio)."""

from __future__ import annotations

from typing import cast

import pytest
from dbus_fast.aio import MessageBus

from device_profiles.glucose import parse_glucose_measurement
from device_profiles.model import Condition
from device_profiles.profiles import Quirk
from device_profiles.racp import RacpOperator, RacpResponseCode, parse_racp_request
from simulators.ble.core import DeviceCore
from simulators.ble.glucose_meter import FAKE_HI_TIME, GlucoseMeter
from simulators.ble.readings import Reading
from simulators.ble.spec import DeviceSpec, DeviceSpecError
from simulators.ble.testing import glucose_readings

# No ``ble`` mark: these need neither the bed nor D-Bus.


def meter(spec: DeviceSpec) -> GlucoseMeter:
    core = DeviceCore(spec, cast(MessageBus, None))  # the store needs no bus
    return GlucoseMeter(core, spec.readings)


def selected(m: GlucoseMeter, request_hex: str) -> list[int] | RacpResponseCode:
    result = m._select(parse_racp_request(bytes.fromhex(request_hex)))
    return result if isinstance(result, RacpResponseCode) else [r.sequence for r in result]


def test_reversed_sequence_numbers_newest_first() -> None:
    spec = DeviceSpec(
        "glucose-meter-full-memory",
        "hci1",
        readings=glucose_readings(3),
        quirks=frozenset({Quirk.REVERSED_SEQUENCE}),
    )
    m = meter(spec)
    newest = max(m.records, key=lambda r: r.measurement.device_time or FAKE_HI_TIME)
    assert newest.sequence == 1
    later = glucose_readings(1, start=FAKE_HI_TIME.replace(year=2030))
    assert m.add_readings([Reading(later[0].kind, later[0].device_time, mg_dl=99)]) == [1]
    assert [r.sequence for r in m.records] == [1, 2, 3, 4]


def test_fake_hi_record_when_memory_is_full() -> None:
    spec = DeviceSpec(
        "glucose-meter-full-memory", "hci1", readings=glucose_readings(3), memory_capacity=3
    )
    m = meter(spec)
    assert selected(m, "0106") == [4]
    fake = parse_glucose_measurement(m._encode(m._visible_records()[-1]))
    assert fake.device_time == FAKE_HI_TIME
    assert Condition.RESULT_ABOVE_RANGE in fake.conditions
    assert m.status()["records"] == 3  # the fake is not a stored record


def test_unsupported_operator_and_filter_quirk() -> None:
    spec = DeviceSpec(
        "glucose-meter",
        "hci1",
        readings=glucose_readings(5),
        unsupported_racp_operators=frozenset({RacpOperator.WITHIN_RANGE}),
    )
    assert selected(meter(spec), "010401010002 00") == RacpResponseCode.OPERATOR_NOT_SUPPORTED
    ignoring = DeviceSpec("glucose-meter-ignores-filter", "hci1", readings=glucose_readings(5))
    assert selected(meter(ignoring), "0103010400") == [1, 2, 3, 4, 5]
    assert selected(meter(ignoring), "0403010400") == [4, 5]  # counting honours the filter


def test_spec_names_fit_the_vendor_patterns() -> None:
    assert DeviceSpec("glucose-meter-ignores-filter", "hci3").name == "meter+00000003"
    assert DeviceSpec("bp-cuff-unsent-only", "hci12").name == "BPM-00000012"
    with pytest.raises(DeviceSpecError):
        DeviceSpec("glucose-meter-month13", "hci1", local_name="Accu-Chek")
    spec = DeviceSpec("bp-cuff", "hci2", readings=glucose_readings(1), clock_skew_s=5)
    assert DeviceSpec.from_json(spec.to_json()) == spec
