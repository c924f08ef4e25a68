"""Weight scales and pulse oximeters (indications on connect) through the real gateway:
simulated devices on the BlueZoo bed, unmodified bleak, the real Mosquitto."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from gw_ble import T0, GatewayCli, SimDevice
from gw_helpers import Listener

from device_profiles import uuids
from device_profiles.model import Component, Condition, Kind
from device_profiles.plx import encode_plx_spot_check
from device_profiles.weight import encode_weight_measurement
from readings import DeviceRecordMalformed, DeviceSynced, Original, Reading, reading_id
from simulators.ble.pulse_oximeter import spot_check_measurement
from simulators.ble.readings import reading_from_json
from simulators.ble.weight_scale import weight_measurement

pytestmark = [pytest.mark.ble, pytest.mark.services]

# lb -> kg is exact by definition (international avoirdupois pound); the wire carries the
# float nearest the exact product.
KG_PER_LB = Decimal("0.45359237")
M_PER_IN = Decimal("0.0254")


def _day(n: int, hour: int = 7) -> str:
    return (T0 + timedelta(days=n, hours=hour - T0.hour)).isoformat()


WEIGHTS: list[dict[str, Any]] = [
    {"device_time": _day(0), "weight_kg": 82.35, "user_id": 1, "bmi": 26.9, "height_m": 1.75},
    {"device_time": _day(1), "weight_kg": 82.005, "user_id": 1},
    {"device_time": _day(2), "weight_lb": 181.37, "user_id": 2, "bmi": 24.6, "height_in": 71.5},
    {"device_time": _day(3), "weight_lb": 165.43},  # no user (255); see the kg check
]
SPOT_CHECKS: list[dict[str, Any]] = [
    {"device_time": _day(0, 8), "spo2": 97, "pulse": 72, "conditions": ["validated_data"]},
    {
        "device_time": _day(0, 20),
        "spo2": 91,
        "pulse": 88,
        "pulse_amplitude_index": 3.4,
        "conditions": ["low_perfusion", "questionable_measurement"],
    },
    {"device_time": _day(1, 8), "spo2": 95.5, "pulse": 64},
]


def _utc(device_time: str) -> datetime:
    return datetime.fromisoformat(device_time).replace(tzinfo=UTC)


def _synced(listener: Listener, address: str) -> list[DeviceSynced]:
    return [e for e in listener.all_events if isinstance(e, DeviceSynced) and e.device == address]


def _malformed(listener: Listener, address: str) -> list[DeviceRecordMalformed]:
    return [
        e
        for e in listener.all_events
        if isinstance(e, DeviceRecordMalformed) and e.device == address
    ]


def _by_time(listener: Listener) -> dict[str, Reading]:
    return {r.device_time or "": r for r in listener.readings}


def _sync_and_wait(gateway: GatewayCli, listener: Listener, address: str, syncs: int) -> None:
    gateway.sync_once()
    assert listener.wait_for(lambda s: len(_synced(s, address)) >= syncs, timeout=20)


def _user(reading: Reading) -> int | None:
    """The device user a scale names (Weight Measurement User ID): part of the identity."""
    user = reading.details.get("user_id")
    return user if isinstance(user, int) and not isinstance(user, bool) else None


def _check_resync(
    gateway: GatewayCli, listener: Listener, device: SimDevice, kind: Kind, count: int
) -> None:
    """Every record once, with its deterministic id; a second sync brings nothing new."""
    ids = {r.id for r in listener.readings}
    assert ids == {
        reading_id(device.address, kind, r.device_time or "", None, user=_user(r))
        for r in listener.readings
    }
    assert len(ids) == count
    assert device.status()["unsent"] == 0
    _sync_and_wait(gateway, listener, device.address, 2)
    assert [e.readings for e in _synced(listener, device.address)] == [count, 0]
    assert all(e.error is None for e in _synced(listener, device.address))
    assert len(listener.readings) == count


def test_weight_scale_syncs_si_and_imperial_records_exactly(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    scale = sim_devices("weight-scale", WEIGHTS)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-weight").start()
    try:
        gateway_cli.pair(scale.address)
        assert gateway_cli.device(scale.address)["profile"] == "weight-scale"
        _sync_and_wait(gateway_cli, listener, scale.address, 1)
        assert listener.wait_for(lambda s: len(s.readings) >= len(WEIGHTS), timeout=20)
        got = _by_time(listener)
        assert sorted(got) == [w["device_time"] for w in WEIGHTS]
        for r in got.values():
            assert (r.kind, r.device, r.seq) == (Kind.WEIGHT, scale.address, None)
            assert r.time == _utc(r.device_time or "")  # gateway zone UTC, no skew
            assert r.skew_s == 0.0
            assert r.conditions == []

        si = got[_day(0)]
        assert si.values == {Component.WEIGHT: 82.35, Component.BMI: 26.9, Component.HEIGHT: 1.75}
        assert si.original[Component.WEIGHT] == Original(82.35, "kg")
        assert si.details == {"units": "SI", "user_id": 1}
        assert got[_day(1)].values == {Component.WEIGHT: 82.005}

        imperial = got[_day(2)]
        assert imperial.values == {
            Component.WEIGHT: float(Decimal("181.37") * KG_PER_LB),  # 82.2680481469
            Component.BMI: 24.6,
            Component.HEIGHT: float(Decimal("71.5") * M_PER_IN),
        }
        assert imperial.original[Component.WEIGHT] == Original(181.37, "[lb_av]")
        assert imperial.original[Component.HEIGHT] == Original(71.5, "[in_i]")
        assert imperial.details == {"units": "imperial", "user_id": 2}
        unknown_user = got[_day(3)]
        # 165.43 lb: float(165.43) * 0.45359237 would give 75.03778576910001 (two roundings).
        assert unknown_user.values == {Component.WEIGHT: 75.0377857691}
        assert unknown_user.values[Component.WEIGHT] == float(Decimal("165.43") * KG_PER_LB)
        assert unknown_user.details == {"units": "imperial", "user_id": None}

        _check_resync(gateway_cli, listener, scale, Kind.WEIGHT, len(WEIGHTS))
        # A new weighing: only it is sent at the next sync.
        scale.add([{"device_time": _day(4), "weight_kg": 81.9, "user_id": 1}])
        _sync_and_wait(gateway_cli, listener, scale.address, 3)
        assert listener.wait_for(lambda s: len(s.readings) >= len(WEIGHTS) + 1, timeout=20)
        assert len({r.id for r in listener.readings}) == len(WEIGHTS) + 1
        assert _by_time(listener)[_day(4)].values == {Component.WEIGHT: 81.9}
    finally:
        listener.stop()


def test_pulse_oximeter_syncs_spot_checks_exactly(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    oximeter = sim_devices("pulse-oximeter", SPOT_CHECKS)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-plx").start()
    try:
        gateway_cli.pair(oximeter.address)
        assert gateway_cli.device(oximeter.address)["profile"] == "pulse-oximeter"
        _sync_and_wait(gateway_cli, listener, oximeter.address, 1)
        assert listener.wait_for(lambda s: len(s.readings) >= len(SPOT_CHECKS), timeout=20)
        got = _by_time(listener)
        assert sorted(got) == [s["device_time"] for s in SPOT_CHECKS]
        for r in got.values():
            assert (r.kind, r.seq, r.skew_s) == (Kind.SPO2, None, 0.0)
            assert r.time == _utc(r.device_time or "")
        first = got[_day(0, 8)]
        assert first.values == {Component.SPO2: 97.0, Component.PULSE: 72.0}
        assert first.original[Component.SPO2] == Original(97.0, "%")
        assert first.conditions == [Condition.VALIDATED_DATA]
        second = got[_day(0, 20)]
        assert second.values == {
            Component.SPO2: 91.0,
            Component.PULSE: 88.0,
            Component.PULSE_AMPLITUDE_INDEX: 3.4,
        }
        assert second.conditions == [Condition.LOW_PERFUSION, Condition.QUESTIONABLE_MEASUREMENT]
        assert got[_day(1, 8)].values == {Component.SPO2: 95.5, Component.PULSE: 64.0}

        _check_resync(gateway_cli, listener, oximeter, Kind.SPO2, len(SPOT_CHECKS))
    finally:
        listener.stop()


def _truncated(profile: str, reading: dict[str, Any]) -> str:
    """The bytes the simulator sends for its corrupt first record, as hex."""
    r = reading_from_json(reading)
    if profile == "weight-scale":
        return encode_weight_measurement(weight_measurement(r))[:2].hex()
    return encode_plx_spot_check(spot_check_measurement(r))[:4].hex()


@pytest.mark.parametrize(
    ("profile", "records", "characteristic"),
    [
        ("weight-scale", WEIGHTS, uuids.WEIGHT_MEASUREMENT),
        ("pulse-oximeter", SPOT_CHECKS, uuids.PLX_SPOT_CHECK),
    ],
)
def test_malformed_record_is_reported_and_the_rest_kept(
    sim_devices: Callable[..., SimDevice],
    gateway_cli: GatewayCli,
    mqtt_url: str,
    profile: str,
    records: list[dict[str, Any]],
    characteristic: str,
) -> None:
    device = sim_devices(profile, records, malformed=True)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id=f"t-bad-{profile}").start()
    try:
        gateway_cli.pair(device.address)
        _sync_and_wait(gateway_cli, listener, device.address, 1)
        assert listener.wait_for(
            lambda s: len(s.readings) >= len(records) - 1 and bool(_malformed(s, device.address)),
            timeout=20,
        )
        # The first record went out cut short: reported as received, the others kept.
        assert sorted(_by_time(listener)) == [r["device_time"] for r in records[1:]]
        [event] = _malformed(listener, device.address)
        assert (event.characteristic, event.raw, event.profile) == (
            characteristic,
            _truncated(profile, records[0]),
            profile,
        )
        assert event.reason.startswith("truncated at field")
        assert event.seq is None and event.time_offset_min is None
        assert _synced(listener, device.address)[0].readings == len(records) - 1
    finally:
        listener.stop()
