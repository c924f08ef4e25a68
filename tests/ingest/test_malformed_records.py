"""Device records the gateway could not parse (``DeviceRecordMalformed``) become dead
letters, on the real database and through the real broker, beside valid traffic."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from mqtt_publish import publish_all
from waiting import suback_event, wait_until

from device_profiles import uuids
from device_profiles.model import Component, Kind
from ingest.deadletters import list_dead_letters, reprocess
from ingest.patients import enroll_patient
from ingest.pipeline import Message, process
from ingest.registry import BindingCache, malformed_record_reason
from ingest.service import IngestConfig, IngestWorker
from ingest.status import ingest_counts
from readings import identity, wire

pytestmark = pytest.mark.services
T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
RAW = "032b00ea07"  # Glucose Measurement seq 43, cut off inside its base time
REASON = "truncated at field 'base_time' (need 7 bytes at offset 3, have 2)"


def glucose(device: str, seq: int) -> wire.Reading:
    when = T0 + timedelta(minutes=seq)
    local = when.replace(tzinfo=None).isoformat()
    return wire.Reading(
        id=identity.reading_id(device, Kind.GLUCOSE, local, seq),
        device=device,
        kind=Kind.GLUCOSE,
        time=when,
        values={Component.GLUCOSE: 100.0 + seq},
        device_time=local,
        seq=seq,
    )


def malformed(device: str, seq: int | None = 43) -> wire.DeviceRecordMalformed:
    return wire.DeviceRecordMalformed(
        device=device,
        at=T0 + timedelta(hours=1),
        characteristic=uuids.GLUCOSE_MEASUREMENT,
        raw=RAW,
        reason=REASON,
        profile="glucose-meter",
        seq=seq,
        skew_s=-3.0,
        zone="Europe/Berlin",
    )


def events(gateway: str, *items: wire.Event) -> tuple[str, bytes]:
    message = wire.EventsMessage(wire.SCHEMA_EVENT, gateway, list(items))
    return wire.events_topic(gateway), wire.encode(message)


def readings(gateway: str, *items: wire.Reading) -> tuple[str, bytes]:
    batch = wire.ReadingsBatch(wire.SCHEMA_READINGS, gateway, datetime.now(UTC), list(items))
    return wire.readings_topic(gateway), wire.encode(batch)


def stream(gateway: str, device: str) -> list[tuple[str, bytes]]:
    """What a gateway sends for a meter holding 41..44 with 43 malformed."""
    return [
        events(gateway, wire.DevicePaired(device=device, at=T0, profile="glucose-meter")),
        readings(gateway, glucose(device, 41), glucose(device, 42)),
        events(
            gateway,
            malformed(device),
            wire.DeviceSynced(device=device, at=T0 + timedelta(hours=1), readings=2),
        ),
        readings(gateway, glucose(device, 44)),
    ]


def dead_letters(conn: Any, device: str) -> list[tuple[Any, ...]]:
    return list(
        conn.execute(
            "SELECT id, topic, gateway_id, device_id, payload, reason, reprocessed_at"
            " FROM dead_letters WHERE device_id = %s ORDER BY id",
            (device,),
        ).fetchall()
    )


def stored_seqs(conn: Any, device: str) -> list[int]:
    rows = conn.execute(
        "SELECT sequence FROM glucose WHERE device_id = %s ORDER BY sequence", (device,)
    ).fetchall()
    return [int(r[0]) for r in rows]


@pytest.fixture()
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def test_reason_names_the_characteristic_and_the_number() -> None:
    assert malformed_record_reason(malformed("AA")) == (
        f"device record malformed (2A18, seq 43): {REASON}"
    )
    cgm = wire.DeviceRecordMalformed(
        device="AA",
        at=T0,
        characteristic=uuids.CGM_MEASUREMENT,
        raw="0e00",
        reason="E2E-CRC mismatch",
        time_offset_min=30,
    )
    assert malformed_record_reason(cgm) == (
        "device record malformed (2AA7, time offset 30 min): E2E-CRC mismatch"
    )
    vendor = wire.DeviceRecordMalformed(
        device="AA",
        at=T0,
        characteristic="0000fff1-0000-1000-8000-00805f9b34fc",
        raw="",
        reason="nul\x00",
    )
    assert malformed_record_reason(vendor) == (
        "device record malformed (0000fff1-0000-1000-8000-00805f9b34fc): nul\\x00"
    )


def test_malformed_record_is_dead_lettered_beside_valid_traffic(
    conn: Any, database_url: str
) -> None:
    gw, dev = "gw-mal-1", "dev-mal-1"
    enroll_patient(database_url, "pt-mal-1", [gw])
    cache = BindingCache()
    messages = [Message(t, p) for t, p in stream(gw, dev)]
    result, _ = process(conn, messages, cache)
    assert result.inserted == {"glucose": 3} and result.dead_letters == 1
    assert stored_seqs(conn, dev) == [41, 42, 44]
    # The other event of that message was applied.
    synced = conn.execute("SELECT last_sync FROM devices WHERE id = %s", (dev,)).fetchone()
    assert synced == (T0 + timedelta(hours=1),)

    [(dl_id, topic, gateway, device, payload, reason, reprocessed)] = dead_letters(conn, dev)
    assert (topic, gateway, device, reprocessed) == (wire.events_topic(gw), gw, dev, None)
    assert reason == f"device record malformed (2A18, seq 43): {REASON}"
    # The payload is the event alone, raw bytes included: a parser fix can decode it.
    parked = wire.decode_events(bytes(payload))
    assert parked.gateway == gw and parked.events == [malformed(dev)]

    # A redelivery (QoS 1) or a re-publish after a gateway restart: still one.
    again, _ = process(conn, messages[2:3], cache)
    assert again.dead_letters == 0 and len(dead_letters(conn, dev)) == 1

    # Operators see it: `homevitals deadletters list` and `homevitals status`.
    listed = {d.id: d for d in list_dead_letters(conn, limit=1000)}
    assert listed[dl_id].reason == reason and listed[dl_id].device_id == dev
    assert ingest_counts(database_url)["dead_letters"]["open"] >= 1

    # Re-processing cannot decode device bytes: skipped, left open, nothing new.
    assert reprocess(conn, cache, ids=[dl_id]) == (0, 0)
    assert reprocess(conn, cache, devices=[dev]) == (0, 0)
    [(same_id, *_rest, same_reason, still_open)] = dead_letters(conn, dev)
    assert (same_id, same_reason, still_open) == (dl_id, reason, None)


def test_reports_that_differ_are_separate_dead_letters(conn: Any, database_url: str) -> None:
    gw, dev = "gw-mal-2", "dev-mal-2"
    cache = BindingCache()
    first = malformed(dev)
    later = wire.DeviceRecordMalformed(
        device=dev,
        at=T0 + timedelta(days=1),
        characteristic=first.characteristic,
        raw=first.raw,
        reason=first.reason,
        seq=first.seq,
    )
    both = [Message(*events(gw, first)), Message(*events(gw, first, later))]
    result, _ = process(conn, both, cache)
    # The second message repeats the first report (kept once) and adds one that differs
    # (`at`: the same bytes reported again after the gateway lost its state): kept.
    assert result.dead_letters == 2
    assert len(dead_letters(conn, dev)) == 2


def test_ingest_service_parks_a_malformed_record_from_the_broker(
    database_url: str, ingest_mqtt_url: str, gateway_mqtt_url: Callable[[str], str]
) -> None:
    gw, dev = "gw-mal-svc", "dev-mal-svc"
    enroll_patient(database_url, "pt-mal-svc", [gw])
    worker = IngestWorker(
        IngestConfig(database_url, ingest_mqtt_url, group="malformed-test", max_wait_s=0.01)
    )
    subscribed = suback_event(worker.client)
    thread = threading.Thread(target=worker.run, kwargs={"duration_s": 60}, daemon=True)
    thread.start()
    try:
        assert subscribed.wait(10), "ingest got no SUBACK"
        publish_all(gateway_mqtt_url(gw), stream(gw, dev))
        with psycopg.connect(database_url, autocommit=True) as conn:
            wait_until(
                lambda: len(stored_seqs(conn, dev)) == 3 and dead_letters(conn, dev),
                what=lambda: f"stored {stored_seqs(conn, dev)}, parked {dead_letters(conn, dev)}",
            )
            assert stored_seqs(conn, dev) == [41, 42, 44]
            [(_, topic, gateway, device, payload, reason, _)] = dead_letters(conn, dev)
            patient = conn.execute(
                "SELECT count(*) FROM glucose WHERE device_id = %s AND patient_id IS NOT NULL",
                (dev,),
            ).fetchone()
        assert (topic, gateway, device) == (wire.events_topic(gw), gw, dev)
        assert reason == f"device record malformed (2A18, seq 43): {REASON}"
        assert wire.decode_events(bytes(payload)).events == [malformed(dev)]
        assert patient == (3,)
        assert worker.totals["dead_letters"] == 1
    finally:
        worker.stop()
        thread.join(30)
