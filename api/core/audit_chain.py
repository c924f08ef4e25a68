"""Verify the audit log's hash chain (migrations 0009 and 0013) against external anchors,
and name what was tampered with.

The database writes the chain (one trigger under one lock); this module recomputes it
independently, in Python, from the stored columns, so a wrong belief in the SQL cannot
hide in both.  ``row_hash = sha256(prev_hash || canonical(row))`` with canonical as
documented in ``ingest/migrations/0013_audit_anchor.sql`` (every column, ``id`` too).

What each finding means:

* ``edited``: a row's content (any column, its id too) no longer hashes to its
  ``row_hash``.
* ``deleted``: the chain positions jump (``chain_seq`` n then n+k), ids jump where the
  trigger hands them out one by one, or the head says the chain is longer than the rows
  left (rows cut off the end).
* ``inserted``: a row outside the chain (no ``chain_seq``; written with the trigger
  off), a position used twice, a row whose ``prev_hash`` is not the previous row's
  hash with no gap, or a row beyond the recorded head.
* ``backdated``: a row dated before the row before it (the trigger sets ``at`` from
  the database's clock, never earlier than the previous row's, so only a row chained by
  hand can be out of time order).
* ``reordered``: a row whose id is not above the previous row's.
* ``rewritten`` / ``truncated`` (with anchors): a position recorded by ``homevitals
  audit anchor`` no longer holds the recorded hash, or the chain now ends before it.

Whoever owns the tables can switch the triggers off and rewrite the rows after some
position *and* the head consistently: only an anchor kept outside the database (a file
shipped off the host, the system journal) shows that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg

GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

Kind = Literal["edited", "deleted", "inserted", "backdated", "reordered", "rewritten", "truncated"]


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
            row["id"],
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


@dataclass(frozen=True, slots=True)
class Anchor:
    """The chain's head as recorded outside the database: position ``seq`` held the row
    whose hash is ``hash`` (32 bytes) when it was taken (``taken_at``)."""

    seq: int
    hash: bytes
    row_id: int | None = None
    at: str | None = None
    taken_at: str | None = None
    # The first position checked for time and id order (migration 0013): moving it
    # later would exempt rows from those checks.
    strict_from: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "seq": self.seq,
                "hash": self.hash.hex(),
                "id": self.row_id,
                "at": self.at,
                "taken_at": self.taken_at,
                "strict_from": self.strict_from,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> Anchor:
        data = json.loads(line)
        digest = bytes.fromhex(data["hash"])
        if not isinstance(data["seq"], int) or data["seq"] < 0 or len(digest) != 32:
            raise ValueError("an anchor needs seq >= 0 and a 32-byte hash")
        strict = data.get("strict_from")
        if strict is not None and not isinstance(strict, int):
            raise ValueError("strict_from must be an integer")
        return cls(
            data["seq"], digest, data.get("id"), data.get("at"), data.get("taken_at"), strict
        )


def read_anchors(path: Path) -> list[Anchor]:
    """The anchors in a JSON-lines file (``homevitals audit anchor --to``); a line that
    is not an anchor raises ``ValueError`` naming it."""
    anchors: list[Anchor] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            anchors.append(Anchor.from_json(line))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{number}: not an audit anchor ({e})") from e
    return anchors


@dataclass
class Report:
    rows: int = 0
    head_seq: int = 0
    head_hash: bytes = GENESIS
    head_id: int | None = None
    head_at: datetime | None = None
    strict_from: int = 1
    anchors: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def anchor(self, taken_at: datetime) -> Anchor:
        """This verified head as an anchor to keep outside the database."""
        return Anchor(
            self.head_seq,
            self.head_hash,
            self.head_id,
            None if self.head_at is None else self.head_at.astimezone(UTC).isoformat(),
            taken_at.astimezone(UTC).isoformat(),
            self.strict_from,
        )


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


def verify(
    conn: psycopg.Connection[Any], max_findings: int = 50, anchors: Iterable[Anchor] = ()
) -> Report:
    """Walk the chain in order and report what does not hold (at most ``max_findings``),
    ``anchors`` included.  On an autocommit connection it reads one snapshot (writers
    may go on meanwhile); otherwise it reads inside the caller's transaction."""
    if not conn.autocommit:
        return _verify(conn, max_findings, list(anchors))
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return _verify(conn, max_findings, list(anchors))


def _verify(conn: psycopg.Connection[Any], max_findings: int, anchors: list[Anchor]) -> Report:
    report = Report(anchors=len(anchors))
    head = conn.execute("SELECT seq, hash, last_id, strict_from FROM audit_chain_head").fetchone()
    strict_from = report.strict_from = 1 if head is None else int(head[3])
    for a in anchors:
        if a.strict_from is not None and strict_from > a.strict_from:
            report.findings.append(
                Finding(
                    "rewritten",
                    None,
                    strict_from,
                    f"the chain head's strict_from moved from position {a.strict_from}"
                    f" (anchored{_when(a)}) to {strict_from}: rows exempted from the time"
                    " and id checks",
                )
            )
            break
    outside = conn.execute(
        "SELECT id FROM audit_log WHERE chain_seq IS NULL ORDER BY id LIMIT %s",
        (max_findings,),
    ).fetchall()
    report.findings += [
        Finding("inserted", int(r[0]), None, f"row {r[0]} is outside the chain (no chain_seq)")
        for r in outside
    ]
    anchored: dict[int, list[Anchor]] = {}
    for a in anchors:
        anchored.setdefault(a.seq, []).append(a)
    prev_seq, prev_hash = 0, GENESIS
    prev_id: int | None = None
    prev_at: datetime | None = None
    for row in _rows(conn):
        report.rows += 1
        seq, rid, at = int(row["chain_seq"]), int(row["id"]), row["at"]
        stored_prev = bytes(row["prev_hash"] or b"")
        stored_hash = bytes(row["row_hash"] or b"")
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
        elif seq >= strict_from and prev_id is not None:
            # From migration 0013 on the trigger hands out ids one by one and the time
            # from the database's clock, both under the chain lock.
            if rid <= prev_id:
                report.findings.append(
                    Finding(
                        "reordered",
                        rid,
                        seq,
                        f"row {rid} (position {seq}) has an id not above the row before it"
                        f" ({prev_id})",
                    )
                )
            elif rid > prev_id + 1 and seq > strict_from:
                report.findings.append(
                    Finding(
                        "deleted",
                        rid,
                        seq,
                        f"row id(s) {prev_id + 1}..{rid - 1} missing before row {rid}"
                        f" (position {seq})",
                    )
                )
        if seq >= strict_from and prev_at is not None and at < prev_at:
            report.findings.append(
                Finding(
                    "backdated",
                    rid,
                    seq,
                    f"row {rid} (position {seq}) is dated {at.astimezone(UTC).isoformat()},"
                    f" before the row before it ({prev_at.astimezone(UTC).isoformat()})",
                )
            )
        if row_hash(stored_prev, row) != stored_hash:
            report.findings.append(
                Finding(
                    "edited",
                    rid,
                    seq,
                    f"row {rid} (position {seq}) was edited: its content does not match its hash",
                )
            )
        for a in anchored.get(seq, ()):
            if a.hash != stored_hash:
                report.findings.append(_rewritten(a, f"row {rid} now has {stored_hash.hex()}"))
        prev_seq, prev_hash, prev_id, prev_at = seq, stored_hash, rid, at
        report.head_id, report.head_at = rid, at
        if len(report.findings) >= max_findings:
            return report
    if head is not None:
        report.head_seq, report.head_hash = int(head[0]), bytes(head[1])
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
    beyond = [a for a in anchors if a.seq > prev_seq]
    if beyond:
        newest = max(beyond, key=lambda a: a.seq)
        report.findings.append(
            Finding(
                "truncated",
                None,
                newest.seq,
                f"the chain ends at position {prev_seq} but position {newest.seq} was"
                f" anchored{_when(newest)}: {len(beyond)} anchor(s) lie beyond the end",
            )
        )
    for a in anchored.get(0, ()):
        if a.hash != GENESIS:
            report.findings.append(_rewritten(a, "the genesis hash is all zeros"))
    return report


def _when(a: Anchor) -> str:
    return f" at {a.taken_at}" if a.taken_at else ""


def _rewritten(a: Anchor, now: str) -> Finding:
    return Finding(
        "rewritten",
        a.row_id,
        a.seq,
        f"chain position {a.seq} no longer has the hash anchored{_when(a)} ({a.hash.hex()}); {now}",
    )
