"""CGM sensors (CGMS v1.0.1) through the real gateway CLI, BlueZoo and Mosquitto.

The sensor's session started at 08:00 local time in a UTC+1 zone with daylight time
(+1 h DST), so its records are at 06:00Z + offset; the gateway runs in UTC, so reading
the start as a gateway wall time would be two hours off.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from gw_ble import GatewayCli, SimDevice
from gw_helpers import Listener

from device_profiles import uuids
from device_profiles.model import Component, Kind
from readings import DeviceRecordMalformed

pytestmark = [pytest.mark.ble, pytest.mark.services]

S0 = datetime(2026, 7, 1, 8, 0)  # session start, sensor-local (CEST)
S0_UTC = datetime(2026, 7, 1, 6, 0, tzinfo=UTC)
CEST = {"session_start": S0.isoformat(), "time_zone_minutes": 60, "dst_offset": "daylight_time"}


def mg_dl(offset: int) -> int:
    return 90 + (offset * 3) % 120


def cgm_readings(offsets: range, start: datetime = S0) -> list[dict[str, Any]]:
    """A 5-minute series: by sensor-local time (the simulator derives the offset)."""
    return [
        {
            "kind": "cgm",
            "device_time": (start + timedelta(minutes=o)).isoformat(),
            "mg_dl": mg_dl(o),
        }
        for o in offsets
    ]


def offsets_of(listener: Listener) -> list[int]:
    out = []
    for r in listener.readings:
        value = r.details["time_offset_min"]
        assert isinstance(value, int)
        out.append(value)
    return out


def test_cgm_first_sync_incremental_and_resync_without_cursor(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    sensor = sim_devices("cgm", cgm_readings(range(5, 65, 5)), **CEST)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-cgm-first").start()
    try:
        gateway_cli.pair(sensor.address)
        assert gateway_cli.device(sensor.address)["profile"] == "cgm"
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 12, timeout=30)
        assert offsets_of(listener) == list(range(5, 65, 5))
        for r in listener.readings:
            offset = r.details["time_offset_min"]
            assert isinstance(offset, int)
            assert r.kind is Kind.CGM
            assert r.time == S0_UTC + timedelta(minutes=offset)  # not the receive time
            assert r.device_time == (S0 + timedelta(minutes=offset)).isoformat()
            assert r.values[Component.GLUCOSE] == mg_dl(offset)
            assert r.details["cgm_session_start"] == S0.isoformat()
            assert r.seq is None
        device = gateway_cli.device(sensor.address)
        assert device["cursor"] == 60
        assert device["session"] is not None
        assert device["errors"] == {}

        # Only the new records: RACP "time offset >= 61".
        assert sensor.add(cgm_readings(range(65, 80, 5)))["ids"] == [65, 70, 75]
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 15, timeout=30)
        assert offsets_of(listener) == list(range(5, 80, 5))
        assert gateway_cli.device(sensor.address)["cursor"] == 75
        first_ids = [r.id for r in listener.readings]
        assert len(set(first_ids)) == 15

        # Lose the cursor (a restored backup, a re-pair): everything comes again with the
        # same identities and times, so ingest's unique index drops the re-sends.
        with sqlite3.connect(gateway_cli.state_dir / "gateway.sqlite3") as db:
            db.execute("UPDATE devices SET cursor = NULL, session = NULL")
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 30, timeout=30)
        again = listener.readings[15:]
        assert [r.id for r in again] == first_ids
        assert [r.time for r in again] == [r.time for r in listener.readings[:15]]
        assert gateway_cli.device(sensor.address)["cursor"] == 75
    finally:
        listener.stop()


def test_cgm_new_session_is_not_skipped_by_the_old_cursor(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    sensor = sim_devices("cgm", cgm_readings(range(5, 35, 5)), **CEST)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-cgm-session").start()
    try:
        gateway_cli.pair(sensor.address)
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 6, timeout=30)
        old_session = gateway_cli.device(sensor.address)["session"]
        assert gateway_cli.device(sensor.address)["cursor"] == 30

        # A new sensor the next day: offsets restart at 0, far below the cursor 30.
        s1 = datetime(2026, 7, 2, 9, 0)
        sensor.command({"cmd": "start_session", "start": s1.isoformat()})
        sensor.add(cgm_readings(range(0, 15, 5), start=s1))
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 9, timeout=30)
        new = listener.readings[6:]
        assert [r.details["time_offset_min"] for r in new] == [0, 5, 10]
        assert [r.time for r in new] == [
            datetime(2026, 7, 2, 7, 0, tzinfo=UTC) + timedelta(minutes=o) for o in (0, 5, 10)
        ]
        assert len({r.id for r in listener.readings}) == 9
        device = gateway_cli.device(sensor.address)
        assert device["cursor"] == 10
        assert device["session"] != old_session

        # And the new session continues incrementally.
        sensor.add(cgm_readings(range(15, 25, 5), start=s1))
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 11, timeout=30)
        assert [r.details["time_offset_min"] for r in listener.readings[9:]] == [15, 20]
    finally:
        listener.stop()


def test_cgm_record_failing_its_e2e_crc_is_reported_and_the_rest_kept(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    # E2E-CRC sensor; its first record (offset 5) goes out with a wrong CRC.
    sensor = sim_devices("cgm", cgm_readings(range(5, 55, 5)), e2e_crc=True, malformed=True, **CEST)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-cgm-crc").start()
    try:
        gateway_cli.pair(sensor.address)
        run = gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 9, timeout=30)
        assert offsets_of(listener) == list(range(10, 55, 5))
        assert all(r.details["e2e_crc"] is True for r in listener.readings)
        assert "E2E-CRC mismatch" in run.stderr and "raw " in run.stderr
        device = gateway_cli.device(sensor.address)
        assert device["errors"] == {"malformed": 1}
        assert device["cursor"] == 50
        assert listener.wait_for(lambda s: bool(malformed_of(s)), timeout=15)
        [event] = malformed_of(listener)
        assert event.characteristic == uuids.CGM_MEASUREMENT and event.time_offset_min == 5
        assert event.reason.startswith("E2E-CRC mismatch")
    finally:
        listener.stop()


def malformed_of(listener: Listener) -> list[DeviceRecordMalformed]:
    return [e for e in listener.all_events if isinstance(e, DeviceRecordMalformed)]


def test_cgm_corrupt_newest_record_is_reported_once_and_passed(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    # The sensor's only record (offset 5) fails its E2E-CRC; the sensor is far past it
    # (CGM Status), so every record up to offset 5 was in the download: the cursor moves.
    sensor = sim_devices("cgm", cgm_readings(range(5, 10, 5)), e2e_crc=True, malformed=True, **CEST)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-cgm-newest").start()
    try:
        gateway_cli.pair(sensor.address)
        gateway_cli.sync_once()
        assert listener.wait_for(lambda s: bool(malformed_of(s)), timeout=30)
        [event] = malformed_of(listener)
        assert event.time_offset_min == 5 and event.cgm_session is not None
        assert int(event.raw[:2], 16) == len(event.raw) // 2  # one size-framed record
        device = gateway_cli.device(sensor.address)
        assert device["cursor"] == 5 and device["errors"] == {"malformed": 1}

        sensor.add(cgm_readings(range(10, 20, 5)))
        run = gateway_cli.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 2, timeout=30)
        assert offsets_of(listener) == [10, 15]
        assert "E2E-CRC mismatch" not in run.stderr  # offset 5 was not fetched again
        assert gateway_cli.device(sensor.address)["errors"] == {"malformed": 1}
        assert len(malformed_of(listener)) == 1
    finally:
        listener.stop()
