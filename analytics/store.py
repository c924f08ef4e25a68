"""Bulk reads of readings into the analytics column contracts (one query per kind).

Control-solution tests are not patient readings and never reach the metrics.  Glucose
frames: ``patient_id, time, mgdl, result_above_range, result_below_range``; BP frames:
``patient_id, time, systolic, diastolic, pulse, irregular_pulse, body_movement``.
``patient_id`` is the database id as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import psycopg

GLUCOSE_QUERY = """
SELECT patient_id::text AS patient_id, time, mgdl,
       'result_above_range' = ANY(conditions) AS result_above_range,
       'result_below_range' = ANY(conditions) AS result_below_range
FROM glucose
WHERE patient_id = ANY(%(patients)s) AND source = %(source)s
  AND time >= %(start)s AND time < %(end)s
  AND NOT ('control_solution' = ANY(conditions))
ORDER BY patient_id, time
"""

BP_QUERY = """
SELECT patient_id::text AS patient_id, time, systolic, diastolic, pulse,
       'irregular_pulse' = ANY(conditions) AS irregular_pulse,
       'body_movement' = ANY(conditions) AS body_movement
FROM blood_pressure
WHERE patient_id = ANY(%(patients)s) AND time >= %(start)s AND time < %(end)s
ORDER BY patient_id, time
"""

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


def _frame(
    conn: psycopg.Connection[Any], query: str, params: dict[str, Any], columns: list[str]
) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(query, params)
        rows = cur.fetchall()
    frame = pd.DataFrame(rows, columns=columns)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    for column in columns[2:]:
        if column.startswith(("result_", "irregular", "body_")):
            frame[column] = frame[column].astype(bool)
        else:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["patient_id"] = frame["patient_id"].astype(str)
    return frame


def glucose_frame(
    conn: psycopg.Connection[Any],
    patients: Sequence[int],
    start: datetime,
    end: datetime,
    source: str,
) -> pd.DataFrame:
    params = {"patients": list(patients), "start": start, "end": end, "source": source}
    return _frame(conn, GLUCOSE_QUERY, params, GLUCOSE_COLUMNS)


def bp_frame(
    conn: psycopg.Connection[Any], patients: Sequence[int], start: datetime, end: datetime
) -> pd.DataFrame:
    params = {"patients": list(patients), "start": start, "end": end}
    return _frame(conn, BP_QUERY, params, BP_COLUMNS)


def patient_timezones(conn: psycopg.Connection[Any], patients: Sequence[int]) -> dict[str, str]:
    rows = conn.execute(
        "SELECT id::text, timezone FROM patients WHERE id = ANY(%s)", (list(patients),)
    ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def resolve_patient(conn: psycopg.Connection[Any], external_id: str) -> int | None:
    row = conn.execute("SELECT id FROM patients WHERE external_id = %s", (external_id,)).fetchone()
    return None if row is None else int(row[0])
