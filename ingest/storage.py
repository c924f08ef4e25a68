"""TimescaleDB edition detection, compression (where available) and retention.

The Apache-licensed build (what Debian 12 users build from source) has hypertables,
``time_bucket`` and ``drop_chunks`` but no compression, continuous aggregates or
background policies.  So nothing here assumes the edition: it is detected, compression
and its policy are used only on the Community edition, and retention is always run by
ingest itself (``drop_chunks`` on a schedule, one worker at a time) instead of a
TimescaleDB background job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger("homevitals.ingest.storage")

HYPERTABLES = ("glucose", "blood_pressure", "body_readings")
_RETENTION_LOCK = 0x48560002


@dataclass(frozen=True, slots=True)
class Edition:
    license: str  # "apache" or "timescale" (Community)
    version: str

    @property
    def community(self) -> bool:
        return self.license == "timescale"

    @property
    def name(self) -> str:
        return "community" if self.community else self.license


def detect_edition(conn: psycopg.Connection[Any]) -> Edition:
    row = conn.execute(
        "SELECT current_setting('timescaledb.license', true),"
        " (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    if row is None or row[1] is None:
        raise RuntimeError("the timescaledb extension is not installed in this database")
    return Edition(str(row[0] or "apache"), str(row[1]))


def enable_compression(
    conn: psycopg.Connection[Any], after: timedelta = timedelta(days=14)
) -> bool:
    """Compress chunks older than ``after`` (Community edition only); returns whether on."""
    edition = detect_edition(conn)
    if not edition.community:
        log.info(
            "TimescaleDB %s (%s): no compression; raw chunks stay uncompressed",
            edition.version,
            edition.name,
        )
        return False
    for table in HYPERTABLES:
        conn.execute(
            sql.SQL(
                "ALTER TABLE {} SET (timescaledb.compress,"
                " timescaledb.compress_segmentby = 'patient_id', timescaledb.compress_orderby = 'time DESC')"
            ).format(sql.Identifier(table))
        )
        conn.execute("SELECT add_compression_policy(%s, %s, if_not_exists => true)", (table, after))
    return True


def apply_retention(conn: psycopg.Connection[Any], keep: timedelta) -> dict[str, int]:
    """Drop whole chunks older than ``keep`` (``drop_chunks``, any edition).

    Runs under an advisory lock so that of many ingest workers one does it; returns the
    chunks dropped per table (empty if another worker holds the lock).
    """
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (_RETENTION_LOCK,)).fetchone()
    if not got or not got[0]:
        return {}
    try:
        dropped: dict[str, int] = {}
        for table in HYPERTABLES:
            rows = conn.execute(
                "SELECT drop_chunks(%s, older_than => %s)", (table, keep)
            ).fetchall()
            dropped[table] = len(rows)
            if rows:
                # drop_chunks fires no DELETE trigger: release the claims of the readings
                # it dropped (migration 0008), or the table of claims only grows.
                conn.execute(
                    sql.SQL(
                        "DELETE FROM reading_identity i WHERE i.tbl = %s"
                        " AND i.time < now() - %s::interval AND NOT EXISTS"
                        " (SELECT 1 FROM {} r WHERE r.reading_id = i.reading_id"
                        " AND r.time = i.time)"
                    ).format(sql.Identifier(table)),
                    (table, keep),
                )
        if any(dropped.values()):
            log.info("retention (%s): dropped chunks %s", keep, dropped)
        return dropped
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_RETENTION_LOCK,))
