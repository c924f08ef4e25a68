"""Verify the audit log's hash chain (migration 0009) and name what was tampered with.

The database writes the chain (one trigger under one lock); this module recomputes it
independently, in Python, from the stored columns, so a wrong belief in the SQL cannot
hide in both.  ``row_hash = sha256(prev_hash || canonical(row))`` with canonical as
documented in ``ingest/migrations/0009_audit_chain.sql``.

What each finding means:

* ``edited``: a row's content no longer hashes to its ``row_hash``.
* ``deleted``: the chain positions jump (``chain_seq`` n then n+k), or the head says
  the chain is longer than the rows left (rows cut off the end).
* ``inserted``: a row outside the chain (no ``chain_seq``; written with the trigger
  off), a position used twice, a row whose ``prev_hash`` is not the previous row's
  hash with no gap, or a row beyond the recorded head.

Someone who can rewrite every later row *and* the head can forge a consistent chain;
``head`` in the report (position and hash) is what to record elsewhere (a ticket, a
printed log) to make that detectable too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg

GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

Kind = Literal["edited", "deleted", "inserted"]


def _field(value: object) -> bytes:
    if value is None:
        return b"~"
    text = str(value).encode()
    return str(len(text)).encode() + b":" + text


def canonical(row: dict[str, Any]) -> bytes:
    at: datetime = row["at"]
    return b"".join(
        _field(v)
        for v in (
            row["chain_seq"],
            (at - _EPOCH) // _MICRO,
            row["actor"],
            row["actor_id"],
            row["role"],
            row["action"],
            row["patient_id"],
            row["resource"],
            row["client_ip"],
            row["status"],
            row["detail_text"],
        )
    )


def row_hash(prev_hash: bytes, row: dict[str, Any]) -> bytes:
    return hashlib.sha256(prev_hash + canonical(row)).digest()


@dataclass(frozen=True, slots=True)
class Finding:
    kind: Kind
    row_id: int | None
    chain_seq: int | None
    message: str


@dataclass
class Report:
    rows: int = 0
    head_seq: int = 0
    head_hash: bytes = GENESIS
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


COLUMNS = (
    "id, chain_seq, prev_hash, row_hash, at, actor, actor_id, role, action, patient_id,"
    " resource, client_ip, status, detail::text AS detail_text"
)


def _rows(conn: psycopg.Connection[Any]) -> Iterator[dict[str, Any]]:
    # A server-side cursor: the log can be large.
    with conn.cursor(name="audit_verify", row_factory=psycopg.rows.dict_row) as cur:
        cur.itersize = 2000
        cur.execute(
            f"SELECT {COLUMNS} FROM audit_log WHERE chain_seq IS NOT NULL ORDER BY chain_seq, id"
        )
        yield from cur


def verify(conn: psycopg.Connection[Any], max_findings: int = 50) -> Report:
    """Walk the chain in order and report what does not hold (at most ``max_findings``).
    On an autocommit connection it reads one snapshot (writers may go on meanwhile);
    otherwise it reads inside the caller's transaction."""
    if not conn.autocommit:
        return _verify(conn, max_findings)
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return _verify(conn, max_findings)


def _verify(conn: psycopg.Connection[Any], max_findings: int) -> Report:
    report = Report()
    head = conn.execute("SELECT seq, hash FROM audit_chain_head").fetchone()
    outside = conn.execute(
        "SELECT id FROM audit_log WHERE chain_seq IS NULL ORDER BY id LIMIT %s",
        (max_findings,),
    ).fetchall()
    report.findings += [
        Finding("inserted", int(r[0]), None, f"row {r[0]} is outside the chain (no chain_seq)")
        for r in outside
    ]
    prev_seq, prev_hash = 0, GENESIS
    for row in _rows(conn):
        report.rows += 1
        seq, rid = int(row["chain_seq"]), int(row["id"])
        stored_prev = bytes(row["prev_hash"] or b"")
        if seq == prev_seq:
            report.findings.append(
                Finding("inserted", rid, seq, f"row {rid} reuses chain position {seq}")
            )
        elif seq > prev_seq + 1:
            missing = seq - prev_seq - 1
            report.findings.append(
                Finding(
                    "deleted",
                    rid,
                    seq,
                    f"{missing} row(s) deleted between chain positions {prev_seq} and"
                    f" {seq} (before row {rid})",
                )
            )
        elif stored_prev != prev_hash:
            report.findings.append(
                Finding(
                    "inserted",
                    rid,
                    seq,
                    f"row {rid} (position {seq}) does not follow the row before it:"
                    " inserted or re-chained",
                )
            )
        if row_hash(stored_prev, row) != bytes(row["row_hash"] or b""):
            report.findings.append(
                Finding(
                    "edited",
                    rid,
                    seq,
                    f"row {rid} (position {seq}) was edited: its content does not match its hash",
                )
            )
        prev_seq, prev_hash = seq, bytes(row["row_hash"] or b"")
        if len(report.findings) >= max_findings:
            break
    if head is not None:
        report.head_seq, report.head_hash = int(head[0]), bytes(head[1])
        if len(report.findings) < max_findings:
            if prev_seq < report.head_seq:
                report.findings.append(
                    Finding(
                        "deleted",
                        None,
                        report.head_seq,
                        f"{report.head_seq - prev_seq} row(s) deleted from the end"
                        f" (chain head is at position {report.head_seq}, last row at"
                        f" {prev_seq})",
                    )
                )
            elif prev_seq > report.head_seq or prev_hash != report.head_hash:
                report.findings.append(
                    Finding(
                        "inserted",
                        None,
                        prev_seq,
                        f"rows beyond the recorded chain head (position {report.head_seq})"
                        " or a changed last row",
                    )
                )
    return report
