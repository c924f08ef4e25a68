"""Durable outbox: readings and events wait here until the broker acknowledged them.

Rows live in the gateway's SQLite file (``gateway/store.py``).  Readings (and the
events of malformed records) are enqueued in the caller's transaction, the same one
that advances the device cursor.  The publisher takes rows oldest first, batches
consecutive rows of one kind into a wire message (``readings.wire``) and deletes them only
after the PUBACK.

The outbox is bounded (rows and bytes).  Beyond the bound the oldest rows are
dropped, with an error log; a warning is logged once the outbox passes 80 % of it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from gateway.config import OutboxLimits
from gateway.store import GatewayDB
from readings import MAX_PAYLOAD_BYTES, Event, Reading

log = logging.getLogger(__name__)

RowKind = Literal["reading", "event"]
READING: RowKind = "reading"
EVENT: RowKind = "event"

_encoder = msgspec.json.Encoder()
_reading_decoder = msgspec.json.Decoder(Reading)
_event_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)

# Room left in a wire message for the envelope (schema, gateway id, sent_at).
_ENVELOPE_BYTES = 512


@dataclass(frozen=True, slots=True)
class PendingBatch:
    """Consecutive outbox rows of one kind, ready to become one MQTT message."""

    kind: RowKind
    row_ids: tuple[int, ...]
    readings: tuple[Reading, ...] = ()
    events: tuple[Event, ...] = ()

    @property
    def last_id(self) -> int:
        return self.row_ids[-1]


@dataclass(frozen=True, slots=True)
class OutboxStats:
    rows: int
    bytes: int
    oldest_created_at: float | None


class Outbox:
    def __init__(self, db: GatewayDB, limits: OutboxLimits | None = None) -> None:
        self.db = db
        self.limits = limits or OutboxLimits()
        self._warned = False

    # -- writing -------------------------------------------------------------------
    def enqueue_readings(self, conn: sqlite3.Connection, readings: Sequence[Reading]) -> None:
        """Add readings inside the caller's transaction (see ``GatewayDB.transaction``)."""
        if not readings:
            return
        now = time.time()
        conn.executemany(
            "INSERT INTO outbox (kind, payload, created_at) VALUES (?, ?, ?)",
            [(READING, _encoder.encode(r), now) for r in readings],
        )
        self._enforce_bound(conn)

    def enqueue_events(self, conn: sqlite3.Connection, events: Sequence[Event]) -> None:
        """Add events inside the caller's transaction (e.g. a malformed device record,
        committed with the readings and cursor of its download)."""
        if not events:
            return
        now = time.time()
        conn.executemany(
            "INSERT INTO outbox (kind, payload, created_at) VALUES (?, ?, ?)",
            [(EVENT, _encoder.encode(e), now) for e in events],
        )
        self._enforce_bound(conn)

    def enqueue_event(self, event: Event) -> None:
        """Add one event (its own transaction, or the caller's if one is open)."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO outbox (kind, payload, created_at) VALUES (?, ?, ?)",
                (EVENT, _encoder.encode(event), time.time()),
            )
            self._enforce_bound(conn)

    def _enforce_bound(self, conn: sqlite3.Connection) -> None:
        rows, size = conn.execute("SELECT rows, bytes FROM outbox_stats").fetchone()
        limits = self.limits
        fill = max(rows / limits.max_rows, size / limits.max_bytes)
        if fill >= limits.warn_fraction and not self._warned:
            self._warned = True
            log.warning(
                "outbox at %.0f%% of its bound (%d rows, %d bytes; bound %d rows, %d bytes): "
                "the broker has not taken readings for a while",
                fill * 100,
                rows,
                size,
                limits.max_rows,
                limits.max_bytes,
            )
        elif fill < limits.warn_fraction * 0.9:
            self._warned = False
        excess_rows = rows - limits.max_rows
        excess_bytes = size - limits.max_bytes
        if excess_rows <= 0 and excess_bytes <= 0:
            return
        # Drop the oldest rows until both bounds hold again.
        drop: list[int] = []
        freed = 0
        for row_id, length in conn.execute("SELECT id, length(payload) FROM outbox ORDER BY id"):
            if len(drop) >= excess_rows and freed >= excess_bytes:
                break
            drop.append(int(row_id))
            freed += int(length)
        conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in drop])
        log.error(
            "outbox full: dropped the %d oldest rows (bound %d rows, %d bytes)",
            len(drop),
            limits.max_rows,
            limits.max_bytes,
        )

    # -- reading -------------------------------------------------------------------
    def next_batch(
        self, after_id: int, max_readings: int = 200, max_events: int = 50
    ) -> PendingBatch | None:
        """The oldest rows with id > ``after_id``: consecutive rows of one kind."""
        rows = self.db.conn.execute(
            "SELECT id, kind, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, max(max_readings, max_events)),
        ).fetchall()
        if not rows:
            return None
        kind: RowKind = READING if rows[0][1] == READING else EVENT
        limit = max_readings if kind == READING else max_events
        ids: list[int] = []
        payloads: list[bytes] = []
        size = _ENVELOPE_BYTES
        for row_id, row_kind, payload in rows:
            if row_kind != kind or len(ids) >= limit:
                break
            if ids and size + len(payload) + 1 > MAX_PAYLOAD_BYTES:
                break
            ids.append(int(row_id))
            payloads.append(bytes(payload))
            size += len(payload) + 1
        if kind == READING:
            readings = tuple(_reading_decoder.decode(p) for p in payloads)
            return PendingBatch(kind, tuple(ids), readings=readings)
        events = tuple(_event_decoder.decode(p) for p in payloads)
        return PendingBatch(kind, tuple(ids), events=events)

    def delete(self, row_ids: Sequence[int]) -> None:
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in row_ids])

    def stats(self) -> OutboxStats:
        rows, size = self.db.conn.execute("SELECT rows, bytes FROM outbox_stats").fetchone()
        oldest = self.db.conn.execute("SELECT min(created_at) FROM outbox").fetchone()[0]
        return OutboxStats(int(rows), int(size), None if oldest is None else float(oldest))

    def depth(self) -> int:
        return int(self.db.conn.execute("SELECT rows FROM outbox_stats").fetchone()[0])
