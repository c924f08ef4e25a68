"""The gateway against simulated devices on the BlueZoo bed and the real Mosquitto."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import psycopg
import pytest
from gw_ble import T0, GatewayCli, SimDevice, bp_readings, glucose_readings
from gw_helpers import Listener
from waiting import suback_event, wait_until

from device_profiles import uuids
from device_profiles.glucose import encode_glucose_measurement, glucose_measurement
from device_profiles.model import Component
from ingest.patients import enroll_patient
from ingest.service import IngestConfig, IngestWorker
from readings import (
    DevicePaired,
    DeviceRecordMalformed,
    DeviceSynced,
    DeviceUnpaired,
    events_topic,
)

pytestmark = [pytest.mark.ble, pytest.mark.services]
ONE_S = timedelta(seconds=1)


def _seqs(listener: Listener) -> list[int]:
    return [r.seq for r in listener.readings if r.seq is not None]


def _malformed(listener: Listener, address: str) -> list[DeviceRecordMalformed]:
    return [
        e
        for e in listener.all_events
        if isinstance(e, DeviceRecordMalformed) and e.device == address
    ]


def _corrupt_record(seq: int) -> str:
    """The bytes the simulator sends for its corrupt record ``seq`` (``glucose_readings``
    values, cut off inside the base time), as hex."""
    reading = glucose_readings(seq, 1)[0]
    m = glucose_measurement(
        sequence=seq, device_time=T0 + timedelta(minutes=seq), mg_dl=reading["mg_dl"]
    )
    return encode_glucose_measurement(m)[:5].hex()


TRUNCATED = "truncated at field 'base_time' (need 7 bytes at offset 3, have 2)"


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


def test_malformed_record_is_reported_counted_and_skipped(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    bad = sim_devices("glucose-meter", glucose_readings(1, 50), malformed=True)
    good = sim_devices("glucose-meter", glucose_readings(1, 30))
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-malformed").start()
    try:
        gateway_cli.pair(bad.address)
        gateway_cli.pair(good.address)
        run = gateway_cli.sync_once()
        assert listener.wait_for(
            lambda s: len(s.readings) >= 79 and bool(_malformed(s, bad.address)), timeout=20
        )
        by_device: dict[str, list[int]] = {}
        for r in listener.readings:
            by_device.setdefault(r.device, []).append(r.seq or 0)
        assert by_device[bad.address] == list(range(2, 51))  # record 1 is corrupt
        assert by_device[good.address] == list(range(1, 31))
        assert "malformed" in run.stderr and "raw " in run.stderr  # the hex is logged
        # ... and the record itself goes to the clinic, as received.
        [event] = _malformed(listener, bad.address)
        assert (event.characteristic, event.raw, event.reason, event.seq, event.profile) == (
            uuids.GLUCOSE_MEASUREMENT,
            _corrupt_record(1),
            TRUNCATED,
            1,
            "glucose-meter",
        )
        assert event.zone == "UTC" and event.skew_s is not None
        device = gateway_cli.device(bad.address)
        assert device["errors"] == {"malformed": 1}
        assert device["cursor"] == 50

        bad.add(glucose_readings(51, 2))
        run = gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 81, timeout=20)
        assert [r.seq for r in listener.readings if r.device == bad.address][-2:] == [51, 52]
        assert "raw " not in run.stderr  # not fetched again: no "malformed … (raw …)" line
        assert gateway_cli.device(bad.address)["errors"] == {"malformed": 1}
        assert len(_malformed(listener, bad.address)) == 1
    finally:
        listener.stop()


def test_malformed_newest_record_is_not_fetched_again_and_becomes_a_dead_letter(
    sim_devices: Callable[..., SimDevice],
    gateway_cli: GatewayCli,
    mqtt_url: str,
    database_url: str,
    ingest_mqtt_url: str,
) -> None:
    """The meter's newest record (8) is corrupt.  Before, the cursor stayed at 7 and
    every sync fetched 8 again; now its event is committed with the cursor at 8."""
    meter = sim_devices("glucose-meter", glucose_readings(8, 1), malformed=True)
    enroll_patient(database_url, "pt-gw-malformed", [gateway_cli.gateway_id])
    worker = IngestWorker(
        IngestConfig(database_url, ingest_mqtt_url, group="gw-malformed", max_wait_s=0.01)
    )
    subscribed = suback_event(worker.client)
    thread = threading.Thread(target=worker.run, kwargs={"duration_s": 240}, daemon=True)
    thread.start()
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-malformed-new").start()
    try:
        assert subscribed.wait(10), "ingest got no SUBACK"
        gateway_cli.pair(meter.address)
        # Records 1..7 were downloaded before, then erased from the meter's memory.
        with sqlite3.connect(gateway_cli.state_dir / "gateway.sqlite3") as db:
            db.execute("UPDATE devices SET cursor = 7 WHERE address = ?", (meter.address,))

        run = gateway_cli.sync_once()
        assert listener.wait_for(lambda s: bool(_malformed(s, meter.address)), timeout=20)
        [event] = _malformed(listener, meter.address)
        assert (event.raw, event.seq, event.reason) == (_corrupt_record(8), 8, TRUNCATED)
        assert "the cursor may pass it" in run.stderr
        assert "1 malformed (1 newly reported)" in run.stderr
        assert gateway_cli.device(meter.address)["cursor"] == 8

        meter.add(glucose_readings(9, 2))
        run = gateway_cli.sync_once()
        assert listener.wait_for(lambda s: _seqs(s) == [9, 10], timeout=20)
        assert "raw " not in run.stderr  # RACP "≥ 9": record 8 is not fetched again
        device = gateway_cli.device(meter.address)
        assert device["errors"] == {"malformed": 1} and device["cursor"] == 10
        assert len(_malformed(listener, meter.address)) == 1

        # Ingest parks the record as a dead letter and stores the valid readings.
        with psycopg.connect(database_url, autocommit=True) as conn:

            def landed() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]] | None:
                stored = conn.execute(
                    "SELECT sequence FROM glucose WHERE device_id = %s ORDER BY sequence",
                    (meter.address,),
                ).fetchall()
                parked = conn.execute(
                    "SELECT topic, gateway_id, reason FROM dead_letters WHERE device_id = %s",
                    (meter.address,),
                ).fetchall()
                return (stored, parked) if len(stored) == 2 and parked else None

            stored, parked = wait_until(landed, 30, what="2 readings stored and 1 parked")
        assert [s[0] for s in stored] == [9, 10]
        assert parked == [
            (
                events_topic(gateway_cli.gateway_id),
                gateway_cli.gateway_id,
                f"device record malformed (2A18, seq 8): {TRUNCATED}",
            )
        ]
    finally:
        listener.stop()
        worker.stop()
        thread.join(30)


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
