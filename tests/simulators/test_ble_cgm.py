"""The simulated CGM sensor (CGMS v1.0.1) driven by plain bleak on the session's bed.

RACP with filter type 0x01 = Time Offset (CGMS §3.6), every response code we answer,
CGM Feature / Status / Session Start Time / Session Run Time reads, E2E-CRC on writes,
and Start/Stop Session on the CGM Specific Ops Control Point (CGMS §3.7).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pytest
from bleak import BleakClient
from bleak.exc import BleakGATTProtocolError

from device_profiles import uuids
from device_profiles.cgm import (
    CgmFeature,
    CgmSessionStartTime,
    SocpOpcode,
    SocpRequest,
    SocpResponse,
    SocpResponseCode,
    encode_cgm_session_start_time,
    encode_socp_request,
    parse_cgm_feature,
    parse_cgm_measurement,
    parse_cgm_session_run_time,
    parse_cgm_session_start_time,
    parse_cgm_status,
    parse_socp_response,
)
from device_profiles.current_time import DstOffset
from device_profiles.model import Condition, Kind
from device_profiles.racp import RacpResponseCode as Code
from simulators.ble import DeviceFleet, DeviceProcess, DeviceSpec, Reading
from simulators.ble.cgm_sensor import CGM_SESSION_RUN_TIME
from simulators.ble.testing import Central
from simulators.testbed import AdapterInfo, TestbedInfo

pytestmark = pytest.mark.ble

S0 = datetime(2026, 7, 1, 8, 0)


def series(offsets: range) -> tuple[Reading, ...]:
    return tuple(
        Reading(Kind.CGM, S0 + timedelta(minutes=o), mg_dl=float(100 + o)) for o in offsets
    )


SPECS = {
    "plain": DeviceSpec(
        "cgm",
        "hci1",
        readings=series(range(5, 55, 5)),  # offsets 5..50
        session_start=S0,
        time_zone_minutes=60,
        dst_offset=DstOffset.DAYLIGHT_TIME,
        enforce_bonding=False,
    ),
    "crc": DeviceSpec(
        "cgm", "hci2", readings=series(range(0, 15, 5)), e2e_crc=True, enforce_bonding=False
    ),
}


@pytest.fixture(scope="module")
def cgm_bed(ble_bed: TestbedInfo) -> TestbedInfo:
    return ble_bed


@pytest.fixture(scope="module")
def sensors(
    ble_bed: TestbedInfo, ble_adapter: Callable[[], AdapterInfo]
) -> Iterator[dict[str, DeviceProcess]]:
    """The sensors of SPECS, each on a fresh adapter of the session's bed."""
    specs = {role: spec.with_changes(adapter=ble_adapter().name) for role, spec in SPECS.items()}
    with DeviceFleet(ble_bed, ble_bed.state_dir / "cgm") as fleet:
        fleet.start_many(list(specs.values()))
        yield {role: fleet.devices[spec.adapter] for role, spec in specs.items()}


@dataclass
class CgmLink:
    client: BleakClient
    records: list[bytes] = field(default_factory=list)
    racp: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    socp: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    async def request(self, data: bytes) -> bytes:
        self.records.clear()
        await self.client.write_gatt_char(uuids.RACP, data, response=True)
        return await asyncio.wait_for(self.racp.get(), 5)

    async def ops(self, data: bytes) -> bytes:
        await self.client.write_gatt_char(uuids.CGM_SPECIFIC_OPS_CONTROL_POINT, data, response=True)
        return await asyncio.wait_for(self.socp.get(), 5)

    @property
    def offsets(self) -> list[int]:
        return [m.time_offset_minutes or 0 for r in self.records for m in parse_cgm_measurement(r)]


@asynccontextmanager
async def cgm_link(info: TestbedInfo, address: str) -> AsyncIterator[CgmLink]:
    async with Central(info).connect(address) as client:
        link = CgmLink(client)
        await client.start_notify(
            uuids.CGM_MEASUREMENT, lambda _c, d: link.records.append(bytes(d))
        )
        await client.start_notify(uuids.RACP, lambda _c, d: link.racp.put_nowait(bytes(d)))
        await client.start_notify(
            uuids.CGM_SPECIFIC_OPS_CONTROL_POINT, lambda _c, d: link.socp.put_nowait(bytes(d))
        )
        yield link


def status(opcode: int, code: Code) -> bytes:
    return bytes((0x06, 0x00, opcode, code))


def count(n: int) -> bytes:
    return bytes((0x05, 0x00)) + n.to_bytes(2, "little")


@pytest.mark.parametrize(
    ("request_hex", "expected"),
    [
        ("0101", list(range(5, 55, 5))),  # all
        ("0103011e00", [30, 35, 40, 45, 50]),  # time offset >= 30
        ("0103011f00", [35, 40, 45, 50]),  # >= last + 1: the gateway's incremental request
        ("0102010a00", [5, 10]),  # <= 10
        ("0104010a001400", [10, 15, 20]),  # within 10..20
        ("0105", [5]),  # first
        ("0106", [50]),  # last
    ],
)
def test_report_records_by_time_offset(
    cgm_bed: TestbedInfo, sensors: dict[str, DeviceProcess], request_hex: str, expected: list[int]
) -> None:
    async def body() -> None:
        async with cgm_link(cgm_bed, sensors["plain"].address) as link:
            assert await link.request(bytes.fromhex(request_hex)) == status(1, Code.SUCCESS)
            assert link.offsets == expected

    asyncio.run(body())


def test_racp_counts_and_error_codes(
    cgm_bed: TestbedInfo, sensors: dict[str, DeviceProcess]
) -> None:
    async def body() -> None:
        async with cgm_link(cgm_bed, sensors["plain"].address) as link:
            assert await link.request(bytes.fromhex("0401")) == count(10)
            assert await link.request(bytes.fromhex("0403012d00")) == count(2)  # >= 45
            assert await link.request(bytes.fromhex("0403016400")) == count(0)
            # Nothing at or after offset 100.
            assert await link.request(bytes.fromhex("0103016400")) == status(
                1, Code.NO_RECORDS_FOUND
            )
            assert link.records == []
            # Filter type 0x02 (user facing time) is not a CGM filter.
            user_time = bytes.fromhex("010302") + bytes.fromhex("ea070701080000")
            assert await link.request(user_time) == status(1, Code.OPERAND_NOT_SUPPORTED)
            assert await link.request(bytes.fromhex("0107")) == status(1, Code.INVALID_OPERATOR)
            assert await link.request(bytes.fromhex("0100")) == status(1, Code.INVALID_OPERATOR)
            assert await link.request(bytes.fromhex("010301")) == status(1, Code.INVALID_OPERAND)
            assert await link.request(bytes.fromhex("0901")) == status(9, Code.OPCODE_NOT_SUPPORTED)
            assert await link.request(bytes.fromhex("0300")) == status(3, Code.SUCCESS)  # abort

    asyncio.run(body())


def test_feature_status_session_start_and_run_time(
    cgm_bed: TestbedInfo, sensors: dict[str, DeviceProcess]
) -> None:
    async def body() -> None:
        async with cgm_link(cgm_bed, sensors["plain"].address) as link:
            c = link.client
            plain = parse_cgm_feature(bytes(await c.read_gatt_char(uuids.CGM_FEATURE)))
            assert CgmFeature.E2E_CRC not in plain.supported
            start = parse_cgm_session_start_time(
                bytes(await c.read_gatt_char(uuids.CGM_SESSION_START_TIME))
            )
            assert start == CgmSessionStartTime(S0, 60, DstOffset.DAYLIGHT_TIME)
            assert parse_cgm_session_run_time(
                bytes(await c.read_gatt_char(CGM_SESSION_RUN_TIME))
            ) == (336, False)
        async with cgm_link(cgm_bed, sensors["crc"].address) as link:
            c = link.client
            features = parse_cgm_feature(bytes(await c.read_gatt_char(uuids.CGM_FEATURE)))
            assert CgmFeature.E2E_CRC in features.supported
            st = parse_cgm_status(bytes(await c.read_gatt_char(uuids.CGM_STATUS)))
            assert st.e2e_crc and Condition.SESSION_STOPPED not in st.conditions
            start = parse_cgm_session_start_time(
                bytes(await c.read_gatt_char(uuids.CGM_SESSION_START_TIME))
            )
            assert start.e2e_crc
            assert await link.request(bytes.fromhex("0101")) == status(1, Code.SUCCESS)
            records = [m for r in link.records for m in parse_cgm_measurement(r)]
            assert [m.time_offset_minutes for m in records] == [0, 5, 10]
            assert all(m.details["e2e_crc"] for m in records)

    asyncio.run(body())


def test_e2e_crc_writes_and_session_start_stop(
    cgm_bed: TestbedInfo, sensors: dict[str, DeviceProcess]
) -> None:
    async def body() -> None:
        async with cgm_link(cgm_bed, sensors["crc"].address) as link:
            c = link.client
            written = CgmSessionStartTime(
                datetime(2026, 7, 3, 12, 0), -300, DstOffset.STANDARD_TIME, e2e_crc=True
            )
            data = encode_cgm_session_start_time(written)
            with pytest.raises(BleakGATTProtocolError) as missing:
                await c.write_gatt_char(uuids.CGM_SESSION_START_TIME, data[:-2], response=True)
            assert missing.value.code == 0x80  # CGMS: missing CRC
            corrupt = data[:-1] + bytes((data[-1] ^ 1,))
            with pytest.raises(BleakGATTProtocolError) as invalid:
                await c.write_gatt_char(uuids.CGM_SESSION_START_TIME, corrupt, response=True)
            assert invalid.value.code == 0x81  # CGMS: invalid CRC
            await c.write_gatt_char(uuids.CGM_SESSION_START_TIME, data, response=True)
            now_offset = parse_cgm_status(
                bytes(await c.read_gatt_char(uuids.CGM_STATUS))
            ).time_offset_minutes
            start = parse_cgm_session_start_time(
                bytes(await c.read_gatt_char(uuids.CGM_SESSION_START_TIME))
            )
            # The sensor keeps "written time − time since the session began".
            assert start.time_zone_minutes == -300
            assert start.start is not None
            assert written.start is not None
            elapsed = written.start - start.start
            assert abs(elapsed - timedelta(minutes=now_offset)) <= timedelta(minutes=1)

            def socp(op: SocpOpcode) -> bytes:
                return encode_socp_request(SocpRequest(op, e2e_crc=True))

            def answer(op: SocpOpcode, code: SocpResponseCode) -> SocpResponse:
                return SocpResponse(op, code, e2e_crc=True)

            start_session = socp(SocpOpcode.START_SESSION)
            with pytest.raises(BleakGATTProtocolError) as no_crc:
                await c.write_gatt_char(
                    uuids.CGM_SPECIFIC_OPS_CONTROL_POINT, start_session[:1], response=True
                )
            assert no_crc.value.code == 0x80
            # Already running: stop first.
            assert parse_socp_response(await link.ops(start_session), e2e_crc=True) == answer(
                SocpOpcode.START_SESSION, SocpResponseCode.PROCEDURE_NOT_COMPLETED
            )
            stop = socp(SocpOpcode.STOP_SESSION)
            assert parse_socp_response(await link.ops(stop), e2e_crc=True) == answer(
                SocpOpcode.STOP_SESSION, SocpResponseCode.SUCCESS
            )
            st = parse_cgm_status(bytes(await c.read_gatt_char(uuids.CGM_STATUS)))
            assert Condition.SESSION_STOPPED in st.conditions
            assert parse_socp_response(await link.ops(start_session), e2e_crc=True) == answer(
                SocpOpcode.START_SESSION, SocpResponseCode.SUCCESS
            )
            # A new session: offsets restart, the old session's records are gone.
            assert await link.request(bytes.fromhex("0401")) == count(0)
            assert await link.request(bytes.fromhex("0101")) == status(1, Code.NO_RECORDS_FOUND)
            unknown = socp(SocpOpcode.GET_COMMUNICATION_INTERVAL)
            assert parse_socp_response(await link.ops(unknown), e2e_crc=True) == answer(
                SocpOpcode.GET_COMMUNICATION_INTERVAL, SocpResponseCode.OPCODE_NOT_SUPPORTED
            )

    asyncio.run(body())


def test_spec_round_trips_cgm_fields() -> None:
    spec = SPECS["plain"]
    again = DeviceSpec.from_json(spec.to_json())
    assert again == replace(spec)
    assert again.session_start == S0 and again.dst_offset is DstOffset.DAYLIGHT_TIME
