"""Record Access Control Point of the simulated glucose meter, driven by plain bleak.

GLS v1.0.1 §4.9: responses are ``06 00 <request opcode> <code>`` and
``05 00 <count u16>``; records arrive as Glucose Measurement notifications, in order.
"""

from __future__ import annotations

import asyncio

import pytest
from bleak.exc import BleakError
from waiting import wait_until_async

from device_profiles.racp import RacpResponseCode as Code
from simulators.ble import DeviceFleet, DeviceProcess
from simulators.ble.testing import Central, glucose_readings

pytestmark = pytest.mark.ble


def status(opcode: int, code: Code) -> bytes:
    return bytes((0x06, 0x00, opcode, code))


def count(n: int) -> bytes:
    return bytes((0x05, 0x00)) + n.to_bytes(2, "little")


@pytest.mark.parametrize(
    ("request_hex", "expected"),
    [
        ("0101", list(range(1, 11))),  # all
        ("01030105 00", list(range(5, 11))),  # >= 5
        ("01020104 00", [1, 2, 3, 4]),  # <= 4
        ("0104010300 0700", [3, 4, 5, 6, 7]),  # within 3..7
        ("0105", [1]),  # first
        ("0106", [10]),  # last
        ("0103010a00", [10]),  # >= last: the incremental-sync request
    ],
)
def test_report_records_delivers_exactly_the_selection_in_order(
    central: Central, ble_devices: dict[str, DeviceProcess], request_hex: str, expected: list[int]
) -> None:
    async def body() -> None:
        async with central.racp(ble_devices["reader"].address) as s:
            response = await s.request(bytes.fromhex(request_hex))
            assert response == status(1, Code.SUCCESS)
            assert s.sequences == expected

    asyncio.run(body())


def test_report_number_of_records(central: Central, ble_devices: dict[str, DeviceProcess]) -> None:
    async def body() -> None:
        async with central.racp(ble_devices["reader"].address) as s:
            assert await s.request(bytes.fromhex("0401")) == count(10)
            assert await s.request(bytes.fromhex("0403010800")) == count(3)
            # Nothing matches: the count is zero, not "no records found".
            assert await s.request(bytes.fromhex("0403016400")) == count(0)
            assert s.records == []

    asyncio.run(body())


@pytest.mark.parametrize(
    ("request_hex", "expected"),
    [
        ("0103016400", status(1, Code.NO_RECORDS_FOUND)),  # >= 100
        ("0203016400", status(2, Code.NO_RECORDS_FOUND)),  # delete >= 100
        ("010302ea070b02071e00", status(1, Code.OPERAND_NOT_SUPPORTED)),  # user facing time
        ("0103070100", status(1, Code.OPERAND_NOT_SUPPORTED)),  # filter type 7
        ("0100", status(1, Code.INVALID_OPERATOR)),  # null operator
        ("0107", status(1, Code.INVALID_OPERATOR)),  # operator 7 does not exist
        ("0301", status(3, Code.INVALID_OPERATOR)),  # abort takes the null operator
        ("0701", status(7, Code.OPCODE_NOT_SUPPORTED)),
        ("0104010700 0300", status(1, Code.INVALID_OPERAND)),  # range 7..3 is empty
        ("010101", status(1, Code.INVALID_OPERAND)),  # "all" takes no operand
        ("010301", status(1, Code.INVALID_OPERAND)),  # filter type without a value
        ("0300", status(3, Code.SUCCESS)),  # abort with nothing running
    ],
)
def test_error_and_edge_responses(
    central: Central, ble_devices: dict[str, DeviceProcess], request_hex: str, expected: bytes
) -> None:
    async def body() -> None:
        async with central.racp(ble_devices["reader"].address) as s:
            assert await s.request(bytes.fromhex(request_hex)) == expected
            assert s.records == []

    asyncio.run(body())


def test_write_without_racp_indications_is_cccd_improperly_configured(
    central: Central, ble_devices: dict[str, DeviceProcess]
) -> None:
    from bleak import BleakClient

    from device_profiles import uuids

    async def body() -> None:
        async with central.connect(ble_devices["reader"].address, pair=True) as client:
            assert isinstance(client, BleakClient)
            with pytest.raises(BleakError, match=r"(?i)improperly configured"):
                await client.write_gatt_char(uuids.RACP, bytes.fromhex("0101"), response=True)

    asyncio.run(body())


def test_report_without_measurement_notifications_is_procedure_not_completed(
    central: Central, ble_devices: dict[str, DeviceProcess]
) -> None:
    async def body() -> None:
        async with central.racp(ble_devices["reader"].address, notify_measurements=False) as s:
            assert await s.request(bytes.fromhex("0101")) == status(1, Code.PROCEDURE_NOT_COMPLETED)

    asyncio.run(body())


def test_delete_then_count_then_add_while_running(
    central: Central, ble_devices: dict[str, DeviceProcess], ble_fleet: DeviceFleet
) -> None:
    device = ble_devices["deleter"]

    async def body() -> None:
        async with central.racp(device.address, pair=False) as s:
            assert await s.request(bytes.fromhex("0401")) == count(10)
            assert await s.request(bytes.fromhex("0202010500")) == status(2, Code.SUCCESS)
            assert await s.request(bytes.fromhex("0401")) == count(5)
            assert await s.request(bytes.fromhex("0105")) == status(1, Code.SUCCESS)
            assert s.sequences == [6]
            # New readings arrive on the meter (the lead's incremental-sync case).
            new = [r.__class__(r.kind, r.device_time, mg_dl=r.mg_dl) for r in glucose_readings(2)]
            assert await asyncio.to_thread(ble_fleet.add_readings, device.spec.adapter, new) == [
                11,
                12,
            ]
            assert await s.request(bytes.fromhex("0103010b00")) == status(1, Code.SUCCESS)
            assert s.sequences == [11, 12]
            assert await s.request(bytes.fromhex("0201")) == status(2, Code.SUCCESS)
            assert await s.request(bytes.fromhex("0401")) == count(0)
            assert await s.request(bytes.fromhex("0101")) == status(1, Code.NO_RECORDS_FOUND)

    asyncio.run(body())


def test_abort_stops_a_running_transfer(
    central: Central, ble_devices: dict[str, DeviceProcess]
) -> None:
    async def body() -> None:
        async with central.racp(ble_devices["aborter"].address, pair=False) as s:
            from bleak import BleakClient

            from device_profiles import uuids

            assert isinstance(s.client, BleakClient)
            await s.client.write_gatt_char(uuids.RACP, bytes.fromhex("0101"), response=True)
            await wait_until_async(lambda: len(s.records) >= 5, 10, what="5 records")
            # A second request while one runs is refused (ATT 0xFE), abort is not.
            with pytest.raises(BleakError):
                await s.client.write_gatt_char(uuids.RACP, bytes.fromhex("0401"), response=True)
            await s.client.write_gatt_char(uuids.RACP, bytes.fromhex("0300"), response=True)
            response = await asyncio.wait_for(s.responses.get(), 5)
            assert response == status(3, Code.SUCCESS)
            got = len(s.records)
            assert 5 <= got < 200
            assert s.sequences == list(range(1, got + 1))
            # A later request's answer comes after whatever the meter sent before it: the
            # meter is usable again, and nothing of the aborted report came in between.
            await s.client.write_gatt_char(uuids.RACP, bytes.fromhex("0401"), response=True)
            response = await asyncio.wait_for(s.responses.get(), 5)
            assert response == count(200), "the aborted report must not answer itself"
            assert len(s.records) == got, "records kept coming after the abort"
            assert s.responses.empty()

    asyncio.run(body())


def test_racp_requires_pairing_when_the_profile_says_so(
    central: Central, ble_devices: dict[str, DeviceProcess]
) -> None:
    from bleak import BleakClient

    from device_profiles import uuids

    address = ble_devices["pairing"].address

    async def body() -> None:
        async with central.connect(address) as client:
            assert isinstance(client, BleakClient)
            assert not await central.paired(address)
            q: asyncio.Queue[bytes] = asyncio.Queue()
            await client.start_notify(uuids.RACP, lambda _c, d: q.put_nowait(bytes(d)))
            with pytest.raises(BleakError):
                await client.write_gatt_char(uuids.RACP, bytes.fromhex("0401"), response=True)
            await client.pair()
            assert await central.paired(address)
            await client.write_gatt_char(uuids.RACP, bytes.fromhex("0401"), response=True)
            assert await asyncio.wait_for(q.get(), 5) == count(2)

    asyncio.run(body())
