"""Receipts, salvage and dead-letter dedupe below the broker: the wire structs (version 2,
``homevitals.receipt/1``, NaN/Infinity salvage) and ``ingest.pipeline`` on the real
database (per-batch outcomes, one open dead letter per content, reprocess)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from delivery_helpers import glucose, paired

from ingest.deadletters import reprocess
from ingest.pipeline import BatchOutcome, Message, process, process_isolating
from ingest.registry import BindingCache
from readings import wire
from readings.wire_schema import SCHEMA_FILE

NOW = datetime(2026, 3, 10, tzinfo=UTC)


def batch_v2(gateway: str, readings: list[wire.Reading], batch: str = "b1") -> bytes:
    return wire.encode(
        wire.ReadingsBatch(wire.SCHEMA_READINGS_V2, gateway, NOW, readings, batch=batch)
    )


# --- wire ------------------------------------------------------------------------------


def test_version_2_names_its_batch_and_version_1_does_not() -> None:
    g = glucose("dev-w", 1)
    assert wire.decode_batch(batch_v2("gw-w", [g])).batch == "b1"
    v1 = wire.encode(wire.ReadingsBatch(wire.SCHEMA_READINGS, "gw-w", NOW, [g]))
    assert b'"batch"' not in v1 and wire.decode_batch(v1).batch is None
    bad_v2 = json.loads(batch_v2("gw-w", [g]))
    del bad_v2["batch"]
    with pytest.raises(wire.WireError, match="needs a batch id"):
        wire.decode_batch(json.dumps(bad_v2).encode())
    bad_v1 = json.loads(v1) | {"batch": "x"}
    with pytest.raises(wire.WireError, match="has no batch id"):
        wire.decode_batch(json.dumps(bad_v1).encode())
    with pytest.raises(wire.WireError):
        wire.decode_batch(batch_v2("gw-w", [g], batch="not/a batch"))
    events = wire.EventsMessage(wire.SCHEMA_EVENT_V2, "gw-w", [paired("dev-w")], batch="e1")
    assert wire.decode_events(wire.encode(events)).batch == "e1"


def test_receipts_round_trip_and_validate_against_the_published_schema() -> None:
    import jsonschema

    receipt = wire.Receipt(wire.SCHEMA_RECEIPT, "gw-w", NOW, [wire.BatchReceipt("b1", 198, 0, 2)])
    payload = wire.encode(receipt)
    assert wire.decode_receipt(payload) == receipt
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    validator.validate(json.loads(payload))
    validator.validate(json.loads(batch_v2("gw-w", [glucose("dev-w", 1)])))
    assert wire.CONTRACT_VERSION == "2"
    with pytest.raises(wire.WireError):
        wire.decode_receipt(b'{"schema": "homevitals.receipt/1", "gateway": "gw-w"}')


def test_salvage_keeps_the_readings_without_non_finite_tokens() -> None:
    good = [json.loads(msgspec.json.encode(glucose("dev-s", s))) for s in (1, 2, 3)]
    nan = good[1] | {"values": {"glucose": float("nan")}}
    payload = json.dumps(
        {"schema": "homevitals.readings/2", "gateway": "gw-s", "sent_at": NOW.isoformat(),
         "batch": "b9", "readings": [good[0], nan, good[2]]}
    ).encode()  # fmt: skip
    with pytest.raises(wire.WireError):
        wire.decode_batch(payload)
    salvaged = wire.salvage_batch(payload)
    assert salvaged is not None
    assert [r.seq for r in salvaged.batch.readings] == [1, 3]
    assert salvaged.batch.batch == "b9" and wire.batch_ref(payload) == "b9"
    [bad] = salvaged.rejected
    assert (bad.index, bad.device) == (1, "dev-s")
    assert bad.reason == "non-finite number NaN in values.glucose (JSON has no NaN/Infinity)"
    assert b"NaN" in bad.payload  # kept as sent
    # Not recoverable: a token in the envelope, JSON broken elsewhere, no tokens at all.
    assert wire.salvage_batch(payload.replace(b'"b9"', b"NaN")) is None
    assert wire.salvage_batch(payload + b"}") is None
    assert wire.salvage_batch(b'{"schema": 1}') is None


# --- pipeline on the database -----------------------------------------------------------


@pytest.fixture()
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def _pair(conn: Any, gateway: str, device: str) -> None:
    events = wire.EventsMessage(wire.SCHEMA_EVENT, gateway, [paired(device)])
    process(conn, [Message(wire.events_topic(gateway), wire.encode(events))], BindingCache())


def _open_dead_letters(conn: Any, gateway: str) -> list[str]:
    rows = conn.execute(
        "SELECT reason FROM dead_letters WHERE gateway_id = %s AND reprocessed_at IS NULL"
        " ORDER BY id",
        (gateway,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def test_outcomes_count_stored_duplicate_and_dead_lettered(conn: Any) -> None:
    gw, dev = "gw-rp-out", "dev-rp-out"
    _pair(conn, gw, dev)
    topic = wire.readings_topic(gw)
    first = [glucose(dev, 1), glucose(dev, 2), glucose(dev, 3, value=5000.0)]
    outcomes: list[BatchOutcome] = []
    process(conn, [Message(topic, batch_v2(gw, first, "b1"))], BindingCache(), outcomes=outcomes)
    assert outcomes == [BatchOutcome(gw, "b1", stored=2, duplicate=0, dead_lettered=1)]
    # A re-send of b1 and a new batch b2 sharing a reading, in one transaction.
    again = [glucose(dev, 2), glucose(dev, 4)]
    outcomes = []
    process(
        conn,
        [Message(topic, batch_v2(gw, first, "b1")), Message(topic, batch_v2(gw, again, "b2"))],
        BindingCache(),
        outcomes=outcomes,
    )
    assert outcomes == [
        BatchOutcome(gw, "b1", stored=0, duplicate=2, dead_lettered=1),
        BatchOutcome(gw, "b2", stored=1, duplicate=1, dead_lettered=0),
    ]
    assert _open_dead_letters(conn, gw) == ["implausible glucose 5000 (allowed 10..1000)"]
    # Version 1 gets no receipt; a v2 message breaking the contract is confirmed as one
    # dead letter; v2 events are confirmed too.
    outcomes = []
    v1 = wire.encode(wire.ReadingsBatch(wire.SCHEMA_READINGS, gw, NOW, [glucose(dev, 5)]))
    broken = json.loads(batch_v2(gw, [glucose(dev, 6)], "b3")) | {"extra": 1}
    events = wire.EventsMessage(wire.SCHEMA_EVENT_V2, gw, [paired(dev)], batch="e1")
    process_isolating(
        conn,
        [
            Message(topic, v1),
            Message(topic, json.dumps(broken).encode()),
            Message(wire.events_topic(gw), wire.encode(events)),
        ],
        BindingCache(),
        outcomes=outcomes,
    )
    assert outcomes == [
        BatchOutcome(gw, "b3", dead_lettered=1),
        BatchOutcome(gw, "e1", stored=1),
    ]


def test_the_same_invalid_reading_in_one_transaction_is_one_dead_letter(conn: Any) -> None:
    gw, dev = "gw-rp-dup", "dev-rp-dup"
    _pair(conn, gw, dev)
    bad = glucose(dev, 1, value=5000.0)
    topic = wire.readings_topic(gw)
    messages = [
        Message(topic, wire.encode(wire.ReadingsBatch(wire.SCHEMA_READINGS, gw, NOW + timedelta(seconds=s), [bad])))
        for s in range(3)
    ]  # fmt: skip
    process(conn, messages, BindingCache())
    assert len(_open_dead_letters(conn, gw)) == 1
    # Re-processing closes it first: failing again parks it anew (one open, one closed).
    assert reprocess(conn, BindingCache(), devices=[dev]) == (1, 1)
    assert len(_open_dead_letters(conn, gw)) == 1
    total = conn.execute("SELECT count(*) FROM dead_letters WHERE gateway_id = %s", (gw,))
    assert total.fetchone()[0] == 2


def test_reprocess_salvages_a_whole_nan_dead_letter_of_before(conn: Any) -> None:
    """What the code before salvage parked whole ("JSON is malformed") is salvaged by
    ``deadletters reprocess``: valid readings stored, bad ones parked one by one."""
    gw, dev = "gw-rp-nan", "dev-rp-nan"
    _pair(conn, gw, dev)
    good = [json.loads(msgspec.json.encode(glucose(dev, s))) for s in (1, 2, 3)]
    payload = json.dumps(
        {"schema": "homevitals.readings/1", "gateway": gw, "sent_at": NOW.isoformat(),
         "readings": [good[0], good[1] | {"skew_s": float("-inf")}, good[2]]}
    ).encode()  # fmt: skip
    row = conn.execute(
        "INSERT INTO dead_letters (topic, gateway_id, payload, reason) VALUES (%s, %s, %s, %s)"
        " RETURNING id",
        (wire.readings_topic(gw), gw, payload, "invalid readings payload: JSON is malformed"),
    ).fetchone()
    assert reprocess(conn, BindingCache(), ids=[row[0]]) == (1, 1)
    stored = conn.execute("SELECT count(*) FROM glucose WHERE device_id = %s", (dev,))
    assert stored.fetchone()[0] == 2
    assert _open_dead_letters(conn, gw) == [
        "non-finite number -Infinity in skew_s (JSON has no NaN/Infinity)"
    ]


def test_the_content_key_leaves_out_only_the_envelope_fields_a_resend_changes(
    conn: Any,
) -> None:
    def key(payload: bytes) -> bytes:
        row = conn.execute("SELECT dead_letter_content_key('t', 'r', %s)", (payload,)).fetchone()
        return bytes(row[0])

    r1 = glucose("dev-key", 1)
    r1_lot = msgspec.structs.replace(r1, details={"batch": "lot-1"})
    r1_lot2 = msgspec.structs.replace(r1, details={"batch": "lot-2"})
    v1 = [wire.encode(wire.ReadingsBatch(wire.SCHEMA_READINGS, "gw", NOW + timedelta(seconds=s), [r1])) for s in (0, 1)]  # fmt: skip
    v2 = [batch_v2("gw", [r1], batch=b) for b in ("b1", "b2")]
    assert key(v1[0]) == key(v1[1])  # another sent_at
    assert key(v2[0]) == key(v2[1]) != key(v1[0])  # another batch id (and sent_at)
    assert key(batch_v2("gw", [r1_lot])) != key(batch_v2("gw", [r1_lot2]))  # a reading's own
    python_json = json.dumps(
        {"schema": "homevitals.readings/1", "gateway": "gw", "sent_at": "x", "readings": [1]}
    ).encode()
    assert key(python_json) == key(python_json.replace(b'"x"', b'"y"'))
    assert key(b"\xff\x00 not JSON") != key(b"\xfe\x00 not JSON")  # any bytes: no error


def test_a_flood_of_dead_letters_in_one_transaction(conn: Any) -> None:
    """Thousands of rejects in one batch: one advisory lock per transaction, not one per
    dead letter (the lock table is small)."""
    gw = "gw-rp-flood"
    readings = [glucose(f"dev-unknown-{i}", i) for i in range(5000)]
    messages = [
        Message(wire.readings_topic(gw), batch_v2(gw, readings[i : i + 1000], f"f{i}"))
        for i in range(0, 5000, 1000)
    ]
    result, _ = process(conn, messages, BindingCache())
    assert result.dead_letters == 5000
    assert len(_open_dead_letters(conn, gw)) == 5000


def test_a_batch_decoded_on_receipt_is_processed_the_same(conn: Any) -> None:
    """``IngestConfig.decode_on_receive``: the worker decodes in paho's thread; what does
    not decode cleanly (NaN tokens) is left to ``process`` to salvage."""
    from ingest.pipeline import predecoded

    gw, dev = "gw-rp-pre", "dev-rp-pre"
    _pair(conn, gw, dev)
    topic = wire.readings_topic(gw)
    good = predecoded(topic, batch_v2(gw, [glucose(dev, 1), glucose(dev, 2)], "p1"))
    assert good.decoded is not None and good.decoded.batch == "p1"
    nan = json.loads(batch_v2(gw, [glucose(dev, 3)], "p2"))
    nan["readings"][0]["values"]["glucose"] = float("nan")
    odd = predecoded(topic, json.dumps(nan).encode())
    assert odd.decoded is None
    outcomes: list[BatchOutcome] = []
    process(conn, [good, odd], BindingCache(), outcomes=outcomes)
    assert outcomes == [
        BatchOutcome(gw, "p1", stored=2),
        BatchOutcome(gw, "p2", dead_lettered=1),
    ]
