"""Ingest core against the real database: exactly-once writes, dead letters, attribution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from wire_helpers import wire_reading

from device_profiles.model import Component, Condition, Kind
from ingest.deadletters import UNKNOWN_DEVICE_PREFIX, reprocess
from ingest.migrations import available
from ingest.patients import enroll_patient
from ingest.pipeline import Message, process
from ingest.registry import BindingCache
from readings import identity, wire

pytestmark = pytest.mark.services
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def glucose_reading(device: str, seq: int, mgdl: float, when: datetime) -> wire.Reading:
    local = when.replace(tzinfo=None).isoformat()
    return wire.Reading(
        id=identity.reading_id(device, Kind.GLUCOSE, local, seq),
        device=device,
        kind=Kind.GLUCOSE,
        time=when,
        values={Component.GLUCOSE: mgdl},
        device_time=local,
        seq=seq,
    )


def readings_message(gateway: str, readings: list[wire.Reading]) -> Message:
    batch = wire.ReadingsBatch(wire.SCHEMA_READINGS, gateway, datetime.now(UTC), readings)
    return Message(wire.readings_topic(gateway), wire.encode(batch))


def paired_message(gateway: str, device: str) -> Message:
    event = wire.DevicePaired(device=device, at=T0 - timedelta(days=1), profile="glucose-meter")
    return Message(
        wire.events_topic(gateway),
        wire.encode(wire.EventsMessage(wire.SCHEMA_EVENT, gateway, [event])),
    )


@pytest.fixture()
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def count(conn: Any, sql: str, *params: object) -> int:
    row = conn.execute(sql, params).fetchone()
    return int(row[0])


def test_resent_batch_is_stored_once_and_attributed(conn: Any, database_url: str) -> None:
    gw, dev = "gw-pipe-1", "dev-pipe-1"
    enroll_patient(database_url, "pt-pipe-1", [gw])
    cache = BindingCache()
    process(conn, [paired_message(gw, dev)], cache)
    readings = [glucose_reading(dev, i, 90 + i, T0 + timedelta(hours=i)) for i in range(20)]
    first, _ = process(conn, [readings_message(gw, readings)], cache)
    assert first.inserted == {"glucose": 20}
    # A redelivery of the same message plus one new reading: the fallback path dedups.
    extra = glucose_reading(dev, 20, 150, T0 + timedelta(hours=20))
    second, _ = process(conn, [readings_message(gw, [*readings, extra])], cache)
    assert second.inserted == {"glucose": 1}
    assert second.duplicates == {"glucose": 20}
    assert count(conn, "SELECT count(*) FROM glucose WHERE device_id = %s", dev) == 21
    assert (
        count(
            conn,
            "SELECT count(*) FROM glucose g JOIN patients p ON p.id = g.patient_id"
            " WHERE g.device_id = %s AND p.external_id = 'pt-pipe-1'",
            dev,
        )
        == 21
    )


def test_malformed_and_implausible_are_dead_lettered(conn: Any, database_url: str) -> None:
    gw, dev = "gw-pipe-2", "dev-pipe-2"
    enroll_patient(database_url, "pt-pipe-2", [gw])
    cache = BindingCache()
    process(conn, [paired_message(gw, dev)], cache)
    good = glucose_reading(dev, 1, 100, T0)
    impossible = glucose_reading(dev, 2, 5000, T0 + timedelta(minutes=5))
    before = count(conn, "SELECT count(*) FROM dead_letters")
    messages = [
        Message(wire.readings_topic(gw), b"{not json"),
        Message(wire.readings_topic(gw), b'{"schema": "homevitals.readings/9", "gateway": "x"}'),
        Message(wire.readings_topic(gw), b"x" * (wire.MAX_PAYLOAD_BYTES + 1)),
        # A payload naming another gateway than the topic it was published on.
        Message(wire.readings_topic(gw), readings_message("gw-other", [good]).payload),
        readings_message(gw, [good, impossible]),
    ]
    result, _ = process(conn, messages, cache)
    assert result.inserted == {"glucose": 1}
    rows = conn.execute(
        "SELECT reason FROM dead_letters WHERE id > (SELECT coalesce(max(id), 0) FROM dead_letters) - %s ORDER BY id",
        (5,),
    ).fetchall()
    reasons = " | ".join(r[0] for r in rows)
    assert count(conn, "SELECT count(*) FROM dead_letters") - before == 5
    assert "invalid readings payload" in reasons
    assert "oversized payload" in reasons
    assert "does not match topic gateway" in reasons
    assert "implausible glucose 5000" in reasons


def test_unknown_device_is_parked_then_ingested_when_paired(conn: Any, database_url: str) -> None:
    gw, dev = "gw-pipe-3", "dev-pipe-3"
    enroll_patient(database_url, "pt-pipe-3", [gw])
    cache = BindingCache()
    readings = [glucose_reading(dev, i, 100, T0 + timedelta(hours=i)) for i in range(3)]
    result, _ = process(conn, [readings_message(gw, readings)], cache)
    assert result.dead_letters == 3
    _, changed = process(conn, [paired_message(gw, dev)], cache)
    assert changed == [dev]
    done, again = reprocess(conn, cache, devices=changed, reason_prefix=UNKNOWN_DEVICE_PREFIX)
    assert (done, again) == (3, 0)
    assert (
        count(
            conn,
            "SELECT count(*) FROM glucose WHERE device_id = %s AND patient_id IS NOT NULL",
            dev,
        )
        == 3
    )


def test_hi_result_without_number_is_kept_with_its_condition(conn: Any, database_url: str) -> None:
    gw, dev = "gw-pipe-4", "dev-pipe-4"
    enroll_patient(database_url, "pt-pipe-4", [gw])
    cache = BindingCache()
    process(conn, [paired_message(gw, dev)], cache)
    local = T0.replace(tzinfo=None).isoformat()
    hi = wire.Reading(
        id=identity.reading_id(dev, Kind.GLUCOSE, local, 7),
        device=dev,
        kind=Kind.GLUCOSE,
        time=T0,
        values={},
        device_time=local,
        seq=7,
        conditions=[Condition.RESULT_ABOVE_RANGE],
    )
    result, _ = process(conn, [readings_message(gw, [hi])], cache)
    assert result.inserted == {"glucose": 1}
    row = conn.execute(
        "SELECT mgdl, conditions FROM glucose WHERE device_id = %s", (dev,)
    ).fetchone()
    assert row == (None, ["result_above_range"])


def test_inventory_registers_a_missed_device_but_never_reassigns(
    conn: Any, database_url: str
) -> None:
    gw, other_gw = "gw-pipe-5", "gw-pipe-6"
    dev_missed, dev_elsewhere = "dev-pipe-5", "dev-pipe-6"
    enroll_patient(database_url, "pt-pipe-5", [gw])
    enroll_patient(database_url, "pt-pipe-6", [other_gw])
    cache = BindingCache()
    process(conn, [paired_message(other_gw, dev_elsewhere)], cache)

    def inventory(device: str) -> Message:
        event = wire.DeviceInventory(device=device, at=T0, profile="glucose-meter", serial="S1")
        return Message(
            wire.events_topic(gw), wire.encode(wire.EventsMessage(wire.SCHEMA_EVENT, gw, [event]))
        )

    _, changed = process(conn, [inventory(dev_missed), inventory(dev_elsewhere)], cache)
    assert changed == [dev_missed]
    owners = dict(
        conn.execute(
            "SELECT b.device_id, p.external_id FROM device_bindings b JOIN patients p ON p.id = b.patient_id"
            " WHERE b.device_id = ANY(%s) AND upper_inf(b.valid)",
            ([dev_missed, dev_elsewhere],),
        ).fetchall()
    )
    assert owners == {dev_missed: "pt-pipe-5", dev_elsewhere: "pt-pipe-6"}


def test_everything_a_reading_carries_is_stored(conn: Any, database_url: str) -> None:
    """CGM trend and quality, details and the BP user: kept, not dropped at ingest."""
    gw, dev = "gw-pipe-carry", "dev-pipe-carry"
    enroll_patient(database_url, "pt-pipe-carry", [gw])
    cache = BindingCache()
    process(conn, [paired_message(gw, dev)], cache)
    cgm = wire_reading(
        dev,
        Kind.CGM,
        T0,
        {Component.GLUCOSE: 143.0, Component.CGM_TREND: -1.5, Component.CGM_QUALITY: 92.0},
        details={"time_offset_min": 1440},
    )
    smbg = msgspec.structs.replace(
        glucose_reading(dev, 7, 118.0, T0 + timedelta(hours=1)),
        details={"sample_type": "capillary_whole_blood", "sample_location": "finger"},
    )
    bp = wire_reading(
        dev,
        Kind.BLOOD_PRESSURE,
        T0,
        {Component.SYSTOLIC: 131.0, Component.DIASTOLIC: 84.0, Component.PULSE: 66.0},
        details={"user_id": 2, "cuff_fit": "loose"},
    )
    result, _ = process(conn, [readings_message(gw, [cgm, smbg, bp])], cache)
    assert result.inserted == {"glucose": 2, "blood_pressure": 1}, result
    rows = conn.execute(
        "SELECT source, mgdl, trend_mgdl_min, quality_pct, details FROM glucose"
        " WHERE device_id = %s ORDER BY time",
        (dev,),
    ).fetchall()
    assert rows == [
        ("cgm", 143.0, -1.5, 92.0, {"time_offset_min": 1440}),
        (
            "smbg",
            118.0,
            None,
            None,
            {"sample_type": "capillary_whole_blood", "sample_location": "finger"},
        ),
    ]
    assert conn.execute(
        "SELECT user_id, pulse, details FROM blood_pressure WHERE device_id = %s", (dev,)
    ).fetchone() == (2, 66.0, {"user_id": 2, "cuff_fit": "loose"})


def test_a_component_foreign_to_its_kind_is_dead_lettered(conn: Any, database_url: str) -> None:
    gw, dev = "gw-pipe-foreign", "dev-pipe-foreign"
    enroll_patient(database_url, "pt-pipe-foreign", [gw])
    cache = BindingCache()
    process(conn, [paired_message(gw, dev)], cache)
    cuff = wire_reading(
        dev,
        Kind.BLOOD_PRESSURE,
        T0,
        {Component.SYSTOLIC: 120.0, Component.DIASTOLIC: 80.0, Component.CUFF_PRESSURE: 9.0},
    )
    result, _ = process(conn, [readings_message(gw, [cuff])], cache)
    assert (result.inserted, result.dead_letters) == ({}, 1)
    reason = conn.execute(
        "SELECT reason FROM dead_letters WHERE device_id = %s ORDER BY id DESC LIMIT 1", (dev,)
    ).fetchone()
    assert reason == ("blood_pressure reading with cuff_pressure (not one of its components)",)


def test_body_components_are_stored_as_a_json_object(conn: Any, database_url: str) -> None:
    gw, dev = "gw-pipe-body", "dev-pipe-body"
    enroll_patient(database_url, "pt-pipe-body", [gw])
    cache = BindingCache()
    process(conn, [paired_message(gw, dev)], cache)
    weight = wire_reading(dev, Kind.WEIGHT, T0, {Component.WEIGHT: 72.5, Component.BMI: 23.1})
    process(conn, [readings_message(gw, [weight])], cache)
    assert conn.execute(
        "SELECT jsonb_typeof(components), components FROM body_readings WHERE device_id = %s",
        (dev,),
    ).fetchone() == ("object", {"weight": 72.5, "bmi": 23.1})


def test_migration_0006_unwraps_components_stored_as_a_json_string(conn: Any) -> None:
    """What ingest wrote before the fix: the object's text as a jsonb string scalar."""
    rid = "00000000-0000-5000-8000-0000000b0d1e"
    conn.execute(
        "INSERT INTO body_readings (time, reading_id, device_id, kind, components)"
        " VALUES (%s, %s, 'dev-pre-0006', 'weight', to_jsonb(%s::text))",
        (T0, rid, '{"weight": 80.2}'),
    )
    [fix] = [m for m in available() if m.version == 6]
    conn.execute(fix.sql)
    assert conn.execute(
        "SELECT components FROM body_readings WHERE reading_id = %s", (rid,)
    ).fetchone() == ({"weight": 80.2},)
