"""Bulk reads of readings into the analytics column contracts (one query per kind).

Reads are columnar: the database streams a fixed-width binary COPY (no NULLs: a missing
number is NaN) that numpy reinterprets in place, so no Python object is built per value
(4x faster than fetching rows as tuples for a 1,000-patient pass).  Patient ids come
back categorical.  Control-solution tests are not patient readings and never reach the
metrics.

Glucose frames: ``patient_id, time, mgdl, result_above_range, result_below_range``;
BP frames: ``patient_id, time, systolic, diastolic, pulse, irregular_pulse,
body_movement``.  ``patient_id`` is the database id as text.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
COPY_TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds

GLUCOSE_QUERY = """
COPY (
  SELECT patient_id, time, coalesce(mgdl, 'NaN'::float8),
         'result_above_range' = ANY(conditions), 'result_below_range' = ANY(conditions),
         source = 'cgm'
  FROM glucose
  WHERE patient_id = ANY(%s) AND source = ANY(%s) AND time >= %s AND time < %s
    AND NOT ('control_solution' = ANY(conditions))
  ORDER BY patient_id, time
) TO STDOUT (FORMAT BINARY)
"""
SOURCES = ("cgm", "smbg")
BP = "bp"  # the blood-pressure frame, beside the glucose sources

BP_QUERY = """
COPY (
  SELECT patient_id, time, systolic, diastolic, coalesce(pulse, 'NaN'::float8),
         'irregular_pulse' = ANY(conditions), 'body_movement' = ANY(conditions)
  FROM blood_pressure
  WHERE patient_id = ANY(%s) AND time >= %s AND time < %s
  ORDER BY patient_id, time
) TO STDOUT (FORMAT BINARY)
"""


def _row(fields: list[tuple[str, str]]) -> np.dtype[Any]:
    """A binary COPY row: int16 field count, then (int32 length, value) per field."""
    spec: list[tuple[str, str]] = [("nfields", ">i2")]
    for name, kind in fields:
        spec += [(f"len_{name}", ">i4"), (name, kind)]
    return np.dtype(spec)


GLUCOSE_ROW = _row(
    [("patient", ">i8"), ("time", ">i8"), ("mgdl", ">f8"), ("hi", "?"), ("lo", "?"), ("cgm", "?")]
)
BP_ROW = _row(
    [("patient", ">i8"), ("time", ">i8"), ("systolic", ">f8"), ("diastolic", ">f8"),
     ("pulse", ">f8"), ("irregular", "?"), ("movement", "?")]
)  # fmt: skip

GLUCOSE_COLUMNS = ["patient_id", "time", "mgdl", "result_above_range", "result_below_range"]
BP_COLUMNS = [
    "patient_id",
    "time",
    "systolic",
    "diastolic",
    "pulse",
    "irregular_pulse",
    "body_movement",
]


def _copy_rows(
    conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...], row: np.dtype[Any]
) -> Any:
    buf = bytearray()
    with conn.cursor() as cur, cur.copy(query, params) as copy:
        for block in copy:
            buf += block
    body = len(buf) - len(COPY_HEADER) - len(COPY_TRAILER)
    if body < 0 or body % row.itemsize or not buf.startswith(COPY_HEADER):
        raise RuntimeError(f"unexpected binary COPY stream ({len(buf)} bytes)")
    return np.frombuffer(buf, dtype=row, offset=len(COPY_HEADER), count=body // row.itemsize)


def _patients(rows: Any, patients: Sequence[int]) -> Any:
    order = np.unique(np.asarray(patients, dtype=np.int64))
    codes = np.searchsorted(order, rows["patient"].astype(np.int64))
    return pd.Categorical.from_codes(codes, categories=pd.Index([str(i) for i in order]))


def _times(rows: Any) -> Any:
    return pd.to_datetime(rows["time"].astype(np.int64) + PG_EPOCH_US, unit="us", utc=True)


def glucose_frames(
    conn: psycopg.Connection[Any],
    patients: Sequence[int],
    start: datetime,
    end: datetime,
    sources: Sequence[str] = SOURCES,
) -> dict[str, pd.DataFrame]:
    """Frames per glucose source (``cgm``, ``smbg``) from one COPY."""
    rows = _copy_rows(conn, GLUCOSE_QUERY, (list(patients), list(sources), start, end), GLUCOSE_ROW)
    frame = pd.DataFrame(
        {
            "patient_id": _patients(rows, patients),
            "time": _times(rows),
            "mgdl": rows["mgdl"].astype(np.float64),
            "result_above_range": rows["hi"].astype(bool),
            "result_below_range": rows["lo"].astype(bool),
        }
    )
    cgm = rows["cgm"].astype(bool)
    return {
        source: frame[cgm if source == "cgm" else ~cgm].reset_index(drop=True) for source in sources
    }


def glucose_frame(
    conn: psycopg.Connection[Any],
    patients: Sequence[int],
    start: datetime,
    end: datetime,
    source: str,
) -> pd.DataFrame:
    return glucose_frames(conn, patients, start, end, (source,))[source]


def bp_frame(
    conn: psycopg.Connection[Any], patients: Sequence[int], start: datetime, end: datetime
) -> pd.DataFrame:
    rows = _copy_rows(conn, BP_QUERY, (list(patients), start, end), BP_ROW)
    return pd.DataFrame(
        {
            "patient_id": _patients(rows, patients),
            "time": _times(rows),
            "systolic": rows["systolic"].astype(np.float64),
            "diastolic": rows["diastolic"].astype(np.float64),
            "pulse": rows["pulse"].astype(np.float64),
            "irregular_pulse": rows["irregular"].astype(bool),
            "body_movement": rows["movement"].astype(bool),
        }
    )


def load_frames(
    conn: psycopg.Connection[Any],
    patients: Sequence[int],
    start: datetime,
    end: datetime,
    kinds: Collection[str],
) -> dict[str, pd.DataFrame | None]:
    """The frames ``kinds`` (``cgm``, ``smbg``, ``bp``) asks for, the others ``None``:
    glucose sources from one COPY, blood pressure from another."""
    frames: dict[str, pd.DataFrame | None] = {kind: None for kind in (*SOURCES, BP)}
    sources = tuple(s for s in SOURCES if s in kinds)
    if sources:
        frames.update(glucose_frames(conn, patients, start, end, sources))
    if BP in kinds:
        frames[BP] = bp_frame(conn, patients, start, end)
    return frames


def patient_timezones(conn: psycopg.Connection[Any], patients: Sequence[int]) -> dict[str, str]:
    rows = conn.execute(
        "SELECT id::text, timezone FROM patients WHERE id = ANY(%s)", (list(patients),)
    ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def resolve_patient(conn: psycopg.Connection[Any], external_id: str) -> int | None:
    row = conn.execute("SELECT id FROM patients WHERE external_id = %s", (external_id,)).fetchone()
    return None if row is None else int(row[0])
