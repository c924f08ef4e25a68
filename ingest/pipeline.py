"""Messages -> decoded, validated, written: the broker-independent core of ingest."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from ingest.columns import Flat, Origin, Rejected, validate
from ingest.custody import refuse_foreign
from ingest.registry import (
    BindingCache,
    already_dead_lettered,
    apply_event,
    apply_status,
    attribute_pending,
    malformed_record_reason,
)
from ingest.writer import WriteResult, write_dead_letters, write_split
from readings import (
    SCHEMA_EVENT,
    DeviceRecordMalformed,
    EventsMessage,
    WireError,
    decode_batch,
    decode_events,
    decode_status,
    encode,
    gateway_of_topic,
)

log = logging.getLogger("homevitals.ingest")


def _about_the_data(exc: Exception, conn: psycopg.Connection[Any]) -> bool:
    """Whether a failed batch failed on its content (a value the database refused, a
    malformed binary field, a case validation did not foresee) rather than on the
    database being away (connection lost, shutdown, timeout): that one is retried."""
    if conn.closed or conn.broken:
        return False
    if isinstance(exc, psycopg.errors.ProtocolViolation):
        return True  # a binary COPY field the server could not read
    return not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes


def _reject(message: Message, gateway: str | None, reason: str) -> Rejected:
    return Rejected(message.topic, gateway, None, message.payload, reason)


def process(
    conn: psycopg.Connection[Any],
    messages: Sequence[Message],
    cache: BindingCache,
    now: datetime | None = None,
) -> tuple[WriteResult, list[str]]:
    """Decode, validate and write ``messages`` in one transaction.

    Returns the write result and the devices whose binding changed (the caller
    re-processes their parked dead letters).
    """
    now = now or datetime.now(UTC)
    flat = Flat()
    rejected: list[Rejected] = []
    changed: list[str] = []
    with conn.transaction():
        for message in messages:
            gateway = gateway_of_topic(message.topic)
            if gateway is None:
                rejected.append(
                    _reject(message, None, f"topic {message.topic!r} is not in the contract")
                )
                continue
            channel = message.topic.rsplit("/", 1)[1]
            try:
                if channel == "readings":
                    batch = decode_batch(message.payload)
                    if batch.gateway != gateway:
                        raise WireError(
                            f"payload gateway {batch.gateway!r} does not match topic gateway {gateway!r}"
                        )
                    flat.add(
                        Origin(message.topic, gateway, b"\\u0000" in message.payload),
                        batch.readings,
                    )
                elif channel == "events":
                    events = decode_events(message.payload)
                    if events.gateway != gateway:
                        raise WireError(
                            f"payload gateway {events.gateway!r} does not match topic gateway {gateway!r}"
                        )
                    _ensure_gateway(conn, gateway)
                    for event in events.events:
                        if isinstance(event, DeviceRecordMalformed):
                            parked = _malformed_record(conn, message.topic, gateway, event)
                            if parked is not None and parked not in rejected:
                                rejected.append(parked)
                        else:
                            changed.extend(apply_event(conn, gateway, event))
                elif channel == "status":
                    apply_status(conn, gateway, decode_status(message.payload))
                else:
                    raise WireError(f"unknown channel {channel!r}")
            except WireError as exc:
                rejected.append(_reject(message, gateway, exc.reason))
        cache.refresh(conn, force=bool(changed))
        unknown = {r.device for r in flat.readings}.difference(cache.devices)
        if unknown:  # paired a moment ago (maybe in this very batch, or by another worker)
            cache.add_known(conn, unknown)
        split = validate(flat, cache.devices, now)
        refuse_foreign(conn, split, cache)  # only the device's own hub may send its readings
        result = write_split(conn, split, cache, rejected)
        if changed:
            attribute_pending(conn, changed)
    return result, changed


def _malformed_record(
    conn: psycopg.Connection[Any], topic: str, gateway: str, event: DeviceRecordMalformed
) -> Rejected | None:
    """A device record the gateway could not parse: a dead letter of its own (the payload
    is an events message holding just this event, raw bytes included), so an operator
    sees it and a parser fix can recover it; None if it is parked already."""
    payload = encode(EventsMessage(SCHEMA_EVENT, gateway, [event]))
    reason = malformed_record_reason(event)
    if already_dead_lettered(conn, event.device, reason, payload):
        return None
    log.warning("%s: %s", event.device, reason, extra={"topic": topic, "device": event.device})
    return Rejected(topic, gateway, event.device, payload, reason)


def _ensure_gateway(conn: psycopg.Connection[Any], gateway: str) -> None:
    conn.execute(
        "INSERT INTO gateways (id, last_seen) VALUES (%s, now())"
        " ON CONFLICT (id) DO UPDATE SET last_seen = now()",
        (gateway,),
    )


def process_isolating(
    conn: psycopg.Connection[Any],
    messages: Sequence[Message],
    cache: BindingCache,
    now: datetime | None = None,
) -> tuple[WriteResult, list[str]]:
    """``process``, safe against a message no check foresaw: if the batch fails on its
    data, it is split in halves until the failing message is alone; that message is
    dead-lettered whole with the error (replayable after a fix) and the rest is stored.
    One poison message must not stop the stream or be redelivered forever."""
    try:
        return process(conn, messages, cache, now)
    except Exception as exc:
        if not _about_the_data(exc, conn):
            raise
        failure = exc
    cache.invalidate()  # it may hold bindings of the rolled-back transaction
    if len(messages) == 1:
        message = messages[0]
        first_line = (str(failure).splitlines() or [""])[0]
        reason = f"could not be stored: {type(failure).__name__}: {first_line}"
        log.error(
            "message on %s dead-lettered whole: %s",
            message.topic,
            reason,
            exc_info=failure,
            extra={"topic": message.topic, "reason": reason},
        )
        with conn.transaction(), conn.cursor() as cur:
            write_dead_letters(
                cur, [_reject(message, gateway_of_topic(message.topic), reason[:500])]
            )
        return WriteResult(dead_letters=1), []
    half = len(messages) // 2
    first, changed_first = process_isolating(conn, messages[:half], cache, now)
    second, changed_second = process_isolating(conn, messages[half:], cache, now)
    return first.merged(second), changed_first + changed_second
