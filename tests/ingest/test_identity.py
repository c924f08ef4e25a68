"""readings.identity: the natural key of a source record and its UUID (no services).

The oracle for the recipe is written here independently of the module (hashlib over the
documented key text, docs/wire-format.md), and one id is pinned as a literal: it was
issued by the code before record types and users existed, and must never change.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest

from device_profiles.glucose import parse_glucose_measurement
from device_profiles.model import Component, Kind
from readings import (
    CgmSession,
    RecordKey,
    RecordType,
    TimeContext,
    decode_batch,
    reading_id,
    to_reading,
    wire,
)
from simulators.patients import DiabetesType, PatientProfile, simulate


def oracle(*fields: str) -> str:
    """The documented recipe: SHA-256 of the U+001F-joined text, 16 bytes, version
    nibble 5, RFC 4122 variant."""
    b = bytearray(hashlib.sha256("\x1f".join(fields).encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(b)))


def test_ids_issued_before_record_types_and_users_are_unchanged() -> None:
    # Computed by readings.wire.reading_id at commit 35b33b6 (before this module).
    assert reading_id("a", "glucose", "x", 1) == "fab505df-3d42-5ef5-929f-5371a1db588f"
    key = RecordKey("meter-1", Kind.GLUCOSE, None, "2026-11-20T08:30:00", 5)
    assert key.reading_id == oracle("hv-id-1", "meter-1", "glucose", "2026-11-20T08:30:00", "5")
    # The kind's usual record type named explicitly is the same record.
    assert (
        RecordKey("meter-1", Kind.GLUCOSE, RecordType.STRIP, "2026-11-20T08:30:00", 5).reading_id
        == key.reading_id
    )


def test_record_type_and_user_are_part_of_the_identity() -> None:
    when = "2024-03-05T08:20:00"
    strip = RecordKey("import:libreview:S1", Kind.GLUCOSE, RecordType.STRIP, when)
    scan = RecordKey("import:libreview:S1", Kind.GLUCOSE, RecordType.SCAN, when)
    assert scan.reading_id == oracle(
        "hv-id-1", "import:libreview:S1", "glucose", when, "", "type=scan"
    )
    assert strip.reading_id != scan.reading_id
    one = RecordKey("cuff", Kind.BLOOD_PRESSURE, None, when, None, 1)
    two = RecordKey("cuff", Kind.BLOOD_PRESSURE, None, when, None, 2)
    assert one.reading_id == oracle("hv-id-1", "cuff", "blood_pressure", when, "", "user=1")
    assert (
        len(
            {
                one.reading_id,
                two.reading_id,
                RecordKey("cuff", Kind.BLOOD_PRESSURE, None, when).reading_id,
            }
        )
        == 3
    )


def test_the_gateway_identity_ignores_what_it_computes() -> None:
    """Skew and zone change the time, never the id; a control-solution test is its own
    record type."""
    # Glucose Measurement: flags 0x02, seq 7, 2026-11-20 08:30:00, 112 mg/dL (kg/L),
    # type/location 0x11 (capillary whole blood, finger); then the same as control
    # solution (type 10, location 4: 0x4A).
    head = bytes.fromhex("020700ea070b14081e0070b0")
    patient, control = (
        parse_glucose_measurement(head + b"\x11"),
        parse_glucose_measurement(head + b"\x4a"),
    )
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    a = to_reading("m", patient, TimeContext(ZoneInfo("Europe/Berlin"), 0.0, now))
    b = to_reading("m", patient, TimeContext(ZoneInfo("America/New_York"), 600.0, now))
    assert a.time != b.time and a.id == b.id
    assert a.id == oracle("hv-id-1", "m", "glucose", "2026-11-20T08:30:00", "7")
    c = to_reading("m", control, TimeContext(ZoneInfo("Europe/Berlin"), 0.0, now))
    assert c.record_type is RecordType.CONTROL
    assert c.id == oracle("hv-id-1", "m", "glucose", "2026-11-20T08:30:00", "7", "type=control")


def test_cgm_key_is_session_and_offset() -> None:
    key = RecordKey.cgm("cgm-1", datetime(2026, 11, 18, 9, 0), 3 * 1440 + 5)
    assert key.device_time == "2026-11-21T09:05:00" and key.sequence == 3 * 1440 + 5
    assert key.reading_id == oracle("hv-id-1", "cgm-1", "cgm", "2026-11-21T09:05:00", "4325")


def test_simulated_readings_carry_the_gateway_identity() -> None:
    """A simulated patient's wire readings (what the fleet simulator publishes) have the
    ids the gateway gives the same records (``to_reading`` of their Measurements)."""
    data = simulate(
        PatientProfile("id-t1", diabetes=DiabetesType.TYPE1, seed=3), 2, date(2026, 3, 2)
    )
    now = datetime(2026, 3, 10, tzinfo=UTC)
    clock = TimeContext(ZoneInfo("UTC"), None, now)
    cgm, smbg = data.cgm, data.smbg
    starts = cgm.session_start.astype("datetime64[s]").astype(datetime)
    sim = cgm.readings("cgm-x")
    for i, m in list(enumerate(cgm.measurements()))[:: max(1, len(sim) // 50)]:
        session = CgmSession(starts[i], now, "k")
        assert to_reading("cgm-x", m, clock, session).id == sim[i].id
    sim = smbg.readings("meter-x")
    assert [to_reading("meter-x", m, clock).id for m in smbg.measurements()] == [r.id for r in sim]


def test_record_type_on_the_wire_is_optional_and_checked() -> None:
    old = (
        b'{"schema":"homevitals.readings/1","gateway":"gw-1","sent_at":"2026-11-20T08:00:00Z",'
        b'"readings":[{"id":"fab505df-3d42-5ef5-929f-5371a1db588f","device":"a","kind":"glucose",'
        b'"time":"2026-11-20T07:30:00Z","values":{"glucose":112.0}}]}'
    )
    (reading,) = decode_batch(old).readings
    assert reading.record_type is None
    scan = msgspec.structs.replace(reading, record_type=RecordType.SCAN)
    batch = wire.ReadingsBatch(wire.SCHEMA_READINGS, "gw-1", reading.time, [scan])
    assert b'"record_type":"scan"' in wire.encode(batch)
    with pytest.raises(wire.WireError, match="record_type"):
        decode_batch(old.replace(b'"values"', b'"record_type":"historic","values"'))
    assert Component.GLUCOSE in reading.values
