"""One transaction per batch: readings by COPY, dead letters, activity marks, NOTIFY.

Fast path, inside a savepoint: binary COPY of the batch's identity claims into
``reading_identity`` (keyed by the reading id alone: migration 0008), then binary COPY
of the rows straight into the hypertable.  If the batch holds a source record already
stored (a re-send after a lost PUBACK, a redelivery after a worker died, a re-fetch with
another skew-corrected time, a full re-download), the claim's primary key rejects the
COPY; the savepoint is rolled back and that table's rows go through a temporary staging
table: claims ``ON CONFLICT DO NOTHING``, and only the rows claimed are inserted.
Duplicates are rare, so nearly every batch costs two COPYs per table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import BytesBinaryDumper

from ingest.columns import COPY_TABLES, UUID_AS_BYTES, Rejected, Split
from ingest.registry import BindingCache

NOTIFY_CHANNEL = "hv_readings"

# The tables' COPY fields and row builders: ``columns.COPY_TABLES`` (one structure per
# table, checked against the kinds' declaration).


@dataclass(slots=True)
class WriteResult:
    inserted: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    deduplicated_batches: int = 0
    patients: set[int] = field(default_factory=set)

    def merged(self, other: WriteResult) -> WriteResult:
        def add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}

        return WriteResult(
            add(self.inserted, other.inserted),
            add(self.duplicates, other.duplicates),
            self.dead_letters + other.dead_letters,
            self.deduplicated_batches + other.deduplicated_batches,
            self.patients | other.patients,
        )


def register_dumpers(conn: psycopg.Connection[Any]) -> None:
    """The C bytes dumper for ``bytea`` fields: COPY picks dumpers by column type, and the
    last one registered for ``bytea`` is psycopg's pure-Python ``Binary`` wrapper."""
    conn.adapters.register_dumper(bytes, BytesBinaryDumper)


def _copy(
    cur: psycopg.Cursor[Any], target: sql.Composable, table: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    spec = COPY_TABLES[table]
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, columns)
    with cur.copy(statement) as copy:
        copy.set_types(spec.types)
        for row in rows:
            copy.write_row(row)


def _claim(cur: psycopg.Cursor[Any], table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """COPY the rows' identity claims (reading id, table, time: the first two columns of
    every readings row) into ``reading_identity``; a claimed id raises UniqueViolation.

    In id order: two workers claiming overlapping batches then wait for each other in
    the same order, instead of deadlocking."""
    with cur.copy(
        "COPY reading_identity (reading_id, tbl, time) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types([UUID_AS_BYTES, "text", "timestamptz"])
        for rid, when in sorted((row[1], row[0]) for row in rows):
            copy.write_row((rid, table, when))


def _write_table(
    cur: psycopg.Cursor[Any], table: str, rows: list[tuple[Any, ...]], result: WriteResult
) -> None:
    try:
        with cur.connection.transaction():
            _claim(cur, table, rows)
            _copy(cur, sql.Identifier(table), table, rows)
        result.inserted[table] = result.inserted.get(table, 0) + len(rows)
        return
    except psycopg.errors.UniqueViolation:
        pass
    # Some source record of the batch is stored already (or twice in it): claim through a
    # staging table, skipping claimed ids, and insert only the rows claimed here.
    result.deduplicated_batches += 1
    staging = sql.Identifier(f"staging_{table}")
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        ).format(staging, sql.Identifier(table))
    )
    _copy(cur, staging, table, rows)
    names = COPY_TABLES[table].columns
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in names)
    cur.execute(
        sql.SQL(
            "WITH claimed AS ("
            " INSERT INTO reading_identity (reading_id, tbl, time)"
            " SELECT DISTINCT ON (reading_id) reading_id, {tbl}, time FROM {staging}"
            " ORDER BY reading_id, time"
            " ON CONFLICT (reading_id) DO NOTHING RETURNING reading_id, time)"
            " INSERT INTO {table} ({cols})"
            " SELECT DISTINCT ON (s.reading_id) {s_cols} FROM {staging} s"
            " JOIN claimed c ON c.reading_id = s.reading_id AND c.time = s.time"
        ).format(
            tbl=sql.Literal(table),
            staging=staging,
            table=sql.Identifier(table),
            cols=columns,
            s_cols=sql.SQL(", ").join(sql.Identifier("s", c) for c in names),
        )
    )
    inserted = max(cur.rowcount, 0)
    cur.execute(sql.SQL("TRUNCATE {}").format(staging))
    result.inserted[table] = result.inserted.get(table, 0) + inserted
    result.duplicates[table] = result.duplicates.get(table, 0) + len(rows) - inserted


def write_dead_letters(cur: psycopg.Cursor[Any], rejected: Sequence[Rejected]) -> None:
    if not rejected:
        return
    with cur.copy(
        "COPY dead_letters (topic, gateway_id, device_id, payload, reason, reading_index)"
        " FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["text", "text", "text", "bytea", "text", "int4"])
        for r in rejected:
            copy.write_row((r.topic, r.gateway, r.device, r.payload, r.reason, r.index))


def write_split(
    conn: psycopg.Connection[Any],
    split: Split,
    bindings: BindingCache,
    extra_rejected: Sequence[Rejected] = (),
) -> WriteResult:
    """Write a validated batch in the caller's transaction (the caller commits)."""
    result = WriteResult()
    register_dumpers(conn)
    latest: dict[int, datetime] = {}
    with conn.cursor() as cur:
        readings = split.flat.readings
        for table, located in split.by_table.items():
            patients = bindings.patients_for([readings[i] for i in located])
            for i, patient in zip(located, patients, strict=True):
                if patient is not None:
                    when = readings[i].time
                    seen = latest.get(patient)
                    if seen is None or when > seen:
                        latest[patient] = when
            rows = COPY_TABLES[table].rows(split.flat, located, patients)
            _write_table(cur, table, rows, result)
        rejected = [*split.rejected, *extra_rejected]
        write_dead_letters(cur, rejected)
        result.dead_letters = len(rejected)
        if latest:
            ids = sorted(latest)
            cur.execute(
                "INSERT INTO patient_activity (patient_id, last_reading_at, last_ingest_at)"
                " SELECT p, t, now() FROM unnest(%s::int8[], %s::timestamptz[]) AS u(p, t)"
                " ON CONFLICT (patient_id) DO UPDATE SET last_ingest_at = now(),"
                " last_reading_at = greatest(patient_activity.last_reading_at,"
                " EXCLUDED.last_reading_at)",
                (ids, [latest[i] for i in ids]),
            )
            cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, ",".join(str(i) for i in ids)))
            result.patients.update(ids)
    return result
