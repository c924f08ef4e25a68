"""The wire contract: round trips, identity stability, schema file in sync."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_profiles.model import Component, Condition, Kind
from readings import identity, wire

SCHEMA_FILE = Path(wire.__file__).with_name("wire_schema.json")

components = st.dictionaries(
    st.sampled_from(list(Component)), st.floats(0, 1000, allow_nan=False), max_size=4
)
readings = st.builds(
    lambda device, kind, when, values, seq, conditions: wire.Reading(
        id=identity.reading_id(device, kind, when.replace(tzinfo=None).isoformat(), seq),
        device=device,
        kind=kind,
        time=when,
        values=values,
        device_time=when.replace(tzinfo=None).isoformat(),
        seq=seq,
        conditions=conditions,
    ),
    st.text(min_size=1, max_size=20),
    st.sampled_from(list(Kind)),
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    components,
    st.none() | st.integers(0, 65535),
    st.lists(st.sampled_from(list(Condition)), max_size=3, unique=True),
)


@given(st.lists(readings, max_size=20))
def test_batch_round_trip(items: list[wire.Reading]) -> None:
    batch = wire.ReadingsBatch(wire.SCHEMA_READINGS, "gw-1", datetime.now(UTC), items)
    assert wire.decode_batch(wire.encode(batch)) == batch


def test_identity_is_stable_and_distinguishes_fields() -> None:
    base = identity.reading_id("dev", Kind.GLUCOSE, "2026-01-01T08:00:00", 7)
    assert base == identity.reading_id("dev", Kind.GLUCOSE, "2026-01-01T08:00:00", 7)
    others = {
        identity.reading_id("dev2", Kind.GLUCOSE, "2026-01-01T08:00:00", 7),
        identity.reading_id("dev", Kind.CGM, "2026-01-01T08:00:00", 7),
        identity.reading_id("dev", Kind.GLUCOSE, "2026-01-01T08:05:00", 7),
        identity.reading_id("dev", Kind.GLUCOSE, "2026-01-01T08:00:00", 8),
        identity.reading_id("dev", Kind.GLUCOSE, "2026-01-01T08:00:00", None),
    }
    assert base not in others and len(others) == 5


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[", "invalid readings payload"),
        (
            b'{"schema":"homevitals.readings/2","gateway":"g","sent_at":"2026-01-01T00:00:00Z","readings":[]}',
            "invalid readings payload",
        ),
        (
            b'{"schema":"homevitals.readings/1","gateway":"g","sent_at":"2026-01-01T00:00:00","readings":[]}',
            "invalid readings payload",
        ),
        (b" " * (wire.MAX_PAYLOAD_BYTES + 1), "oversized payload"),
    ],
)
def test_bad_payloads_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError, match=reason):
        wire.decode_batch(payload)


def test_too_many_readings_rejected() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    items = [
        wire.Reading(
            id=str(i),
            device="d",
            kind=Kind.GLUCOSE,
            time=now + timedelta(seconds=i),
            values={Component.GLUCOSE: 100.0},
        )
        for i in range(wire.MAX_READINGS_PER_MESSAGE + 1)
    ]
    payload = wire.encode(wire.ReadingsBatch(wire.SCHEMA_READINGS, "g", now, items))
    with pytest.raises(wire.WireError, match="too many readings"):
        wire.decode_batch(payload)


def test_topics() -> None:
    assert wire.readings_topic("gw-1") == "homevitals/v1/gw/gw-1/readings"
    assert wire.gateway_of_topic("homevitals/v1/gw/gw-1/events") == "gw-1"
    assert wire.gateway_of_topic("homevitals/v2/gw/gw-1/events") is None
    assert (
        wire.shared("ingest", wire.READINGS_SUBSCRIPTION)
        == "$share/ingest/homevitals/v1/gw/+/readings"
    )


def test_schema_file_matches_the_code() -> None:
    """The published file is what the locked generator writes (scripts/lock.sh rewrites it
    on an upgrade, so a change is a reviewed diff, not a red build)."""
    from readings.wire_schema import rendered

    assert SCHEMA_FILE.read_text() == rendered(), "python -m readings.wire_schema --write"


def test_schema_file_is_a_versioned_contract() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["$id"] == wire.SCHEMA_ID
    assert schema["$id"].endswith(f"/v{wire.CONTRACT_VERSION}.json")


@functools.cache
def _published_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


@given(st.lists(readings, max_size=5))
def test_encoded_batches_validate_against_the_published_schema(items: list[wire.Reading]) -> None:
    """An independent validator (jsonschema) accepts what the encoder writes: the file and
    the code describe the same messages, whatever generator wrote the file."""
    batch = wire.ReadingsBatch(wire.SCHEMA_READINGS, "gw-1", datetime.now(UTC), items)
    _published_validator().validate(json.loads(wire.encode(batch)))


def test_the_published_schema_refuses_what_the_decoder_refuses() -> None:
    validator = _published_validator()
    bad = {"schema": "homevitals.readings/1", "gateway": "g/h", "sent_at": "x", "readings": []}
    assert not validator.is_valid(bad)
    with pytest.raises(wire.WireError):
        wire.decode_batch(json.dumps(bad).encode())


# --- DeviceRecordMalformed (tag "malformed"): a device record the gateway could not parse

u16 = st.integers(0, 0xFFFF)
malformed_records = st.builds(
    wire.DeviceRecordMalformed,
    device=st.text(min_size=1, max_size=20),
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    characteristic=st.uuids().map(str),
    raw=st.binary(max_size=wire.MAX_ATTRIBUTE_BYTES).map(bytes.hex),
    reason=st.text(max_size=wire.MAX_MALFORMED_REASON),
    profile=st.none() | st.text(max_size=30),
    seq=st.none() | u16,
    time_offset_min=st.none() | u16,
    skew_s=st.none() | st.floats(-1e6, 1e6, allow_nan=False),
    zone=st.none() | st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    cgm_session=st.none() | st.binary(min_size=9, max_size=9).map(bytes.hex),
)
OLD_EVENTS = (
    b'{"schema":"homevitals.event/1","gateway":"gw-1","events":['
    b'{"event":"paired","device":"AA","at":"2026-11-25T08:00:00Z","profile":"glucose-meter"},'
    b'{"event":"synced","device":"AA","at":"2026-11-25T08:05:00Z","readings":3}]}'
)


@given(st.lists(malformed_records, max_size=5))
def test_malformed_record_event_round_trip(events: list[wire.DeviceRecordMalformed]) -> None:
    message = wire.EventsMessage(wire.SCHEMA_EVENT, "gw-1", list(events))
    assert wire.decode_events(wire.encode(message)) == message


def test_events_without_the_new_tag_still_decode() -> None:
    """Contract v1 is extended, not changed: what gateways sent before still decodes."""
    message = wire.decode_events(OLD_EVENTS)
    assert [type(e) for e in message.events] == [wire.DevicePaired, wire.DeviceSynced]


def test_malformed_record_event_on_the_wire() -> None:
    payload = (
        b'{"schema":"homevitals.event/1","gateway":"gw-1","events":[{"event":"malformed",'
        b'"device":"AA","at":"2026-11-25T08:00:00Z",'
        b'"characteristic":"00002a18-0000-1000-8000-00805f9b34fb","raw":"032a00ea07",'
        b'"reason":"truncated","profile":"glucose-meter","seq":42}]}'
    )
    assert wire.decode_events(payload).events == [
        wire.DeviceRecordMalformed(
            device="AA",
            at=datetime(2026, 11, 25, 8, tzinfo=UTC),
            characteristic="00002a18-0000-1000-8000-00805f9b34fb",
            raw="032a00ea07",
            reason="truncated",
            profile="glucose-meter",
            seq=42,
        )
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("raw", "032A"),  # lowercase hex only
        ("raw", "032"),  # whole bytes
        ("raw", "zz"),
        ("raw", "00" * (wire.MAX_ATTRIBUTE_BYTES + 1)),
        ("characteristic", "2A18"),  # the full 128-bit form
        ("seq", 65536),
        ("time_offset_min", -1),
        ("reason", "x" * (wire.MAX_MALFORMED_REASON + 1)),
    ],
)
def test_malformed_record_event_is_checked(field: str, value: object) -> None:
    event = {
        "event": "malformed",
        "device": "AA",
        "at": "2026-11-25T08:00:00Z",
        "characteristic": "00002a18-0000-1000-8000-00805f9b34fb",
        "raw": "00",
        "reason": "r",
        field: value,
    }
    payload = json.dumps({"schema": wire.SCHEMA_EVENT, "gateway": "gw-1", "events": [event]})
    with pytest.raises(wire.WireError, match="invalid events payload"):
        wire.decode_events(payload.encode())
