"""Listing and re-processing dead letters (after a fix, or once a device is paired)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ingest.pipeline import Message, process_isolating
from ingest.registry import MALFORMED_RECORD_PREFIX, BindingCache

log = logging.getLogger("homevitals.ingest")

UNKNOWN_DEVICE_PREFIX = "unknown device"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    received_at: datetime
    topic: str
    gateway_id: str | None
    device_id: str | None
    reason: str
    size: int


def list_dead_letters(
    conn: psycopg.Connection[Any], limit: int = 50, include_reprocessed: bool = False
) -> list[DeadLetter]:
    where = "" if include_reprocessed else "WHERE reprocessed_at IS NULL"
    rows = conn.execute(
        "SELECT id, received_at, topic, gateway_id, device_id, reason, length(payload)"
        f" FROM dead_letters {where} ORDER BY id DESC LIMIT %s",
        (limit,),
    ).fetchall()
    return [DeadLetter(*row) for row in rows]


def reprocess(
    conn: psycopg.Connection[Any],
    cache: BindingCache,
    ids: list[int] | None = None,
    devices: list[str] | None = None,
    reason_prefix: str | None = None,
    only_known_devices: bool = False,
) -> tuple[int, int]:
    """Run parked payloads through ingest again; returns (reprocessed, still rejected).

    Each old row is marked reprocessed (never deleted); what fails again becomes a new
    dead letter with the current reason.  Device records the gateway could not parse
    (reason ``device record malformed …``) are skipped and stay open, with a log line:
    ingest cannot decode device bytes, re-running them would only copy them
    (``homevitals.redecode`` decodes them with the current parsers).
    """
    clauses = ["reprocessed_at IS NULL"]
    params: list[object] = []
    if ids is not None:
        clauses.append("id = ANY(%s)")
        params.append(ids)
    if devices is not None:
        clauses.append("device_id = ANY(%s)")
        params.append(devices)
    if reason_prefix is not None:
        clauses.append("starts_with(reason, %s)")
        params.append(reason_prefix)
    if only_known_devices:
        clauses.append("device_id IN (SELECT id FROM devices)")
    with conn.transaction():
        selected = conn.execute(
            "SELECT id, topic, payload, starts_with(reason, %s) FROM dead_letters WHERE "
            + " AND ".join(clauses)
            + " ORDER BY id FOR UPDATE SKIP LOCKED",
            [MALFORMED_RECORD_PREFIX, *params],
        ).fetchall()
        rows = [row[:3] for row in selected if not row[3]]
        skipped = [int(row[0]) for row in selected if row[3]]
        if skipped:
            log.warning(
                "dead letters %s left open: device records the gateway could not parse;"
                " re-processing cannot decode them (`homevitals deadletters redecode` can)",
                ", ".join(map(str, skipped[:20])) + (" …" if len(skipped) > 20 else ""),
                extra={"skipped": len(skipped)},
            )
        if not rows:
            return 0, 0
        ids = [r[0] for r in rows]
        # Closed first: what fails again is parked anew (with today's reason), which the
        # one-open-dead-letter-per-content rule (migration 0011) would otherwise refuse.
        conn.execute("UPDATE dead_letters SET reprocessed_at = now() WHERE id = ANY(%s)", (ids,))
        result, _ = process_isolating(conn, [Message(str(t), bytes(p)) for _, t, p in rows], cache)
        conn.execute(
            "UPDATE dead_letters SET"
            " outcome = CASE WHEN %s THEN 'reprocessed; some rejected again' ELSE 'ingested' END"
            " WHERE id = ANY(%s)",
            (result.dead_letters > 0, ids),
        )
    return len(rows), result.dead_letters


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """The dead letter of a device record the gateway could not parse: its payload is
    an events message holding that one ``DeviceRecordMalformed`` (raw bytes included)."""

    id: int
    gateway_id: str | None
    device_id: str | None
    reason: str
    payload: bytes


def parked_record_ids(conn: psycopg.Connection[Any], ids: list[int] | None = None) -> list[int]:
    """Open dead letters of unparsable device records (of ``ids`` if given), oldest first."""
    clauses = ["reprocessed_at IS NULL", "starts_with(reason, %s)"]
    params: list[object] = [MALFORMED_RECORD_PREFIX]
    if ids is not None:
        clauses.append("id = ANY(%s)")
        params.append(ids)
    rows = conn.execute(
        "SELECT id FROM dead_letters WHERE " + " AND ".join(clauses) + " ORDER BY id", params
    ).fetchall()
    return [int(row[0]) for row in rows]


def claim_parked_record(conn: psycopg.Connection[Any], dead_letter_id: int) -> ParkedRecord | None:
    """Lock one parked record for the caller's transaction; None when it was marked
    meanwhile or another run holds it (SKIP LOCKED: two operators never both decode it)."""
    row = conn.execute(
        "SELECT id, gateway_id, device_id, reason, payload FROM dead_letters"
        " WHERE id = %s AND reprocessed_at IS NULL AND starts_with(reason, %s)"
        " FOR UPDATE SKIP LOCKED",
        (dead_letter_id, MALFORMED_RECORD_PREFIX),
    ).fetchone()
    if row is None:
        return None
    return ParkedRecord(int(row[0]), row[1], row[2], str(row[3]), bytes(row[4]))


def mark_reprocessed(conn: psycopg.Connection[Any], dead_letter_id: int, outcome: str) -> None:
    """Close a dead letter (kept, never deleted) with what became of it."""
    conn.execute(
        "UPDATE dead_letters SET reprocessed_at = now(), outcome = %s WHERE id = %s",
        (outcome, dead_letter_id),
    )
