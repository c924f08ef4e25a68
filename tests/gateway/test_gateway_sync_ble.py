"""The gateway against simulated devices on the BlueZoo bed and the real Mosquitto."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta

import pytest
from gw_ble import T0, GatewayCli, SimDevice, bp_readings, glucose_readings
from gw_helpers import Listener

from device_profiles.model import Component
from ingest.wire import DevicePaired, DeviceSynced, DeviceUnpaired

pytestmark = [pytest.mark.ble, pytest.mark.services]
ONE_S = timedelta(seconds=1)


def _seqs(listener: Listener) -> list[int]:
    return [r.seq for r in listener.readings if r.seq is not None]


def test_pairing_records_device_and_reports_it(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    meter = sim_devices("glucose-meter", glucose_readings(1, 3))
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-pair").start()
    try:
        listing = gateway_cli.run("pair", "--scan-seconds", "3")  # no address, no terminal
        assert listing.returncode == 1 and "choose one with --address" in listing.stderr
        assert meter.address in listing.stdout and "glucose-meter" in listing.stdout
        gateway_cli.pair(meter.address)
        device = gateway_cli.device(meter.address)
        assert device["profile"] == "glucose-meter"
        # The simulator's default serial: its adapter number, 8 digits.
        assert device["serial"] == f"{int(meter.spec['adapter'].removeprefix('hci')):08d}"
        assert device["manufacturer"] == "HomeVitals Simulated Devices"
        assert listener.wait_for(
            lambda s: any(getattr(e, "device", None) == meter.address for e in s.all_events),
            timeout=15,
        )
        paired = [e for e in listener.all_events if isinstance(e, DevicePaired)]
        assert paired and paired[0].profile == "glucose-meter"
        assert paired[0].serial == device["serial"]

        listed = gateway_cli.check("devices").stdout
        assert meter.address in listed
        gateway_cli.check("unpair", meter.address)
        assert listener.wait_for(
            lambda s: any(isinstance(e, DeviceUnpaired) for e in s.all_events), timeout=15
        )
        assert gateway_cli.status()["devices"] == []
    finally:
        listener.stop()


def test_first_sync_of_1000_records_then_incremental(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    meter = sim_devices("glucose-meter", glucose_readings(1, 1000))
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-first").start()
    try:
        gateway_cli.pair(meter.address)
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 1000, timeout=30)
        assert _seqs(listener) == list(range(1, 1001))
        first = listener.readings[0]
        assert first.device == meter.address
        assert first.time == (T0 + timedelta(minutes=1)).replace(tzinfo=UTC)
        assert first.values[Component.GLUCOSE] == 77.0
        assert first.device_time == (T0 + timedelta(minutes=1)).isoformat()
        device = gateway_cli.device(meter.address)
        assert device["cursor"] == 1000
        assert device["battery_percent"] == 90
        assert gateway_cli.status()["outbox"]["rows"] == 0

        meter.add(glucose_readings(1001, 25))
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 1025, timeout=30)
        assert _seqs(listener) == list(range(1, 1026))  # only the new ones were fetched
        assert gateway_cli.device(meter.address)["cursor"] == 1025
        synced = [e for e in listener.all_events if isinstance(e, DeviceSynced)]
        assert [e.readings for e in synced] == [1000, 25]
        assert synced[0].battery_percent == 90 and synced[0].error is None
    finally:
        listener.stop()


def test_bp_cuff_indicates_unsent_records_then_hangs_up(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    # 1 h fast clock on a settable cuff: times corrected, then the clock is set.
    cuff = sim_devices("bp-cuff-unsent-only", bp_readings(4), clock_skew_s=3600)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-bp").start()
    try:
        gateway_cli.pair(cuff.address)
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 4, timeout=20)
        readings = listener.readings
        assert [r.values[Component.SYSTOLIC] for r in readings] == [120, 121, 122, 123]
        # Device clocks tick in whole seconds: the corrected time is good to a second.
        assert abs(readings[0].time - (T0 - timedelta(hours=1)).replace(tzinfo=UTC)) <= ONE_S
        assert readings[0].device_time == T0.isoformat()
        assert readings[0].skew_s == pytest.approx(3600, abs=2)
        assert abs(cuff.status()["clock_skew_s"]) < 5  # the gateway set the clock

        cuff.add(bp_readings(2, start=T0 + timedelta(days=5)))
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 6, timeout=20)
        assert len({r.id for r in listener.readings}) == 6
        assert cuff.status()["unsent"] == 0
    finally:
        listener.stop()


def test_three_hour_clock_skew_is_corrected(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    # The meter runs 3 h fast: its records are stamped 3 h late on its own clock.
    skewed = [
        {**r, "device_time": (T0 + timedelta(minutes=r["sequence"], hours=3)).isoformat()}
        for r in glucose_readings(1, 20)
    ]
    meter = sim_devices("glucose-meter", skewed, clock_skew_s=3 * 3600)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-skew").start()
    try:
        gateway_cli.pair(meter.address)
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 20, timeout=20)
        for r in listener.readings:
            assert r.seq is not None
            assert abs(r.time - (T0 + timedelta(minutes=r.seq)).replace(tzinfo=UTC)) <= ONE_S
            assert r.device_time == (T0 + timedelta(minutes=r.seq, hours=3)).isoformat()
            assert r.skew_s == pytest.approx(10800, abs=2)
        assert gateway_cli.device(meter.address)["skew_s"] == pytest.approx(10800, abs=2)
    finally:
        listener.stop()


def test_malformed_record_is_logged_counted_and_skipped(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    bad = sim_devices("glucose-meter", glucose_readings(1, 50), malformed=True)
    good = sim_devices("glucose-meter", glucose_readings(1, 30))
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-malformed").start()
    try:
        gateway_cli.pair(bad.address)
        gateway_cli.pair(good.address)
        run = gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 79, timeout=20)
        by_device: dict[str, list[int]] = {}
        for r in listener.readings:
            by_device.setdefault(r.device, []).append(r.seq or 0)
        assert by_device[bad.address] == list(range(2, 51))  # record 1 is corrupt
        assert by_device[good.address] == list(range(1, 31))
        assert "malformed" in run.stderr and "raw " in run.stderr  # the hex is logged
        device = gateway_cli.device(bad.address)
        assert device["errors"] == {"malformed": 1}
        assert device["cursor"] == 50
    finally:
        listener.stop()


def test_meter_ignoring_the_racp_filter_is_deduplicated(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    meter = sim_devices("glucose-meter-ignores-filter", glucose_readings(1, 10))
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-ignores").start()
    try:
        gateway_cli.pair(meter.address)
        gateway_cli.sync_once()
        meter.add(glucose_readings(11, 3))
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 13, timeout=20)
        assert _seqs(listener) == list(range(1, 14))  # not 1..10 twice
    finally:
        listener.stop()


def test_month_13_meter_without_clock_service(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    # Records in January: this meter's clock says "month 13" of the previous year.
    january = [
        {"device_time": f"2026-01-0{d}T08:00:00", "mg_dl": 100 + d, "sequence": d}
        for d in range(1, 4)
    ]
    meter = sim_devices("glucose-meter-month13", january)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-month13").start()
    try:
        gateway_cli.pair(meter.address)
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 3, timeout=20)
        assert [r.device_time for r in listener.readings] == [
            f"2026-01-0{d}T08:00:00" for d in range(1, 4)
        ]
        assert all(r.skew_s is None for r in listener.readings)  # no clock: skew unknown
        assert gateway_cli.device(meter.address)["errors"] == {}
    finally:
        listener.stop()


def test_reversed_sequence_meter_with_fake_hi_record(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    meter = sim_devices("glucose-meter-full-memory", glucose_readings(1, 10), memory_capacity=12)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-reversed").start()
    try:
        gateway_cli.pair(meter.address)
        gateway_cli.sync_once()
        meter.add(glucose_readings(11, 2))  # memory full: the meter adds a fake HI record
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 12, timeout=20)
        readings = listener.readings
        expected = [(T0 + timedelta(minutes=n)).isoformat() for n in range(1, 13)]
        assert sorted(r.device_time or "" for r in readings) == expected  # once each
        assert all(r.seq is None and "device_seq" in r.details for r in readings)
        assert gateway_cli.device(meter.address)["errors"].get("implausible_time", 0) >= 1
    finally:
        listener.stop()
