"""Malformed device records in the gateway, without radio: what becomes an event, when
the cursor may pass a record, and that the event and the cursor commit together.

The BLE tests (``test_gateway_sync_ble.py``) run the same path through BlueZoo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest

from device_profiles import uuids
from device_profiles.cgm import (
    CgmSessionStartTime,
    cgm_measurement,
    encode_cgm_measurement,
)
from device_profiles.current_time import DstOffset
from device_profiles.glucose import encode_glucose_measurement, glucose_measurement
from device_profiles.profiles import get_profile
from gateway.outbox import EVENT, READING, Outbox
from gateway.store import DeviceStore, GatewayDB, PairedDevice
from gateway.sync import RecordBuffer
from readings import (
    DeviceRecordMalformed,
    Event,
    Reading,
    RecordNumber,
    TimeContext,
    parser_for,
    readable_record_number,
)

METER = "00:00:00:00:0A:01"
T0 = datetime(2026, 11, 20, 6, 0)
_event = msgspec.json.Decoder(Event)
_reading = msgspec.json.Decoder(Reading)


def glucose_record(seq: int) -> bytes:
    return encode_glucose_measurement(
        glucose_measurement(sequence=seq, device_time=T0 + timedelta(minutes=seq), mg_dl=100)
    )


def cut(record: bytes) -> bytes:
    """The simulator's corrupt memory slot: cut off inside the base time."""
    return record[:5]


def cgm_record(offset: int, *, bad_crc: bool = False) -> bytes:
    data = encode_cgm_measurement(
        cgm_measurement(time_offset_minutes=offset, mg_dl=120, e2e_crc=True)
    )
    return data[:-1] + bytes((data[-1] ^ 0xFF,)) if bad_crc else data


class Gateway:
    """One gateway state file; ``session`` builds the RecordBuffer of one sync."""

    def __init__(self, tmp_path: Path, profile_id: str, cursor: int | None = None) -> None:
        self.db = GatewayDB(tmp_path / "gw.sqlite3")
        self.devices = DeviceStore(self.db)
        self.outbox = Outbox(self.db)
        self.profile = get_profile(profile_id)
        self.devices.add(PairedDevice(address=METER, profile=profile_id))
        if cursor is not None:
            with self.db.transaction() as conn:
                self.devices.advance(conn, METER, cursor=cursor, last_device_time=None)

    def session(self, skew_s: float | None = 2.0) -> RecordBuffer:
        device = self.devices.get(METER)
        assert device is not None
        return RecordBuffer(
            device=device,
            profile=self.profile,
            parse=parser_for(self.profile),
            clock=TimeContext(ZoneInfo("Europe/Berlin"), skew_s, datetime.now(UTC)),
            device_now=T0 + timedelta(days=1),
            db=self.db,
            devices=self.devices,
            outbox=self.outbox,
            commit_every=250,
        )

    def sync(self, *records: bytes) -> RecordBuffer:
        buffer = self.session()
        for raw in records:
            buffer.add(raw)
        buffer.flush()
        return buffer

    @property
    def cursor(self) -> int | None:
        device = self.devices.get(METER)
        assert device is not None
        return device.cursor

    def rows(self) -> tuple[list[Reading], list[Event]]:
        rows = self.db.conn.execute("SELECT kind, payload FROM outbox ORDER BY id").fetchall()
        readings = [_reading.decode(p) for k, p in rows if k == READING]
        events = [_event.decode(p) for k, p in rows if k == EVENT]
        return readings, events


@pytest.mark.parametrize(
    ("characteristic", "raw", "number"),
    [
        # Glucose Measurement: flags, then the sequence number (GSS §3.104), any flags.
        (uuids.GLUCOSE_MEASUREMENT, bytes.fromhex("032a00ea07"), RecordNumber(seq=42)),
        (uuids.GLUCOSE_MEASUREMENT, bytes.fromhex("ffffff"), RecordNumber(seq=0xFFFF)),
        (uuids.GLUCOSE_MEASUREMENT, bytes.fromhex("032a"), RecordNumber()),
        (uuids.GLUCOSE_MEASUREMENT, b"", RecordNumber()),
        # CGM Measurement: one size-framed record, time offset at bytes 4-5.
        (uuids.CGM_MEASUREMENT, bytes.fromhex("06007800 1e00"), RecordNumber(time_offset=30)),
        (uuids.CGM_MEASUREMENT, cgm_record(300, bad_crc=True), RecordNumber(time_offset=300)),
        # Two records in one notification, a size byte that does not frame it, too short.
        (uuids.CGM_MEASUREMENT, cgm_record(5) + cgm_record(10), RecordNumber()),
        (uuids.CGM_MEASUREMENT, bytes.fromhex("09007800 1e00"), RecordNumber()),
        (uuids.CGM_MEASUREMENT, bytes.fromhex("030078"), RecordNumber()),
        # No RACP number in a blood-pressure record.
        (uuids.BLOOD_PRESSURE_MEASUREMENT, bytes.fromhex("007800500064"), RecordNumber()),
    ],
)
def test_readable_record_number(characteristic: str, raw: bytes, number: RecordNumber) -> None:
    assert readable_record_number(characteristic, raw) == number


def test_malformed_newest_record_is_reported_and_the_cursor_passes_it(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, "glucose-meter", cursor=40)
    bad = cut(glucose_record(43))
    buffer = gw.sync(glucose_record(41), glucose_record(42), bad)
    assert (buffer.result.readings, buffer.result.malformed, buffer.result.reported) == (2, 1, 1)
    assert gw.cursor == 43
    readings, events = gw.rows()
    assert [r.seq for r in readings] == [41, 42]
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, DeviceRecordMalformed)
    assert event == DeviceRecordMalformed(
        device=METER,
        at=event.at,
        characteristic=uuids.GLUCOSE_MEASUREMENT,
        raw=bad.hex(),
        reason="truncated at field 'base_time' (need 7 bytes at offset 3, have 2)",
        profile="glucose-meter",
        seq=43,
        skew_s=2.0,
        zone="Europe/Berlin",
    )
    assert abs(event.at - datetime.now(UTC)) < timedelta(minutes=1)
    assert gw.devices.errors(METER) == {"malformed": 1}


def test_first_record_after_the_cursor_may_be_the_malformed_one(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, "glucose-meter", cursor=7)
    gw.sync(cut(glucose_record(8)))
    assert gw.cursor == 8


@pytest.mark.parametrize(
    ("cursor", "bad"),
    [
        (7, cut(glucose_record(0xFFFF))),  # a garbage number would skip every later record
        (7, cut(glucose_record(9))),  # a gap: 8 may still be stored after it
        (7, cut(glucose_record(5))),  # below the cursor
        (None, cut(glucose_record(1))),  # first download, nothing to compare with
        (7, bytes.fromhex("03")),  # no number at all
    ],
)
def test_cursor_stays_unless_the_number_follows_the_last_one(
    tmp_path: Path, cursor: int | None, bad: bytes
) -> None:
    gw = Gateway(tmp_path, "glucose-meter", cursor=cursor)
    buffer = gw.sync(bad)
    assert gw.cursor == cursor
    _, events = gw.rows()
    assert buffer.result.reported == 1 and len(events) == 1  # reported all the same


def test_a_record_sent_again_is_reported_once(tmp_path: Path) -> None:
    # A meter ignoring the RACP filter (or a newest record the cursor cannot pass) sends
    # the same bytes at every sync.
    gw = Gateway(tmp_path, "glucose-meter-ignores-filter")
    bad = cut(glucose_record(1))
    first = gw.sync(bad, glucose_record(2))
    second = gw.sync(bad, glucose_record(2), glucose_record(3))
    assert (first.result.reported, second.result.reported) == (1, 0)
    assert second.result.malformed == 1 and second.result.duplicates == 1
    readings, events = gw.rows()
    assert [r.seq for r in readings] == [2, 3] and len(events) == 1
    assert gw.devices.errors(METER) == {"malformed": 2}  # every receipt is counted
    # Unpairing forgets it: a re-paired meter reports it again.
    assert gw.devices.remove(METER)
    assert gw.db.conn.execute("SELECT count(*) FROM reported_records").fetchone() == (0,)


def test_event_and_cursor_commit_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = Gateway(tmp_path, "glucose-meter", cursor=7)
    buffer = gw.session()
    buffer.add(glucose_record(8))
    buffer.add(cut(glucose_record(9)))

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("power cut before the commit")

    monkeypatch.setattr(gw.devices, "advance", crash)
    with pytest.raises(RuntimeError):
        buffer.flush()
    assert gw.cursor == 7 and gw.outbox.depth() == 0
    assert gw.db.conn.execute("SELECT count(*) FROM reported_records").fetchone() == (0,)
    monkeypatch.undo()
    gw.sync(glucose_record(8), cut(glucose_record(9)))  # the next sync fetches both again
    readings, events = gw.rows()
    assert gw.cursor == 9 and len(readings) == 1 and len(events) == 1


def test_bp_cuff_record_is_reported_without_a_number(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, "bp-cuff")
    gw.sync(bytes.fromhex("1e7800"))  # time stamp announced, values cut short
    _, events = gw.rows()
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, DeviceRecordMalformed)
    assert event.characteristic == uuids.BLOOD_PRESSURE_MEASUREMENT
    assert (event.raw, event.seq, event.time_offset_min, event.profile) == (
        "1e7800",
        None,
        None,
        "bp-cuff",
    )
    assert gw.cursor is None


SESSION = CgmSessionStartTime(T0, 60, DstOffset.STANDARD_TIME, e2e_crc=True)


@pytest.mark.parametrize(
    ("cursor", "current", "bad_offset", "expected"),
    [
        (None, 100, 30, 30),  # below the sensor's "now": every record up to it was sent
        (20, 100, 30, 30),
        (20, 30, 30, 20),  # at the sensor's "now": one more may be stored at that minute
        (20, None, 30, 20),  # "now" unknown
        (40, 100, 30, 40),  # below the cursor
    ],
)
def test_cgm_cursor_passes_a_corrupt_record_below_the_sensor_offset(
    tmp_path: Path, cursor: int | None, current: int | None, bad_offset: int, expected: int | None
) -> None:
    gw = Gateway(tmp_path, "cgm")
    if cursor is not None:
        buffer = gw.session()
        buffer.start_cgm_session(SESSION, e2e_crc=True, current_offset=None)
        buffer.add(cgm_record(cursor))
        buffer.flush()
        assert gw.cursor == cursor
    buffer = gw.session()
    buffer.start_cgm_session(SESSION, e2e_crc=True, current_offset=current)
    buffer.add(cgm_record(bad_offset, bad_crc=True))
    buffer.flush()
    assert gw.cursor == expected
    _, events = gw.rows()
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, DeviceRecordMalformed)
    assert event.time_offset_min == bad_offset and event.seq is None
    assert event.reason.startswith("E2E-CRC mismatch")
    assert event.cgm_session is not None and buffer.session is not None
    assert event.cgm_session == buffer.session.key
