"""``homevitals deadletters redecode``: device records the gateway could not parse, decoded
again with today's parsers, become the readings the gateway would have sent.

Decoding is compared with the gateway's own ``RecordBuffer`` on the same bytes; the
command runs against the real database (CliRunner, HOMEVITALS_DATABASE_URL)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import psycopg
import pytest
from click.testing import CliRunner, Result

from device_profiles import uuids
from device_profiles.cgm import CgmSessionStartTime, cgm_measurement, encode_cgm_measurement
from device_profiles.current_time import DstOffset
from device_profiles.glucose import encode_glucose_measurement, glucose_measurement
from device_profiles.model import Kind
from device_profiles.profiles import PROFILES, Quirk, get_profile
from gateway.outbox import EVENT, READING, Outbox
from gateway.store import DeviceStore, GatewayDB, PairedDevice
from gateway.sync import RecordBuffer
from homevitals.cli_ingest import deadletters
from homevitals.redecode import E2E_CRC_MISSING, StillMalformed, gateway_readings
from ingest.patients import enroll_patient
from ingest.pipeline import Message, process
from ingest.registry import BindingCache
from readings import TimeContext, device_time_to_utc, identity, parser_for, wire

T0 = datetime(2026, 11, 20, 6, 0)  # device-local wall time
BERLIN = ZoneInfo("Europe/Berlin")
SKEW = -3.0
SESSION = CgmSessionStartTime(T0, 60, DstOffset.STANDARD_TIME)
_event = msgspec.json.Decoder(wire.Event)
_reading = msgspec.json.Decoder(wire.Reading)


def glucose_record(seq: int, mg_dl: float = 100) -> bytes:
    return encode_glucose_measurement(
        glucose_measurement(sequence=seq, device_time=T0 + timedelta(minutes=seq), mg_dl=mg_dl)
    )


def cgm_record(offset: int, *, e2e_crc: bool = True, bad_crc: bool = False) -> bytes:
    data = encode_cgm_measurement(
        cgm_measurement(time_offset_minutes=offset, mg_dl=120, e2e_crc=e2e_crc)
    )
    return data[:-1] + bytes((data[-1] ^ 0xFF,)) if bad_crc else data


def month13(record: bytes) -> bytes:
    """The record dated month 13 of the year before (a vendor clock bug): base time is
    year u16 at bytes 3-4, month at byte 5."""
    year = int.from_bytes(record[3:5], "little") - 1
    return record[:3] + year.to_bytes(2, "little") + bytes((13,)) + record[6:]


def gateway_sync(
    tmp_path: Path, profile_id: str, *records: bytes, cgm_e2e: bool = False
) -> tuple[list[wire.Reading], list[wire.DeviceRecordMalformed]]:
    """What the gateway puts in its outbox for ``records`` (one session)."""
    db = GatewayDB(tmp_path / f"{profile_id}.sqlite3")
    devices, outbox, profile = DeviceStore(db), Outbox(db), get_profile(profile_id)
    devices.add(PairedDevice(address="00:00:00:00:0B:01", profile=profile_id))
    device = devices.get("00:00:00:00:0B:01")
    assert device is not None
    buffer = RecordBuffer(
        device=device,
        profile=profile,
        parse=parser_for(profile),
        clock=TimeContext(BERLIN, SKEW, datetime.now(UTC)),
        device_now=T0 + timedelta(days=1),
        db=db,
        devices=devices,
        outbox=outbox,
        commit_every=250,
    )
    if profile.family is Kind.CGM:
        buffer.start_cgm_session(SESSION, e2e_crc=cgm_e2e, current_offset=None)
    for raw in records:
        buffer.add(raw)
    buffer.flush()
    rows = db.conn.execute("SELECT kind, payload FROM outbox ORDER BY id").fetchall()
    db.close()
    events = [_event.decode(p) for k, p in rows if k == EVENT]
    assert all(isinstance(e, wire.DeviceRecordMalformed) for e in events)
    return [_reading.decode(p) for k, p in rows if k == READING], events


@pytest.mark.parametrize(
    ("profile_id", "good", "bad"),
    [
        ("glucose-meter", glucose_record(41), glucose_record(43)[:5]),
        ("glucose-meter-full-memory", glucose_record(5), glucose_record(6)[:5]),  # reversed seq
        ("cgm", cgm_record(30), cgm_record(35, bad_crc=True)),
    ],
)
def test_readings_are_the_ones_the_gateway_builds(
    tmp_path: Path, profile_id: str, good: bytes, bad: bytes
) -> None:
    """A record the gateway rejected, decodable after a fix, gives the very reading the
    gateway sends for those bytes (time, device time, id, details)."""
    readings, [event] = gateway_sync(tmp_path, profile_id, good, bad)
    # The gateway's own event (its skew, zone, CGM session), holding the good bytes.
    fixed = msgspec.structs.replace(event, raw=good.hex())
    assert list(gateway_readings(fixed)) == readings
    with pytest.raises(StillMalformed) as still:
        gateway_readings(event)
    assert still.value.reason == event.reason


def test_what_still_yields_no_reading(tmp_path: Path) -> None:
    # A CGM record without E2E-CRC from a sensor that has it: the gateway's rule holds.
    _, [event] = gateway_sync(tmp_path, "cgm", cgm_record(30, e2e_crc=False), cgm_e2e=True)
    assert event.reason == E2E_CRC_MISSING
    with pytest.raises(StillMalformed, match="E2E-CRC missing"):
        gateway_readings(event)
    _, [glucose_event] = gateway_sync(tmp_path, "glucose-meter", glucose_record(7)[:5])
    cases: dict[str, dict[str, Any]] = {
        "unknown device profile 'nope'": {"profile": "nope"},
        "not the measurement of glucose-meter": {"characteristic": uuids.CGM_MEASUREMENT},
        "unknown gateway zone": {"zone": None},
        # A far-future record (a full meter's fake HI): the gateway drops it.
        "dated after the device's own clock": {
            "raw": encode_glucose_measurement(
                glucose_measurement(sequence=7, device_time=datetime(2099, 1, 1), mg_dl=100)
            ).hex()
        },
    }
    for reason, changes in cases.items():
        with pytest.raises(StillMalformed, match=reason):
            gateway_readings(msgspec.structs.replace(glucose_event, **changes))
    no_session = msgspec.structs.replace(event, cgm_session=None, reason="?")
    with pytest.raises(StillMalformed, match="no CGM session"):
        gateway_readings(no_session)


# --- the command, on the real database ---------------------------------------------


@pytest.fixture()
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def rejected_event(device: str, raw: bytes, seq: int) -> wire.DeviceRecordMalformed:
    """A Glucose Measurement as the gateway reports one its parser rejected."""
    return wire.DeviceRecordMalformed(
        device=device,
        at=datetime(2026, 11, 21, 8, 0, tzinfo=UTC),
        characteristic=uuids.GLUCOSE_MEASUREMENT,
        raw=raw.hex(),
        reason="an older parser's reason",
        profile="glucose-meter",
        seq=seq,
        skew_s=SKEW,
        zone="Europe/Berlin",
    )


def park(conn: Any, gateway: str, *items: wire.Event) -> list[int]:
    """Send ``items`` through ingest; the ids of the dead letters they left."""
    before = conn.execute("SELECT coalesce(max(id), 0) FROM dead_letters").fetchone()[0]
    message = wire.EventsMessage(wire.SCHEMA_EVENT, gateway, list(items))
    process(conn, [Message(wire.events_topic(gateway), wire.encode(message))], BindingCache())
    rows = conn.execute("SELECT id FROM dead_letters WHERE id > %s ORDER BY id", (before,))
    return [int(r[0]) for r in rows]


def redecode(database_url: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    result = run_cli(database_url, tmp_path, *args, "--json")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def run_cli(database_url: str, tmp_path: Path, *args: str) -> Result:
    env = {"HOMEVITALS_DATABASE_URL": database_url, "HOMEVITALS_STATE_DIR": str(tmp_path)}
    result = CliRunner().invoke(deadletters, ["redecode", *args], env=env)
    assert result.exit_code == 0, result.output
    return result


def by_id(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["dead_letter"]: r for r in data["dead_letters"]}


def dead_letter(conn: Any, dl_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT reason, reprocessed_at IS NOT NULL, outcome FROM dead_letters WHERE id = %s",
        (dl_id,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def glucose_rows(conn: Any, device: str) -> list[tuple[Any, ...]]:
    return list(
        conn.execute(
            "SELECT reading_id::text, time, device_time, sequence, mgdl, patient_id, gateway_id"
            " FROM glucose WHERE device_id = %s ORDER BY time",
            (device,),
        ).fetchall()
    )


@pytest.mark.services
def test_decodable_record_becomes_the_patients_reading_once(
    conn: Any, database_url: str, tmp_path: Path
) -> None:
    gw, other_gw, dev = "gw-redecode-1", "gw-redecode-1b", "dev-redecode-1"
    first = enroll_patient(database_url, "pt-redecode-1", [gw])
    second = enroll_patient(database_url, "pt-redecode-1b", [other_gw])
    good, cut = glucose_record(43, mg_dl=187), glucose_record(44)[:5]
    [decodable, still_bad] = park(
        conn,
        gw,
        wire.DevicePaired(
            device=dev, at=datetime(2026, 11, 1, tzinfo=UTC), profile="glucose-meter"
        ),
        rejected_event(dev, good, 43),
        rejected_event(dev, cut, 44),
    )
    # The meter moves to another patient after the record was measured.
    park(
        conn,
        other_gw,
        wire.DevicePaired(
            device=dev, at=datetime(2026, 11, 22, tzinfo=UTC), profile="glucose-meter"
        ),
    )

    data = redecode(database_url, tmp_path, "--id", str(decodable), "--id", str(still_bad))
    results = by_id(data)
    assert data["dry_run"] is False
    assert results[decodable]["status"] == "stored"
    assert results[still_bad]["status"] == "still malformed"
    assert "truncated" in results[still_bad]["detail"]

    # The reading the gateway would have sent: Berlin wall time minus the skew, the
    # device's own time text and the identity of (device, kind, device time, seq).
    local = T0 + timedelta(minutes=43)
    expected_id = identity.reading_id(dev, Kind.GLUCOSE, local.isoformat(), 43)
    when = device_time_to_utc(local, zone=BERLIN, skew_s=SKEW)
    assert when == datetime(2026, 11, 20, 5, 43, 3, tzinfo=UTC)
    assert glucose_rows(conn, dev) == [(expected_id, when, local.isoformat(), 43, 187.0, first, gw)]
    assert first != second  # attributed to the patient bound at measurement time
    [shown] = results[decodable]["readings"]
    assert (shown["id"], shown["values"]) == (expected_id, {"glucose": 187.0})

    reason, marked, outcome = dead_letter(conn, decodable)
    assert (marked, outcome) == (True, "redecoded: 1 stored")
    reason, marked, outcome = dead_letter(conn, still_bad)
    assert (marked, outcome) == (False, None)
    assert reason.startswith("device record malformed (2A18, seq 44)")

    # Twice: the marked one is skipped, the open one tried again; nothing stored twice.
    again = by_id(redecode(database_url, tmp_path, "--id", str(decodable), "--id", str(still_bad)))
    assert again[decodable]["status"] == "skipped"
    assert again[still_bad]["status"] == "still malformed"
    # The same bytes reported again (a gateway that lost its state): already stored.
    [repeat] = park(
        conn, gw, msgspec.structs.replace(rejected_event(dev, good, 43), at=datetime.now(UTC))
    )
    assert by_id(redecode(database_url, tmp_path, "--id", str(repeat)))[repeat]["status"] == (
        "already stored"
    )
    assert dead_letter(conn, repeat)[1:] == (True, "redecoded: 1 already stored")
    # The gateway re-sending the record after its own parser fix: the same reading.
    resend = wire.ReadingsBatch(
        wire.SCHEMA_READINGS,
        gw,
        datetime.now(UTC),
        list(gateway_readings(rejected_event(dev, good, 43))),
    )
    written, _ = process(
        conn, [Message(wire.readings_topic(gw), wire.encode(resend))], BindingCache()
    )
    assert written.duplicates == {"glucose": 1} and sum(written.inserted.values()) == 0
    assert len(glucose_rows(conn, dev)) == 1


@pytest.mark.services
def test_a_reading_validation_refuses_is_dead_lettered_again(
    conn: Any, database_url: str, tmp_path: Path
) -> None:
    # Never paired: ingest's normal path parks the reading as an unknown device's.
    dev = "dev-redecode-2"
    [dl] = park(conn, "gw-redecode-2", rejected_event(dev, glucose_record(9), 9))
    [result] = redecode(database_url, tmp_path, "--id", str(dl))["dead_letters"]
    assert result["status"] == "rejected"
    assert dead_letter(conn, dl)[1:] == (True, "redecoded: 1 rejected again (new dead letter)")
    [(reason, topic)] = conn.execute(
        "SELECT reason, topic FROM dead_letters WHERE device_id = %s AND reprocessed_at IS NULL",
        (dev,),
    ).fetchall()
    assert reason.startswith("unknown device") and topic == wire.readings_topic("gw-redecode-2")
    assert glucose_rows(conn, dev) == []


@pytest.mark.services
def test_dry_run_writes_nothing(conn: Any, database_url: str, tmp_path: Path) -> None:
    gw, dev = "gw-redecode-3", "dev-redecode-3"
    enroll_patient(database_url, "pt-redecode-3", [gw])
    paired = wire.DevicePaired(
        device=dev, at=datetime(2026, 11, 1, tzinfo=UTC), profile="glucose-meter"
    )
    [dl] = park(conn, gw, paired, rejected_event(dev, glucose_record(12), 12))
    count = "SELECT count(*), count(reprocessed_at) FROM dead_letters"
    before = conn.execute(count).fetchone()

    results = by_id(redecode(database_url, tmp_path, "--all", "--dry-run"))
    assert results[dl]["status"] == "stored"  # what a real run would do
    assert results[dl]["readings"][0]["seq"] == 12
    table = run_cli(database_url, tmp_path, "--id", str(dl), "--dry-run").stdout
    assert "dry run: nothing written" in table and "stored" in table and dev in table

    assert conn.execute(count).fetchone() == before
    assert dead_letter(conn, dl)[1:] == (False, None)
    assert glucose_rows(conn, dev) == []


@pytest.mark.services
def test_a_vendor_quirk_added_later_recovers_the_record(
    conn: Any, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw, dev = "gw-redecode-4", "dev-redecode-4"
    patient = enroll_patient(database_url, "pt-redecode-4", [gw])
    paired = wire.DevicePaired(
        device=dev, at=datetime(2025, 1, 1, tzinfo=UTC), profile="glucose-meter"
    )
    raw = month13(
        encode_glucose_measurement(
            glucose_measurement(sequence=3, device_time=datetime(2026, 1, 5, 7, 30), mg_dl=95)
        )
    )
    [dl] = park(conn, gw, paired, rejected_event(dev, raw, 3))

    [result] = redecode(database_url, tmp_path, "--id", str(dl))["dead_letters"]
    assert result["status"] == "still malformed" and "month" in result["detail"]

    # The fix: the meter's profile learns its month-13 clock.
    meter = PROFILES["glucose-meter"]
    fixed = dataclasses.replace(meter, quirks=meter.quirks | {Quirk.MONTH_13_CLOCK})
    monkeypatch.setattr("homevitals.redecode.PROFILES", {**PROFILES, meter.id: fixed})
    table = run_cli(database_url, tmp_path, "--id", str(dl)).stdout
    assert "stored" in table and "glucose=95" in table
    [(_, time, device_time, seq, mgdl, owner, _)] = glucose_rows(conn, dev)
    assert (device_time, seq, mgdl, owner) == ("2026-01-05T07:30:00", 3, 95.0, patient)
    assert time == datetime(2026, 1, 5, 6, 30, 3, tzinfo=UTC)


def test_the_command_needs_ids_or_all(tmp_path: Path) -> None:
    result = CliRunner().invoke(deadletters, ["redecode"])
    assert result.exit_code == 2 and "--id N" in result.output
