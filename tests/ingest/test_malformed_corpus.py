"""The malformed-payload corpus through the real broker: every bad message or reading is
dead-lettered with its reason, and the valid traffic around it is stored untouched."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg
import pytest
from mqtt_publish import publish_all
from waiting import suback_event, wait_until

from device_profiles.model import Component, Kind
from ingest.patients import enroll_patient
from ingest.service import IngestConfig, IngestWorker
from readings import identity, wire

pytestmark = pytest.mark.services

GATEWAY = "gw-corpus"
DEVICE = "dev-corpus"
T0 = datetime(2026, 9, 1, 8, tzinfo=UTC)


def reading(
    seq: int,
    values: dict[Component, float],
    kind: Kind = Kind.GLUCOSE,
    when: datetime | None = None,
    device: str = DEVICE,
) -> wire.Reading:
    at = when or T0 + timedelta(minutes=10 * seq)
    local = at.replace(tzinfo=None).isoformat()
    return wire.Reading(
        id=identity.reading_id(device, kind, local, seq),
        device=device,
        kind=kind,
        time=at,
        values=values,
        device_time=local,
        seq=seq,
    )


def batch(*readings: wire.Reading, gateway: str = GATEWAY) -> bytes:
    return wire.encode(
        wire.ReadingsBatch(wire.SCHEMA_READINGS, gateway, datetime.now(UTC), list(readings))
    )


def raw_batch(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "schema": wire.SCHEMA_READINGS,
        "gateway": GATEWAY,
        "sent_at": "2026-09-01T08:00:00Z",
        "readings": [],
    }
    body.update(overrides)
    return msgspec.json.encode(body)


def raw_reading(n: int, **overrides: object) -> bytes:
    """A valid reading as JSON, with fields the typed encoder would not let us spoil."""
    at = T0 + timedelta(minutes=10 * n)
    local = at.replace(tzinfo=None).isoformat()
    body: dict[str, object] = {
        "id": identity.reading_id(DEVICE, Kind.GLUCOSE, local, n),
        "device": DEVICE,
        "kind": "glucose",
        "time": at.isoformat(),
        "values": {"glucose": 101},
        "device_time": local,
        "seq": n,
    }
    body.update(overrides)
    return raw_batch(readings=[body])


# (payload, expected dead letters, a fragment of the reason)
CORPUS: list[tuple[bytes, int, str]] = [
    (b"", 1, "invalid readings payload"),
    (b"\xff\xfe not utf-8", 1, "invalid readings payload"),
    (b'{"schema": ', 1, "invalid readings payload"),
    (b"[1, 2, 3]", 1, "invalid readings payload"),
    (raw_batch(schema="homevitals.readings/0"), 1, "invalid readings payload"),
    (raw_batch(sent_at="yesterday"), 1, "invalid readings payload"),
    (
        raw_batch(
            readings=[
                {
                    "id": "x",
                    "device": DEVICE,
                    "kind": "insulin",
                    "time": "2026-09-01T08:00:00Z",
                    "values": {},
                }
            ]
        ),
        1,
        "invalid readings payload",
    ),
    (
        raw_batch(
            readings=[
                {
                    "id": "x",
                    "device": DEVICE,
                    "kind": "glucose",
                    "time": "2026-09-01T08:00:00",
                    "values": {"glucose": 90},
                }
            ]
        ),
        1,
        "invalid readings payload",
    ),
    (raw_batch(extra_field=1), 1, "invalid readings payload"),
    (b"{" + b" " * (wire.MAX_PAYLOAD_BYTES + 10) + b"}", 1, "oversized payload"),
    (
        batch(reading(1, {Component.GLUCOSE: 90}), gateway="gw-someone-else"),
        1,
        "does not match topic gateway",
    ),
    (batch(reading(2, {Component.GLUCOSE: 5000})), 1, "implausible glucose 5000"),
    (
        batch(reading(3, {Component.SYSTOLIC: -20, Component.DIASTOLIC: 80}, Kind.BLOOD_PRESSURE)),
        1,
        "implausible systolic -20",
    ),
    (batch(reading(4, {Component.SYSTOLIC: 120}, Kind.BLOOD_PRESSURE)), 1, "without diastolic"),
    (batch(reading(5, {})), 1, "glucose reading without glucose"),
    (
        batch(reading(6, {Component.GLUCOSE: 95}, when=datetime(1999, 1, 1, tzinfo=UTC))),
        1,
        "before 2000",
    ),
    (
        batch(reading(7, {Component.GLUCOSE: 95}, when=datetime.now(UTC) + timedelta(days=400))),
        1,
        "in the future",
    ),
    (batch(reading(8, {Component.GLUCOSE: 95}, device="never-paired")), 1, "unknown device"),
    # Values the database would refuse, or store wrapped, if validation let them through.
    (raw_reading(9, id="not-a-uuid"), 1, "reading id 'not-a-uuid' is not a UUID"),
    (raw_reading(10, id="0123456789abcdef0123456789abcd"), 1, "is not a UUID"),
    (raw_reading(11, seq=2**40), 1, "sequence number 1099511627776 is out of range"),
    (raw_reading(12, seq=2**70), 1, "is out of range"),
    (raw_reading(13, seq=-1), 1, "sequence number -1 is out of range"),
    (raw_reading(14, device_time="2026-09-01\x00"), 1, "NUL character"),
    (raw_reading(15, details={"note\x00": "x"}), 1, "NUL character"),
    (
        raw_reading(
            16,
            kind="blood_pressure",
            values={"systolic": 120, "diastolic": 80},
            details={"user_id": 70000},
        ),
        1,
        "user id 70000 is not an integer 0..255",
    ),
]
# On the events topic: a device id PostgreSQL cannot store (NUL). No check foresees it;
# the batch is split until the message is alone, which is dead-lettered whole.
EVENT_CORPUS: list[tuple[bytes, int, str]] = [
    (
        msgspec.json.encode(
            {
                "schema": wire.SCHEMA_EVENT,
                "gateway": GATEWAY,
                "events": [{"event": "paired", "device": "dev\x00x", "at": T0, "profile": "cgm"}],
            }
        ),
        1,
        "could not be stored",
    ),
]


def test_every_bad_message_is_dead_lettered_and_good_traffic_flows(
    database_url: str, ingest_mqtt_url: str, gateway_mqtt_url: Callable[[str], str]
) -> None:
    enroll_patient(database_url, "pt-corpus", [GATEWAY])
    paired = wire.EventsMessage(
        wire.SCHEMA_EVENT,
        GATEWAY,
        [wire.DevicePaired(device=DEVICE, at=T0, profile="glucose-meter")],
    )
    good = [
        batch(*(reading(100 + 10 * i + j, {Component.GLUCOSE: 80.0 + j}) for j in range(10)))
        for i in range(len(CORPUS))
    ]
    messages: list[tuple[str, bytes]] = [(wire.events_topic(GATEWAY), wire.encode(paired))]
    for (bad, _, _), ok in zip(CORPUS, good, strict=True):  # interleaved with valid traffic
        messages += [(wire.readings_topic(GATEWAY), bad), (wire.readings_topic(GATEWAY), ok)]
    messages[len(messages) // 2 : len(messages) // 2] = [
        (wire.events_topic(GATEWAY), bad) for bad, _, _ in EVENT_CORPUS
    ]
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM dead_letters").fetchone()
    first_id = int(row[0]) if row else 0

    worker = IngestWorker(
        IngestConfig(database_url, ingest_mqtt_url, group="corpus", max_wait_s=0.01)
    )
    subscribed = suback_event(worker.client)
    thread = threading.Thread(target=worker.run, kwargs={"duration_s": 60}, daemon=True)
    thread.start()
    assert subscribed.wait(10), "ingest got no SUBACK"
    publish_all(gateway_mqtt_url(GATEWAY), messages)
    wait_until(
        lambda: worker.totals["messages"] >= len(messages),
        what=lambda: f"{worker.totals} of {len(messages)} messages",
    )
    worker.stop()
    thread.join(30)

    with psycopg.connect(database_url) as conn:
        reasons = [
            r[0]
            for r in conn.execute(
                "SELECT reason FROM dead_letters WHERE id > %s ORDER BY id", (first_id,)
            )
        ]
        stored = conn.execute(
            "SELECT count(*) FROM glucose WHERE device_id = %s", (DEVICE,)
        ).fetchone()
    assert len(reasons) == sum(n for _, n, _ in CORPUS + EVENT_CORPUS), reasons
    for _, _, fragment in CORPUS + EVENT_CORPUS:
        assert any(fragment in reason for reason in reasons), (fragment, reasons)
    assert stored is not None and stored[0] == 10 * len(CORPUS)
