"""Dead letters of device records the gateway could not parse -> readings, after a fix.

The gateway keeps the raw bytes of a record its parser rejected (``DeviceRecordMalformed``,
docs/wire-format.md "Events"); ingest parks it as a dead letter.  Once a parser or a
vendor quirk is fixed, :func:`redecode` decodes those bytes with the device's profile,
builds the readings the gateway would have built (same UTC time, device time text and
reading id: a later re-send of the record is the same reading) and feeds them through
ingest's own path (validation, attribution at measurement time, exactly-once).

This lives in the ops layer because it needs both ``readings.decode`` and ``ingest``;
ingest itself never imports the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from device_profiles.errors import MalformedPayloadError
from device_profiles.model import Kind
from device_profiles.profiles import PROFILES, Quirk
from ingest.deadletters import (
    ParkedRecord,
    claim_parked_record,
    mark_reprocessed,
    parked_record_ids,
)
from ingest.pipeline import Message, process
from ingest.registry import BindingCache
from ingest.writer import WriteResult
from readings import (
    E2E_CRC_MISSING,
    FUTURE_TOLERANCE,
    CgmSession,
    TimeContext,
    gateway_wall_now,
    parser_for,
    to_reading,
    wire,
    without_sequence,
)


class StillMalformed(Exception):
    """The record still yields no reading; ``reason`` says why (the parser's, mostly)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def gateway_readings(event: wire.DeviceRecordMalformed) -> tuple[wire.Reading, ...]:
    """The readings the gateway would have sent for ``event.raw`` with today's parsers."""
    profile = PROFILES.get(event.profile or "")
    if profile is None:
        raise StillMalformed(f"unknown device profile {event.profile!r}")
    if profile.measurement_uuid != event.characteristic:
        raise StillMalformed(
            f"characteristic {event.characteristic} is not the measurement of {profile.id}"
        )
    try:
        zone = ZoneInfo(event.zone or "")
    except (ZoneInfoNotFoundError, ValueError):
        raise StillMalformed(f"unknown gateway zone {event.zone!r}") from None
    try:
        measurements = parser_for(profile)(bytes.fromhex(event.raw))
    except MalformedPayloadError as exc:
        raise StillMalformed(exc.reason) from None
    session: CgmSession | None = None
    if profile.family is Kind.CGM:
        # The event does not say whether the sensor had E2E-CRC, only the gateway's
        # reason does when that was the rejection.
        session = CgmSession.from_key(
            event.cgm_session or "", zone, e2e_crc=event.reason == E2E_CRC_MISSING
        )
        if session is None:
            raise StillMalformed("no CGM session start to date the record by")
    # The device's clock then, as the gateway read it: its wall clock plus the skew.
    device_now = gateway_wall_now(zone, event.at) + timedelta(seconds=event.skew_s or 0)
    clock = TimeContext(zone, event.skew_s, event.at)
    readings = []
    for m in measurements:
        if session is not None and session.e2e_crc and not m.details.get("e2e_crc"):
            raise StillMalformed(E2E_CRC_MISSING)
        if m.local_time is not None and m.local_time > device_now + FUTURE_TOLERANCE:
            continue  # the gateway drops it (a meter's fake far-future record)
        reversed_seq = Quirk.REVERSED_SEQUENCE in profile.quirks and m.sequence is not None
        record = without_sequence(m) if reversed_seq else m
        readings.append(to_reading(event.device, record, clock, session))
    if not readings:
        raise StillMalformed("dated after the device's own clock: the gateway drops it")
    return tuple(readings)


@dataclass(frozen=True, slots=True)
class Redecoded:
    """What became (or would become) of one dead letter."""

    dead_letter: int
    device: str | None
    status: str  # stored | already stored | rejected | still malformed | skipped | failed
    detail: str  # the outcome written, or why it stays open
    readings: tuple[wire.Reading, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "dead_letter": self.dead_letter,
            "device": self.device,
            "status": self.status,
            "detail": self.detail,
            "readings": [
                {
                    "id": r.id,
                    "kind": str(r.kind),
                    "time": r.time.isoformat(),
                    "device_time": r.device_time,
                    "seq": r.seq,
                    "values": {str(k): v for k, v in r.values.items()},
                }
                for r in self.readings
            ],
        }


class _DryRun(Exception):
    """Rolls the transaction of a dry run back, carrying what it would have done."""

    def __init__(self, result: Redecoded) -> None:
        self.result = result


def redecode(
    conn: psycopg.Connection[Any],
    cache: BindingCache,
    ids: list[int] | None = None,
    *,
    dry_run: bool = False,
) -> list[Redecoded]:
    """Decode open malformed-record dead letters (``ids``, or all) and ingest what now
    decodes.  One transaction per dead letter: its readings and its mark commit
    together.  ``dry_run`` runs the same transactions and rolls them back, so what it
    reports (stored, duplicate, rejected by validation) is what a real run would do.
    ``conn`` must be in autocommit mode.
    """
    open_ids = parked_record_ids(conn, ids)
    results = [
        Redecoded(i, None, "skipped", "not an open malformed-record dead letter")
        for i in sorted(set(ids or ()) - set(open_ids))
    ]
    for dead_letter_id in open_ids:
        try:
            with conn.transaction():
                result = _redecode_one(conn, cache, dead_letter_id)
                if dry_run:
                    raise _DryRun(result)
        except _DryRun as rolled_back:
            result = rolled_back.result
        except psycopg.Error as exc:
            if conn.broken or isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
                raise  # the database is away: stop, nothing half-done
            cache.invalidate()  # it may hold state of the rolled-back transaction
            first_line = (str(exc).splitlines() or [""])[0]
            result = Redecoded(
                dead_letter_id, None, "failed", f"{type(exc).__name__}: {first_line}"
            )
        results.append(result)
    return sorted(results, key=lambda r: r.dead_letter)


def _redecode_one(
    conn: psycopg.Connection[Any], cache: BindingCache, dead_letter_id: int
) -> Redecoded:
    parked = claim_parked_record(conn, dead_letter_id)
    if parked is None:
        return Redecoded(dead_letter_id, None, "skipped", "handled meanwhile by another run")
    try:
        gateway, event = _parked_event(parked)
        readings = gateway_readings(event)
    except StillMalformed as exc:
        return Redecoded(parked.id, parked.device_id, "still malformed", exc.reason)
    batch = wire.ReadingsBatch(wire.SCHEMA_READINGS, gateway, datetime.now(UTC), list(readings))
    written, _ = process(conn, [Message(wire.readings_topic(gateway), wire.encode(batch))], cache)
    status, outcome = _outcome(written)
    mark_reprocessed(conn, parked.id, outcome)
    return Redecoded(parked.id, parked.device_id, status, outcome, readings)


def _parked_event(parked: ParkedRecord) -> tuple[str, wire.DeviceRecordMalformed]:
    try:
        message = wire.decode_events(parked.payload)
    except wire.WireError as exc:
        raise StillMalformed(f"unreadable dead letter payload: {exc.reason}") from None
    events = [e for e in message.events if isinstance(e, wire.DeviceRecordMalformed)]
    if len(events) != 1:
        raise StillMalformed("the dead letter does not hold one malformed record")
    return message.gateway, events[0]


def _outcome(written: WriteResult) -> tuple[str, str]:
    """(status, the ``outcome`` text the dead letter is marked with)."""
    stored = sum(written.inserted.values())
    duplicates = sum(written.duplicates.values())
    parts = [
        f"{n} {what}"
        for n, what in (
            (stored, "stored"),
            (duplicates, "already stored"),
            (written.dead_letters, "rejected again (new dead letter)"),
        )
        if n
    ]
    if written.dead_letters:
        status = "rejected"
    elif stored:
        status = "stored"
    else:
        status = "already stored"
    return status, "redecoded: " + ", ".join(parts)
