"""CGM pieces the gateway relies on, without Bluetooth: the RACP time-offset filter
(CGMS §3.6), the CGM Specific Ops Control Point and Session Run Time codecs (CGMS
§3.5, §3.7), session start → UTC, reading identity, and the per-session cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_profiles.cgm import (
    CgmSessionStartTime,
    SocpOpcode,
    SocpRequest,
    SocpResponse,
    SocpResponseCode,
    cgm_measurement,
    encode_cgm_measurement,
    encode_cgm_session_run_time,
    encode_socp_request,
    encode_socp_response,
    parse_cgm_measurement,
    parse_cgm_session_run_time,
    parse_socp_request,
    parse_socp_response,
)
from device_profiles.current_time import DST_CODES, DST_MINUTES, DstOffset
from device_profiles.errors import MalformedPayloadError
from device_profiles.racp import (
    RacpFilterType,
    RacpOpcode,
    RacpOperator,
    RacpRequest,
    encode_racp_request,
    parse_racp_request,
    report_number_from_time_offset,
    report_records_from_time_offset,
)
from gateway.store import DeviceStore, GatewayDB, PairedDevice
from readings import CgmSession, TimeContext, session_start_to_utc, to_reading

u16 = st.integers(0, 0xFFFF)
UTC_ZONE = ZoneInfo("UTC")


@given(u16)
def test_time_offset_requests_are_the_cgms_bytes(offset: int) -> None:
    data = report_records_from_time_offset(offset)
    assert data == bytes((1, 3, 1)) + offset.to_bytes(2, "little")
    assert parse_racp_request(data) == RacpRequest(
        RacpOpcode.REPORT_STORED_RECORDS,
        RacpOperator.GREATER_THAN_OR_EQUAL,
        RacpFilterType.TIME_OFFSET,
        (offset,),
    )
    assert report_number_from_time_offset(offset)[0] == RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS


@st.composite
def time_offset_requests(draw: st.DrawFn) -> RacpRequest:
    opcode = draw(
        st.sampled_from(
            [
                RacpOpcode.REPORT_STORED_RECORDS,
                RacpOpcode.DELETE_STORED_RECORDS,
                RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS,
            ]
        )
    )
    operator = draw(
        st.sampled_from(
            [
                RacpOperator.LESS_THAN_OR_EQUAL,
                RacpOperator.GREATER_THAN_OR_EQUAL,
                RacpOperator.WITHIN_RANGE,
            ]
        )
    )
    if operator is RacpOperator.WITHIN_RANGE:
        low = draw(u16)
        operand: tuple[int, ...] = (low, draw(st.integers(low, 0xFFFF)))
    else:
        operand = (draw(u16),)
    return RacpRequest(opcode, operator, RacpFilterType.TIME_OFFSET, operand)


@given(time_offset_requests())
def test_racp_time_offset_operand_round_trips(request: RacpRequest) -> None:
    data = encode_racp_request(request)
    assert parse_racp_request(data) == request
    assert encode_racp_request(parse_racp_request(data)) == data


socp_opcodes = st.one_of(st.sampled_from(list(SocpOpcode)), st.integers(0x1D, 0xFF))


@given(socp_opcodes, st.booleans())
def test_socp_request_round_trips(opcode: int, crc: bool) -> None:
    known = SocpOpcode(opcode) if opcode in SocpOpcode._value2member_map_ else opcode
    request = SocpRequest(known, b"", crc)
    assert parse_socp_request(encode_socp_request(request), e2e_crc=crc) == request


@given(socp_opcodes, st.sampled_from(list(SocpResponseCode)), st.booleans())
def test_socp_response_round_trips(opcode: int, code: SocpResponseCode, crc: bool) -> None:
    known = SocpOpcode(opcode) if opcode in SocpOpcode._value2member_map_ else opcode
    response = SocpResponse(known, code, crc)
    assert parse_socp_response(encode_socp_response(response), e2e_crc=crc) == response


@given(st.sampled_from(list(SocpResponseCode)), st.integers(0, 8 * 5 - 1))
def test_any_single_bit_error_in_a_crc_protected_socp_value_is_rejected(
    code: SocpResponseCode, bit: int
) -> None:
    data = bytearray(encode_socp_response(SocpResponse(SocpOpcode.START_SESSION, code, True)))
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(MalformedPayloadError):
        parse_socp_response(bytes(data), e2e_crc=True)


def test_socp_start_session_with_an_operand_is_invalid() -> None:
    with pytest.raises(MalformedPayloadError) as exc:
        parse_socp_request(bytes((SocpOpcode.START_SESSION, 1)))
    assert getattr(exc.value, "response_code", None) is SocpResponseCode.INVALID_OPERAND


@given(u16, st.booleans())
def test_session_run_time_round_trips(hours: int, crc: bool) -> None:
    assert parse_cgm_session_run_time(encode_cgm_session_run_time(hours, crc)) == (hours, crc)


@given(u16, st.integers(0, 2045), st.booleans())
def test_cgm_record_builder_round_trips(offset: int, mg_dl: int, crc: bool) -> None:
    m = cgm_measurement(time_offset_minutes=offset, mg_dl=mg_dl, e2e_crc=crc)
    assert parse_cgm_measurement(encode_cgm_measurement(m)) == (m,)


# --- time and identity --------------------------------------------------------------

starts = st.datetimes(datetime(2020, 1, 1), datetime(2035, 12, 31)).map(
    lambda d: d.replace(microsecond=0)
)


@given(starts, st.integers(-48, 56), st.sampled_from([c for c in DST_CODES if c != 255]))
def test_session_start_to_utc_applies_zone_and_dst(start: datetime, tz: int, dst: int) -> None:
    minutes = DST_MINUTES[DST_CODES[dst]]
    utc = session_start_to_utc(
        start, time_zone_minutes=tz * 15, dst_minutes=minutes, zone=ZoneInfo("Asia/Tokyo")
    )
    assert utc == (start - timedelta(minutes=tz * 15 + minutes)).replace(tzinfo=UTC)


def test_unknown_zone_or_dst_falls_back_to_the_gateway_zone() -> None:
    start = datetime(2026, 7, 1, 8, 0)
    berlin = ZoneInfo("Europe/Berlin")
    for tz, dst in ((None, 60), (60, None)):
        assert session_start_to_utc(
            start, time_zone_minutes=tz, dst_minutes=dst, zone=berlin
        ) == datetime(2026, 7, 1, 6, 0, tzinfo=UTC)


def _session(
    start: datetime, tz: int | None = 60, dst: DstOffset = DstOffset.DAYLIGHT_TIME
) -> CgmSession:
    session = CgmSession.from_start_time(CgmSessionStartTime(start, tz, dst), UTC_ZONE)
    assert session is not None
    return session


@given(u16, st.datetimes(datetime(2026, 1, 1), datetime(2027, 1, 1)))
def test_cgm_reading_identity_and_time_do_not_depend_on_when_it_was_received(
    offset: int, received: datetime
) -> None:
    s0 = _session(datetime(2026, 7, 1, 8, 0))
    m = cgm_measurement(time_offset_minutes=offset, mg_dl=120)
    first = to_reading("AA", m, TimeContext(UTC_ZONE, None, received.replace(tzinfo=UTC)), s0)
    again = to_reading("AA", m, TimeContext(UTC_ZONE, None, datetime.now(UTC)), s0)
    assert first.id == again.id and first.time == again.time
    assert first.time == datetime(2026, 7, 1, 6, 0, tzinfo=UTC) + timedelta(minutes=offset)
    assert first.device_time == (datetime(2026, 7, 1, 8, 0) + timedelta(minutes=offset)).isoformat()


def test_cgm_identities_differ_by_offset_session_and_device() -> None:
    ctx = TimeContext(UTC_ZONE, None, datetime.now(UTC))
    s0 = _session(datetime(2026, 7, 1, 8, 0))
    s1 = _session(datetime(2026, 7, 1, 9, 0))  # same wall time as s0 + 60 min
    r = [
        to_reading("AA", cgm_measurement(time_offset_minutes=o, mg_dl=100), ctx, s)
        for s, o in ((s0, 60), (s1, 0), (s0, 65))
    ]
    r.append(to_reading("BB", cgm_measurement(time_offset_minutes=60, mg_dl=100), ctx, s0))
    assert r[0].device_time == r[1].device_time  # same sensor-local wall time...
    assert len({x.id for x in r}) == 4  # ...but another offset: another reading


def test_session_key_round_trips() -> None:
    s0 = _session(datetime(2026, 7, 1, 8, 0), tz=None, dst=DstOffset.UNKNOWN)
    assert CgmSession.from_key(s0.key, UTC_ZONE) == s0
    assert CgmSession.from_key("zz", UTC_ZONE) is None


def test_cursor_is_per_session(tmp_path: Path) -> None:
    db = GatewayDB(tmp_path / "gw.sqlite3")
    devices = DeviceStore(db)
    devices.add(PairedDevice("AA", "cgm"))

    def advance(cursor: int, session: str) -> tuple[int | None, str | None]:
        with db.transaction() as conn:
            devices.advance(conn, "AA", cursor=cursor, last_device_time=None, session=session)
        d = devices.get("AA")
        assert d is not None
        return d.cursor, d.session

    assert advance(300, "s0") == (300, "s0")
    assert advance(200, "s0") == (300, "s0")  # never back within a session
    assert advance(5, "s1") == (5, "s1")  # a new session starts over
    assert advance(10, "s1") == (10, "s1")
    db.close()


def test_state_file_without_the_session_column_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE devices (address TEXT PRIMARY KEY, profile TEXT NOT NULL, name TEXT, "
            "manufacturer TEXT, model TEXT, serial TEXT, firmware TEXT, patient TEXT, "
            "paired_at TEXT NOT NULL, cursor INTEGER, last_device_time TEXT, last_sync_at TEXT, "
            "last_sync_readings INTEGER, battery_percent INTEGER, skew_s REAL, last_error TEXT)"
        )
        conn.execute(
            "INSERT INTO devices (address, profile, paired_at, cursor) VALUES ('A', 'glucose-meter', 'x', 7)"
        )
    db = GatewayDB(path)
    device = DeviceStore(db).get("A")
    assert device is not None and device.cursor == 7 and device.session is None
    db.close()
