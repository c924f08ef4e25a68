"""Messages -> decoded, validated, written: the broker-independent core of ingest.

Besides the write result, ``process`` can report what became of each version-2 batch
(``BatchOutcome``: stored, duplicate, dead-lettered), which the worker publishes as the
batch's receipt once the transaction committed (docs/wire-format.md, "Receipts").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from ingest.columns import Flat, Origin, Rejected, Split, refuse_forged_ids, validate
from ingest.custody import refuse_foreign, refuse_reserved_pairing, reserved_device
from ingest.registry import (
    BindingCache,
    already_dead_lettered,
    apply_event,
    apply_status,
    attribute_pending,
    malformed_record_reason,
)
from ingest.repeats import set_aside_repeats
from ingest.writer import WriteResult, write_dead_letters, write_split
from readings import (
    SCHEMA_EVENT,
    DeviceInventory,
    DevicePaired,
    DeviceRecordMalformed,
    EventsMessage,
    ReadingsBatch,
    WireError,
    batch_ref,
    decode_batch,
    decode_events,
    decode_status,
    encode,
    gateway_of_topic,
    salvage_batch,
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
    # The readings batch, decoded ahead (the worker decodes in paho's network thread as
    # messages arrive, overlapping the previous batch's COPY); None: decoded in process.
    decoded: ReadingsBatch | None = field(default=None, compare=False, repr=False)


def predecoded(topic: str, payload: bytes) -> Message:
    """A message whose readings batch is decoded now (if it decodes cleanly; anything
    else is left to ``process``, which says why or salvages it)."""
    if topic.endswith("/readings"):
        try:
            return Message(topic, payload, decode_batch(payload))
        except WireError:
            pass
    return Message(topic, payload)


@dataclass(slots=True)
class BatchOutcome:
    """What one version-2 message's batch became, in its items (readings or events)."""

    gateway: str
    batch: str
    stored: int = 0
    duplicate: int = 0
    dead_lettered: int = 0


def _reject(message: Message, gateway: str | None, reason: str) -> Rejected:
    return Rejected(message.topic, gateway, None, message.payload, reason)


def _decode_readings(message: Message, gateway: str, rejected: list[Rejected]) -> ReadingsBatch:
    """The batch; a message with a sound envelope but some readings the strict decoder
    refuses (NaN/Infinity tokens, an unknown kind, condition or field, a string for a
    number) keeps its good readings, and each bad one becomes its own dead letter with
    the reason (``readings.salvage_batch``)."""
    if message.decoded is not None:
        return message.decoded
    try:
        return decode_batch(message.payload)
    except WireError:
        salvaged = salvage_batch(message.payload)
        if salvaged is None:
            raise
    if salvaged.batch.gateway != gateway:
        raise WireError(
            f"payload gateway {salvaged.batch.gateway!r} does not match topic gateway {gateway!r}"
        )
    for bad in salvaged.rejected:
        rejected.append(
            Rejected(message.topic, gateway, bad.device, bad.payload, bad.reason, bad.index)
        )
    log.warning(
        "message on %s: %d readings dead-lettered one by one, %d kept",
        message.topic,
        len(salvaged.rejected),
        len(salvaged.batch.readings),
        extra={"topic": message.topic, "dead_letters": len(salvaged.rejected)},
    )
    return salvaged.batch


def _reading_outcomes(
    conn: psycopg.Connection[Any],
    split: Split,
    duplicates: int,
    of_origin: dict[int, BatchOutcome],
) -> None:
    """Per-message counts of a written split: accepted readings are stored or (if the
    table held them before this transaction) duplicates; the rest was dead-lettered."""
    flat = split.flat
    if not of_origin or not flat.origins:
        return
    origin = np.asarray(flat.origin, dtype=np.int64)
    size = len(flat.origins)
    total = np.bincount(origin, minlength=size)
    accepted = np.zeros(size, dtype=np.int64)
    for located in split.by_table.values():
        accepted += np.bincount(origin[located], minlength=size)
    again = np.zeros(size, dtype=np.int64)
    if duplicates:  # rare (a re-send): which readings this transaction did not store
        try:
            with conn.transaction():  # a savepoint: the counts never cost the batch
                for table, located in split.by_table.items():
                    ids = [flat.readings[i].id for i in located]
                    now_stored = _stored_now(conn, table, ids)
                    for i in located:
                        if flat.readings[i].id not in now_stored:
                            again[flat.origin[i]] += 1
        except psycopg.Error as exc:
            if not _about_the_data(exc, conn):
                raise
            # Informational only: report them as stored rather than fail the batch.
            log.warning("duplicate counts for receipts unavailable: %s", exc)
            again[:] = 0
    for k, outcome in of_origin.items():
        outcome.duplicate += int(again[k])
        outcome.stored += int(accepted[k] - again[k])
        outcome.dead_lettered += int(total[k] - accepted[k])


def _stored_now(conn: psycopg.Connection[Any], table: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` have a row in ``table`` written by this transaction (``now()`` is
    its start).  Everything else the writer skipped was claimed before: by an earlier
    row of this table, or by one of another table (the id under another kind), which a
    look for earlier rows of this table alone counted as stored."""
    rows = conn.execute(
        sql.SQL(
            "SELECT reading_id::text FROM {} WHERE reading_id = ANY(%s::uuid[])"
            " AND received_at = now()"
        ).format(sql.Identifier(table)),
        (ids,),
    ).fetchall()
    return {str(row[0]) for row in rows}


def _repeat_outcomes(repeats: dict[int, int], of_origin: dict[int, BatchOutcome]) -> None:
    """Repeats set aside as duplicates (``ingest.repeats``) are not in the split, so
    ``_reading_outcomes`` counted them as dead-lettered: they are duplicates."""
    for k, count in repeats.items():
        outcome = of_origin.get(k)
        if outcome is not None:
            outcome.duplicate += count
            outcome.dead_lettered -= count


def process(
    conn: psycopg.Connection[Any],
    messages: Sequence[Message],
    cache: BindingCache,
    now: datetime | None = None,
    outcomes: list[BatchOutcome] | None = None,
) -> tuple[WriteResult, list[str]]:
    """Decode, validate and write ``messages`` in one transaction.

    Returns the write result and the devices whose binding changed (the caller
    re-processes their parked dead letters).  With ``outcomes``, the outcome of every
    version-2 message is appended to it once the transaction committed.
    """
    now = now or datetime.now(UTC)
    flat = Flat()
    rejected: list[Rejected] = []
    changed: list[str] = []
    mine: list[BatchOutcome] = []
    of_origin: dict[int, BatchOutcome] = {}  # readings messages: origin index -> outcome
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
                    salvage_rejects: list[Rejected] = []
                    batch = _decode_readings(message, gateway, salvage_rejects)
                    if batch.gateway != gateway:
                        raise WireError(
                            f"payload gateway {batch.gateway!r} does not match topic gateway {gateway!r}"
                        )
                    if batch.batch is not None:
                        outcome = BatchOutcome(gateway, batch.batch)
                        outcome.dead_lettered = len(salvage_rejects)
                        of_origin[len(flat.origins)] = outcome
                        mine.append(outcome)
                    rejected.extend(salvage_rejects)
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
                    parked_here = 0
                    for event in events.events:
                        if isinstance(event, DeviceRecordMalformed):
                            parked_here += 1
                            parked = _malformed_record(conn, message.topic, gateway, event)
                            if parked is not None and parked not in rejected:
                                rejected.append(parked)
                        elif isinstance(event, DevicePaired | DeviceInventory) and (
                            reserved_device(event.device)
                        ):  # a bulk-import source: no hub's
                            parked_here += 1
                            parked = refuse_reserved_pairing(conn, message.topic, gateway, event)
                            if parked is not None and parked not in rejected:
                                rejected.append(parked)
                        else:
                            changed.extend(apply_event(conn, gateway, event))
                    if events.batch is not None:
                        mine.append(
                            BatchOutcome(
                                gateway,
                                events.batch,
                                stored=len(events.events) - parked_here,
                                dead_lettered=parked_here,
                            )
                        )
                elif channel == "status":
                    apply_status(conn, gateway, decode_status(message.payload))
                else:
                    raise WireError(f"unknown channel {channel!r}")
            except WireError as exc:
                rejected.append(_reject(message, gateway, exc.reason))
                whole = batch_ref(message.payload)
                if whole is not None:  # dead-lettered whole: committed as that
                    mine.append(BatchOutcome(gateway, whole, dead_lettered=1))
        cache.refresh(conn, force=bool(changed))
        unknown = {r.device for r in flat.readings}.difference(cache.devices)
        if unknown:  # paired a moment ago (maybe in this very batch, or by another worker)
            cache.add_known(conn, unknown)
        split = validate(flat, cache.devices, now)
        forged = refuse_forged_ids(split)  # an id names its own source record, no other
        if forged:
            log.warning(
                "%d readings dead-lettered: id does not match the source record",
                forged,
                extra={"dead_letters": forged},
            )
        # Only the device's own hub may send its readings, and only into its own chart.
        refuse_foreign(conn, split, cache)
        # An id twice in the transaction, among the readings still accepted (after custody:
        # a refused reading must not make its custodian's twin a "duplicate").
        repeats = set_aside_repeats(split)
        result = write_split(conn, split, cache, rejected)
        if outcomes is not None:
            _reading_outcomes(conn, split, sum(result.duplicates.values()), of_origin)
            _repeat_outcomes(repeats, of_origin)
        if changed:
            attribute_pending(conn, changed)
    if outcomes is not None:
        outcomes.extend(mine)
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
    outcomes: list[BatchOutcome] | None = None,
) -> tuple[WriteResult, list[str]]:
    """``process``, safe against a message no check foresaw: if the batch fails on its
    data, it is split in halves until the failing message is alone; that message is
    dead-lettered whole with the error (replayable after a fix) and the rest is stored.
    One poison message must not stop the stream or be redelivered forever."""
    try:
        return process(conn, messages, cache, now, outcomes)
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
        gateway = gateway_of_topic(message.topic)
        whole = batch_ref(message.payload)
        if outcomes is not None and gateway is not None and whole is not None:
            outcomes.append(BatchOutcome(gateway, whole, dead_lettered=1))
        return WriteResult(dead_letters=1), []
    half = len(messages) // 2
    first, changed_first = process_isolating(conn, messages[:half], cache, now, outcomes)
    second, changed_second = process_isolating(conn, messages[half:], cache, now, outcomes)
    return first.merged(second), changed_first + changed_second
