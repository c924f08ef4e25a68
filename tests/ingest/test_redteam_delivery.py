"""Red-team findings on delivery, each an attack on the real pipeline and database:
what is stored, what is dead-lettered and what the receipt tells the gateway must agree.

A1  a cuff without time stamps: every measurement its own reading (gateway RecordBuffer
    -> outbox -> ingest);
A2  one id twice in one message: a duplicate if identical, a dead letter if not;
A3  one schema-invalid reading must not take its batch down.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import psycopg
import pytest
from delivery_helpers import glucose

from device_profiles.blood_pressure import encode_blood_pressure_measurement
from device_profiles.model import Component, Kind, Measurement, Quantity
from device_profiles.profiles import get_profile
from gateway.outbox import READING, Outbox
from gateway.store import DeviceStore, GatewayDB, PairedDevice
from gateway.sync import RecordBuffer
from ingest.deadletters import reprocess
from ingest.pipeline import BatchOutcome, Message, process
from ingest.registry import BindingCache
from readings import Reading, TimeContext, parser_for, reading_id, wire

NOW = datetime(2026, 3, 10, tzinfo=UTC)
_reading = msgspec.json.Decoder(Reading)


@pytest.fixture()
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def _pair(conn: Any, gateway: str, device: str, profile: str = "glucose-meter") -> None:
    event = wire.DevicePaired(device=device, at=datetime(2026, 1, 1, tzinfo=UTC), profile=profile)
    events = wire.EventsMessage(wire.SCHEMA_EVENT, gateway, [event])
    process(conn, [Message(wire.events_topic(gateway), wire.encode(events))], BindingCache())


def _send(conn: Any, gateway: str, readings: list[Any], batch: str) -> BatchOutcome:
    payload = json.dumps(
        {"schema": wire.SCHEMA_READINGS_V2, "gateway": gateway, "sent_at": NOW.isoformat(),
         "batch": batch, "readings": readings}
    ).encode()  # fmt: skip
    outcomes: list[BatchOutcome] = []
    process(
        conn, [Message(wire.readings_topic(gateway), payload)], BindingCache(), outcomes=outcomes
    )
    [outcome] = outcomes
    return outcome


def _as_json(reading: Reading) -> dict[str, Any]:
    return dict(json.loads(msgspec.json.encode(reading)))


def _open_dead_letters(conn: Any, gateway: str) -> list[tuple[str, bytes]]:
    rows = conn.execute(
        "SELECT reason, payload FROM dead_letters WHERE gateway_id = %s"
        " AND reprocessed_at IS NULL ORDER BY id",
        (gateway,),
    ).fetchall()
    return [(str(r[0]), bytes(r[1])) for r in rows]


def _glucose_values(conn: Any, device: str) -> list[float]:
    rows = conn.execute(
        "SELECT mgdl FROM glucose WHERE device_id = %s ORDER BY mgdl", (device,)
    ).fetchall()
    return [float(r[0]) for r in rows]


# --- A1: a cuff without time stamps ----------------------------------------------------


def _undated_bp(systolic: float) -> bytes:
    def mmhg(v: float) -> Quantity:
        return Quantity(v, "mm[Hg]", v, "mm[Hg]")

    m = Measurement(
        kind=Kind.BLOOD_PRESSURE,
        values={
            Component.SYSTOLIC: mmhg(systolic),
            Component.DIASTOLIC: mmhg(80),
            Component.MEAN_ARTERIAL: mmhg(95),
        },
        device_time=None,
        details={"units": "mmHg"},
    )
    return encode_blood_pressure_measurement(m)


def test_a1_cuff_without_time_stamps_keeps_every_measurement(conn: Any, tmp_path: Path) -> None:
    gw, cuff = "gw-rt-a1", "00:00:00:00:A1:01"
    profile = get_profile("bp-cuff")
    db = GatewayDB(tmp_path / "gw.sqlite3")
    devices, outbox = DeviceStore(db), Outbox(db)
    devices.add(PairedDevice(address=cuff, profile="bp-cuff"))
    device = devices.get(cuff)
    assert device is not None
    buffer = RecordBuffer(
        device=device,
        profile=profile,
        parse=parser_for(profile),
        clock=TimeContext(ZoneInfo("UTC"), None, datetime.now(UTC)),
        device_now=None,
        db=db,
        devices=devices,
        outbox=outbox,
        commit_every=250,
    )
    for systolic in (120, 121, 122, 123, 124):  # the cuff's indications, in order
        buffer.add(_undated_bp(systolic))
    buffer.flush()
    rows = db.conn.execute("SELECT kind, payload FROM outbox ORDER BY id").fetchall()
    readings = [_reading.decode(p) for k, p in rows if k == READING]
    assert len(readings) == 5
    assert len({r.id for r in readings}) == 5, "one id per measurement"
    assert len({r.time for r in readings}) == 5, "each its own receive time"
    assert [r.time for r in readings] == sorted(r.time for r in readings)
    # The key text travels in the details: the id can be recomputed downstream.
    for n, r in enumerate(readings, 1):
        key = r.details["gw_key"]
        assert isinstance(key, str) and key.endswith(f"#{n}")
        assert reading_id(cuff, Kind.BLOOD_PRESSURE, key, None) == r.id

    _pair(conn, gw, cuff, "bp-cuff")
    outcome = _send(conn, gw, [_as_json(r) for r in readings], "a1")
    assert outcome == BatchOutcome(gw, "a1", stored=5)
    stored = conn.execute(
        "SELECT systolic FROM blood_pressure WHERE device_id = %s ORDER BY systolic", (cuff,)
    ).fetchall()
    assert [float(r[0]) for r in stored] == [120, 121, 122, 123, 124]
    # The gateway re-sends the same outbox rows: nothing new.
    again = _send(conn, gw, [_as_json(r) for r in readings], "a1")
    assert again == BatchOutcome(gw, "a1", duplicate=5)


# --- A2: the same id twice in one message ------------------------------------------------


def test_a2_one_id_with_two_values_is_a_dead_letter_not_a_silent_drop(conn: Any) -> None:
    gw, dev = "gw-rt-a2", "dev-rt-a2"
    _pair(conn, gw, dev)
    first = glucose(dev, 1, value=100.0)
    second = msgspec.structs.replace(first, values={Component.GLUCOSE: 200.0})
    outcome = _send(conn, gw, [_as_json(first), _as_json(second)], "a2")
    assert outcome == BatchOutcome(gw, "a2", stored=1, dead_lettered=1)
    assert _glucose_values(conn, dev) == [100.0]
    [(reason, payload)] = _open_dead_letters(conn, gw)
    assert reason == "reading id repeated with different values"
    assert json.loads(payload)["readings"][0]["values"] == {"glucose": 200.0}


def test_a2_one_id_twice_with_the_same_content_is_a_duplicate(conn: Any) -> None:
    gw, dev = "gw-rt-a2same", "dev-rt-a2same"
    _pair(conn, gw, dev)
    r = _as_json(glucose(dev, 1, value=100.0))
    other = _as_json(glucose(dev, 2, value=110.0))
    assert _send(conn, gw, [r, r, other], "a2s") == BatchOutcome(gw, "a2s", stored=2, duplicate=1)
    assert _glucose_values(conn, dev) == [100.0, 110.0]
    assert _open_dead_letters(conn, gw) == []
    # Sent again: all three are duplicates now.
    assert _send(conn, gw, [r, r, other], "a2s") == BatchOutcome(gw, "a2s", duplicate=3)


# --- A3: one schema-invalid reading in a batch -------------------------------------------


@pytest.mark.parametrize(
    ("case", "spoil", "why"),
    [
        ("kind", lambda r: r | {"kind": "ecg"}, "Invalid enum value 'ecg' - at `$.kind`"),
        (
            "condition",
            lambda r: r | {"conditions": ["cuff_too_loose_v9"]},
            "Invalid enum value 'cuff_too_loose_v9' - at `$.conditions[0]`",
        ),
        (
            "field",
            lambda r: r | {"glucose_trend_v3": 1},
            "Object contains unknown field `glucose_trend_v3`",
        ),
        (
            "string",
            lambda r: r | {"values": {"glucose": "105"}},
            "Expected `float`, got `str` - at `$.values[...]`",
        ),
    ],
)
def test_a3_one_invalid_reading_does_not_take_its_batch_down(
    conn: Any, case: str, spoil: Any, why: str
) -> None:
    gw, dev = f"gw-rt-a3-{case}", f"dev-rt-a3-{case}"
    _pair(conn, gw, dev)
    readings = [_as_json(glucose(dev, s)) for s in (1, 2, 3, 4)]
    readings[2] = spoil(readings[2])
    outcome = _send(conn, gw, readings, "a3")
    assert outcome == BatchOutcome(gw, "a3", stored=3, dead_lettered=1)
    assert len(_glucose_values(conn, dev)) == 3
    [(reason, payload)] = _open_dead_letters(conn, gw)
    assert reason == f"invalid reading: {why}"
    # The dead letter keeps the reading as sent (replayable once ingest knows it).
    kept = json.loads(payload)
    assert kept["readings"] == [readings[2]] and kept["gateway"] == gw
    # A re-send of the batch: the 3 are duplicates, the bad one stays one dead letter.
    again = _send(conn, gw, readings, "a3")
    assert again == BatchOutcome(gw, "a3", duplicate=3, dead_lettered=1)
    assert len(_open_dead_letters(conn, gw)) == 1


def test_a3_a_dead_lettered_reading_is_stored_by_reprocess_once_valid(conn: Any) -> None:
    """A gateway upgraded before ingest loses nothing: the reading ingest could not read
    is kept whole and ``deadletters reprocess`` stores it once it reads (here: the dead
    letter's payload fixed by hand, as an upgrade would make it readable)."""
    gw, dev = "gw-rt-a3-rep", "dev-rt-a3-rep"
    _pair(conn, gw, dev)
    readings = [_as_json(glucose(dev, s)) for s in (1, 2)]
    readings[1] = readings[1] | {"conditions": ["new_condition_v9"]}
    assert _send(conn, gw, readings, "a3r") == BatchOutcome(gw, "a3r", stored=1, dead_lettered=1)
    row = conn.execute(
        "SELECT id, payload FROM dead_letters WHERE gateway_id = %s AND reprocessed_at IS NULL",
        (gw,),
    ).fetchone()
    fixed = json.loads(bytes(row[1]))
    fixed["readings"][0]["conditions"] = []
    conn.execute(
        "UPDATE dead_letters SET payload = %s WHERE id = %s", (json.dumps(fixed).encode(), row[0])
    )
    assert reprocess(conn, BindingCache(), ids=[row[0]]) == (1, 0)
    assert len(_glucose_values(conn, dev)) == 2


def test_a3_an_unsound_envelope_is_still_dead_lettered_whole(conn: Any) -> None:
    gw, dev = "gw-rt-a3-env", "dev-rt-a3-env"
    _pair(conn, gw, dev)
    readings = [_as_json(glucose(dev, s)) for s in (1, 2)]
    payload = json.dumps(
        {"schema": wire.SCHEMA_READINGS_V2, "gateway": gw, "sent_at": "yesterday",
         "batch": "env", "readings": readings}
    ).encode()  # fmt: skip
    outcomes: list[BatchOutcome] = []
    process(conn, [Message(wire.readings_topic(gw), payload)], BindingCache(), outcomes=outcomes)
    assert outcomes == [BatchOutcome(gw, "env", dead_lettered=1)]
    assert _glucose_values(conn, dev) == []


# --- A4: LibreView re-import, same-minute records -----------------------------------------

_LV_HEADER = (
    "Glucose Data,Generated on,03-06-2024 10:00 AM UTC,Generated by,Jane Doe\n"
    "Device,Serial Number,Device Timestamp,Record Type,Historic Glucose mg/dL,"
    "Scan Glucose mg/dL,Strip Glucose mg/dL\n"
)


def _libreview(tmp_path: Path, name: str, serial: str, rows: list[tuple[str, int, int]]) -> Path:
    """rows: (time, record type, value); scans in the scan column, the rest historic."""
    lines = []
    for when, record, value in rows:
        historic, scan = (value, "") if record == 0 else ("", value)
        lines.append(f"FreeStyle Libre 3,{serial},{when},{record},{historic},{scan},\n")
    path = tmp_path / name
    path.write_text(_LV_HEADER + "".join(lines))
    return path


def _scans(conn: Any, serial: str) -> list[float]:
    rows = conn.execute(
        "SELECT original_value FROM glucose WHERE device_id = %s AND record_type = 'scan'"
        " ORDER BY original_value",
        (f"import:libreview:{serial}",),
    ).fetchall()
    return [float(r[0]) for r in rows]


def _import(database_url: str, path: Path, patient: str) -> tuple[int, int]:
    from ingest.bulk_import import import_file

    report = import_file(database_url, path, "libreview", patient, progress=False)
    return int(report["readings_stored"]), int(report["duplicates_skipped"])


ONE = [("03-05-2024 08:00 AM", 0, 105), ("03-05-2024 09:05 AM", 1, 130)]
TWO = [
    ("03-05-2024 08:00 AM", 0, 105),
    ("03-05-2024 09:05 AM", 1, 125),
    ("03-05-2024 09:05 AM", 1, 130),
]
TWO_REORDERED = [TWO[2], TWO[0], TWO[1]]


@pytest.mark.parametrize(
    ("case", "first", "then", "counts"),
    [
        # (stored, duplicates) of the first import, then of the later export
        ("one-then-two", ONE, TWO, [(2, 0), (1, 2)]),
        ("two-then-one", TWO, ONE, [(3, 0), (0, 2)]),
        ("two-then-reordered", TWO, TWO_REORDERED, [(3, 0), (0, 3)]),
    ],
)
def test_a4_same_minute_scans_do_not_depend_on_file_order(
    conn: Any,
    database_url: str,
    tmp_path: Path,
    case: str,
    first: list[tuple[str, int, int]],
    then: list[tuple[str, int, int]],
    counts: list[tuple[int, int]],
) -> None:
    serial, patient = f"RT-A4-{case}", f"rt-a4-{case}"
    a = _libreview(tmp_path, "export1.csv", serial, first)
    b = _libreview(tmp_path, "export2.csv", serial, then)
    assert [_import(database_url, a, patient), _import(database_url, b, patient)] == counts
    want = sorted({float(v) for _, t, v in first + then if t == 1})
    assert _scans(conn, serial) == want
    # Imported again, in either order: nothing new.
    assert _import(database_url, b, patient)[0] + _import(database_url, a, patient)[0] == 0
    assert _scans(conn, serial) == want


def test_a4_rows_stored_under_the_old_ordinal_ids_are_met_not_stored_again(
    conn: Any, database_url: str, tmp_path: Path
) -> None:
    """An import made before the fix stored ids by file order (``#n``): a later import
    meets those rows by device, record type, minute and value, so nothing is doubled."""
    from readings import RecordKey, RecordType

    serial, patient = "RT-A4-LEGACY", "rt-a4-legacy"
    device = f"import:libreview:{serial}"
    _import(database_url, _libreview(tmp_path, "export1.csv", serial, ONE), patient)
    # What the old recipe gave: the only value of its minute had ordinal 0 (no suffix).
    for local, kind, rtype in (
        ("2024-03-05T09:05:00", Kind.GLUCOSE, RecordType.SCAN),
        ("2024-03-05T08:00:00", Kind.CGM, None),
    ):
        legacy = RecordKey.export_row(device, kind, rtype, local).reading_id
        conn.execute(
            "UPDATE glucose SET reading_id = %s WHERE device_id = %s AND device_time = %s",
            (legacy, device, local),
        )
    assert _import(database_url, _libreview(tmp_path, "export2.csv", serial, TWO), patient) == (
        1,
        2,
    )
    assert _scans(conn, serial) == [125.0, 130.0]
    n = conn.execute("SELECT count(*) FROM glucose WHERE device_id = %s", (device,)).fetchone()
    assert n[0] == 3


def test_a2_an_id_stored_under_another_kind_is_not_reported_stored_again(conn: Any) -> None:
    """The receipt's ``stored`` means a row committed now: a reading of another kind
    carrying an id already stored is not 'stored' again.  Since ingest recomputes every
    hub reading's id from its fields, such a reading is a forged id: dead-lettered."""
    gw, dev = "gw-rt-a2kind", "dev-rt-a2kind"
    _pair(conn, gw, dev)
    g = glucose(dev, 1, value=100.0)
    assert _send(conn, gw, [_as_json(g)], "k1") == BatchOutcome(gw, "k1", stored=1)
    bp = _as_json(g) | {
        "kind": "blood_pressure",
        "values": {"systolic": 120.0, "diastolic": 80.0, "mean_arterial": 93.0},
        "seq": None,
    }
    del bp["seq"]
    assert _send(conn, gw, [bp], "k2") == BatchOutcome(gw, "k2", dead_lettered=1)
    n = conn.execute("SELECT count(*) FROM blood_pressure WHERE device_id = %s", (dev,))
    assert n.fetchone()[0] == 0


# --- A5: unpair, measure, re-pair on the same hub for the same patient -------------------


def _event(gateway: str, event: Any) -> Message:
    return Message(
        wire.events_topic(gateway),
        wire.encode(wire.EventsMessage(wire.SCHEMA_EVENT, gateway, [event])),
    )


def _patients_of(conn: Any, device: str) -> list[tuple[float, int | None]]:
    rows = conn.execute(
        "SELECT mgdl, patient_id FROM glucose WHERE device_id = %s ORDER BY time", (device,)
    ).fetchall()
    return [(float(r[0]), None if r[1] is None else int(r[1])) for r in rows]


def test_a5_readings_measured_while_unpaired_then_repaired_on_the_same_hub_are_attributed(
    conn: Any, database_url: str
) -> None:
    from ingest.patients import enroll_patient

    gw, dev = "gw-rt-a5", "dev-rt-a5"
    patient = enroll_patient(database_url, "rt-a5", [gw])
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)

    def at(hours: int) -> datetime:
        return t0 + timedelta(hours=hours)

    def reading(hours: int, value: float) -> dict[str, Any]:
        g = glucose(dev, hours, value=value)
        return _as_json(msgspec.structs.replace(g, time=at(hours)))

    process(
        conn,
        [_event(gw, wire.DevicePaired(device=dev, at=at(0), profile="glucose-meter"))],
        BindingCache(),
    )
    assert _send(conn, gw, [reading(1, 101.0)], "a5-1").stored == 1
    process(conn, [_event(gw, wire.DeviceUnpaired(device=dev, at=at(2)))], BindingCache())
    # Measured at hours 3 and 4 with no hub; re-paired on the same hub at hour 5, then synced.
    process(
        conn,
        [_event(gw, wire.DevicePaired(device=dev, at=at(5), profile="glucose-meter"))],
        BindingCache(),
    )
    outcome = _send(conn, gw, [reading(3, 103.0), reading(4, 104.0), reading(6, 106.0)], "a5-2")
    assert outcome == BatchOutcome(gw, "a5-2", stored=3)
    assert _patients_of(conn, dev) == [
        (101.0, patient),
        (103.0, patient),
        (104.0, patient),
        (106.0, patient),
    ]


def test_a5_a_gap_with_another_patient_or_hub_in_between_is_not_filled(
    conn: Any, database_url: str
) -> None:
    """Only the same hub for the same patient continues the binding: after the device was
    held by another hub (another patient) in between, the gap stays unattributed."""
    from ingest.patients import enroll_patient

    gw_a, gw_b, dev = "gw-rt-a5-a", "gw-rt-a5-b", "dev-rt-a5-x"
    patient_a = enroll_patient(database_url, "rt-a5-a", [gw_a])
    enroll_patient(database_url, "rt-a5-b", [gw_b])
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)

    def at(hours: int) -> datetime:
        return t0 + timedelta(hours=hours)

    def reading(hours: int, value: float) -> dict[str, Any]:
        return _as_json(msgspec.structs.replace(glucose(dev, hours, value=value), time=at(hours)))

    def pairing(gw: str, hours: int, paired_: bool) -> None:
        event: Any = (
            wire.DevicePaired(device=dev, at=at(hours), profile="glucose-meter")
            if paired_
            else wire.DeviceUnpaired(device=dev, at=at(hours))
        )
        process(conn, [_event(gw, event)], BindingCache())

    pairing(gw_a, 0, True)
    pairing(gw_a, 1, False)
    pairing(gw_b, 2, True)
    pairing(gw_b, 3, False)
    pairing(gw_a, 5, True)
    _send(conn, gw_a, [reading(4, 104.0), reading(6, 106.0)], "a5-x")
    assert _patients_of(conn, dev) == [(104.0, None), (106.0, patient_a)]


def test_a2_a_foreign_hub_sending_the_same_id_in_one_transaction_suppresses_nothing(
    conn: Any,
) -> None:
    """Repeats are decided after the custody check: a reading refused for custody never
    makes the custodian's own reading of the same id a 'duplicate'."""
    gw, other, dev = "gw-rt-a2own", "gw-rt-a2foreign", "dev-rt-a2own"
    _pair(conn, gw, dev)
    r = glucose(dev, 1, value=100.0)

    def message(gateway: str, batch: str) -> Message:
        return Message(
            wire.readings_topic(gateway),
            wire.encode(wire.ReadingsBatch(wire.SCHEMA_READINGS_V2, gateway, NOW, [r], batch)),
        )

    outcomes: list[BatchOutcome] = []
    process(conn, [message(other, "f1"), message(gw, "o1")], BindingCache(), outcomes=outcomes)
    assert outcomes == [
        BatchOutcome(other, "f1", dead_lettered=1),
        BatchOutcome(gw, "o1", stored=1),
    ]
    assert _glucose_values(conn, dev) == [100.0]
