"""Simulated devices seen through plain bleak: BP cuff flow, clock, pairing, quirks,
several devices at once."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from bleak.exc import BleakGATTProtocolError

from device_profiles import uuids
from device_profiles.blood_pressure import parse_blood_pressure_measurement
from device_profiles.date_time import encode_date_time, parse_date_time
from device_profiles.errors import InvalidDateTimeError, MalformedPayloadError
from device_profiles.glucose import parse_glucose_measurement
from device_profiles.model import Component, Kind
from device_profiles.racp import RacpResponseCode as Code
from simulators.ble import DeviceFleet, DeviceProcess, Reading
from simulators.ble.testing import Central, sequence_of

pytestmark = pytest.mark.ble


def test_bp_cuff_sends_unsent_once_then_disconnects(
    central: Central, ble_devices: dict[str, DeviceProcess], ble_fleet: DeviceFleet
) -> None:
    cuff = ble_devices["cuff"]

    async def session() -> list[bytes]:
        got: list[bytes] = []
        dropped = asyncio.Event()
        async with central.connect(cuff.address, pair=True, disconnected=dropped.set) as client:
            await client.start_notify(
                uuids.BLOOD_PRESSURE_MEASUREMENT, lambda _c, d: got.append(bytes(d))
            )
            await asyncio.wait_for(dropped.wait(), 5)  # the cuff hangs up by itself
        return got

    async def body() -> None:
        first = await session()
        readings = [parse_blood_pressure_measurement(b) for b in first]
        assert [r.value(Component.SYSTOLIC) for r in readings] == [120.0, 121.0, 122.0]
        times = [r.device_time for r in readings if r.device_time is not None]
        assert len(times) == 3 and times == sorted(times)
        assert await session() == [], "a reconnect must not resend"

    asyncio.run(body())
    assert ble_fleet.status(cuff.spec.adapter)["unsent"] == 0


def test_standard_cuff_stays_connected_and_indicates_new_readings(
    central: Central, ble_devices: dict[str, DeviceProcess], ble_fleet: DeviceFleet
) -> None:
    cuff = ble_devices["standard_cuff"]

    async def body() -> None:
        got: asyncio.Queue[bytes] = asyncio.Queue()
        async with central.connect(cuff.address) as client:
            await client.start_notify(
                uuids.BLOOD_PRESSURE_MEASUREMENT, lambda _c, d: got.put_nowait(bytes(d))
            )
            first = parse_blood_pressure_measurement(await asyncio.wait_for(got.get(), 5))
            assert first.value(Component.SYSTOLIC) == 120.0
            new = Reading(
                Kind.BLOOD_PRESSURE, datetime(2026, 11, 3, 7, 0), systolic=141, diastolic=91
            )
            await asyncio.to_thread(ble_fleet.add_readings, cuff.spec.adapter, [new])
            live = parse_blood_pressure_measurement(await asyncio.wait_for(got.get(), 5))
            assert (live.value(Component.SYSTOLIC), live.value(Component.DIASTOLIC)) == (141, 91)
            assert client.is_connected

    asyncio.run(body())


def _skew_s(current_time: bytes | bytearray) -> float:
    device_now = parse_date_time(bytes(current_time[:7]))
    assert device_now is not None
    return (device_now - datetime.now()).total_seconds()


def test_current_time_shows_the_skew_and_a_write_fixes_it(
    central: Central, ble_devices: dict[str, DeviceProcess]
) -> None:
    async def body() -> None:
        async with central.connect(ble_devices["settable"].address, pair=True) as client:
            before = await client.read_gatt_char(uuids.CURRENT_TIME)
            assert len(before) == 10
            assert _skew_s(before) == pytest.approx(3600, abs=2)
            now = datetime.now().replace(microsecond=0)
            value = encode_date_time(now) + bytes((now.isoweekday(), 0, 0x01))
            await client.write_gatt_char(uuids.CURRENT_TIME, value, response=True)
            assert _skew_s(await client.read_gatt_char(uuids.CURRENT_TIME)) == pytest.approx(
                0, abs=2
            )

    asyncio.run(body())


def test_read_only_clock_refuses_a_write(
    central: Central, ble_devices: dict[str, DeviceProcess]
) -> None:
    async def body() -> None:
        async with central.connect(ble_devices["reader"].address) as client:
            now = datetime.now().replace(microsecond=0)
            with pytest.raises(BleakGATTProtocolError):
                await client.write_gatt_char(
                    uuids.CURRENT_TIME, encode_date_time(now) + bytes(3), response=True
                )

    asyncio.run(body())


def test_device_information_and_battery(
    central: Central, ble_devices: dict[str, DeviceProcess]
) -> None:
    async def body() -> None:
        async with central.connect(ble_devices["reader"].address) as client:
            assert await client.read_gatt_char(uuids.SERIAL_NUMBER) == b"00000001"
            assert await client.read_gatt_char(uuids.MODEL_NUMBER) == b"glucose-meter"
            assert await client.read_gatt_char(uuids.MANUFACTURER_NAME)
            assert await client.read_gatt_char(uuids.BATTERY_LEVEL) == bytes([90])

    asyncio.run(body())


def test_two_devices_at_once(central: Central, ble_devices: dict[str, DeviceProcess]) -> None:
    async def meter() -> list[int]:
        async with central.racp(ble_devices["reader"].address) as s:
            assert await s.request(bytes.fromhex("0101")) == bytes((6, 0, 1, Code.SUCCESS))
            return s.sequences

    async def names() -> str:
        async with central.connect(ble_devices["settable"].address) as client:
            return (await client.read_gatt_char(uuids.SERIAL_NUMBER)).decode()

    async def body() -> None:
        sequences, serial = await asyncio.gather(meter(), names())
        assert sequences == list(range(1, 11))
        assert serial == "00000005"

    asyncio.run(body())


def test_ignores_racp_filter_quirk(central: Central, ble_devices: dict[str, DeviceProcess]) -> None:
    async def body() -> None:
        async with central.racp(ble_devices["settable"].address) as s:
            assert await s.request(bytes.fromhex("0103010400")) == bytes((6, 0, 1, Code.SUCCESS))
            assert s.sequences == [1, 2, 3, 4, 5]  # asked for >= 4

    asyncio.run(body())


def test_month13_clock_no_cts_and_one_malformed_record(
    central: Central, ble_devices: dict[str, DeviceProcess]
) -> None:
    async def body() -> None:
        async with central.racp(ble_devices["month13"].address, pair=False) as s:
            assert uuids.CURRENT_TIME_SERVICE not in {svc.uuid for svc in s.client.services}
            assert await s.request(bytes.fromhex("0101")) == bytes((6, 0, 1, Code.SUCCESS))
            assert [sequence_of(r) for r in s.records] == [1, 2, 3]
            malformed, january, february = s.records
            with pytest.raises(MalformedPayloadError):
                parse_glucose_measurement(malformed)
            # January 2027 goes out as month 13 of 2026.
            assert int.from_bytes(january[3:5], "little") == 2026 and january[5] == 13
            with pytest.raises(InvalidDateTimeError):
                parse_glucose_measurement(january)
            fixed = parse_glucose_measurement(january, month13_rollover=True)
            assert fixed.device_time == datetime(2027, 1, 5, 8)
            assert parse_glucose_measurement(february).device_time == datetime(2027, 2, 5, 8)

    asyncio.run(body())
