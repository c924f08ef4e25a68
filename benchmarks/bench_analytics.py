"""Analytics on the database: one bulk read + vectorized metrics vs a per-patient loop.

    .venv/bin/python benchmarks/bench_analytics.py [--patients 1000] [--days 14]

Runs its own PostgreSQL+TimescaleDB (``.homevitals/bench-analytics``, a free port; no
broker: analytics never touches MQTT).  Loads ``patients`` x ``days`` of 5-minute CGM
(the synthetic traces of bench_metrics_core.py: meals, drift, noise, ~3 % dropped
readings, occasional 5-hour sensor gaps) into the ``glucose`` hypertable with one binary
COPY stream built by numpy, then times:

  vectorized   - ``analytics.store.glucose_frame`` for all patients (one query), then
                 ``glucose_metrics`` for all of them at once
  per patient  - for each patient one query and the obvious pandas computations of the
                 same metrics (bench_metrics_core.naive_metrics), as a straightforward
                 implementation would do

checks that both agree, and prints the times and the ratio.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_metrics_core import START, naive_metrics, synthetic_cgm

from analytics.metrics import GlucoseSource, Period, glucose_metrics
from analytics.store import glucose_frame
from homevitals.services.postgres import LocalPostgres
from homevitals.services.system import free_port
from ingest.migrations import migrate

STATE = Path(__file__).resolve().parent.parent / ".homevitals" / "bench-analytics"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC in Unix microseconds
# One row of a PostgreSQL binary COPY: field count, then (length, bytes) per field.
ROW = np.dtype(
    [
        ("nfields", ">i2"),
        ("len_time", ">i4"),
        ("time", ">i8"),  # timestamptz: microseconds since 2000-01-01 UTC
        ("len_id", ">i4"),
        ("reading_id", "V16"),  # uuid
        ("len_device", ">i4"),
        ("device", "S16"),
        ("len_patient", ">i4"),
        ("patient", ">i8"),
        ("len_source", ">i4"),
        ("source", "S3"),
        ("len_mgdl", ">i4"),
        ("mgdl", ">f8"),
    ]
)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
COPY_TRAILER = b"\xff\xff"
GLUCOSE_INDEXES = ("glucose_identity", "glucose_patient_time", "glucose_device_time")


def binary_rows(frame: pd.DataFrame, db_ids: dict[str, int], seed: int = 7) -> bytes:
    n = len(frame)
    rows = np.zeros(n, dtype=ROW)
    rows["nfields"] = 6
    for name, size in (
        ("len_time", 8),
        ("len_id", 16),
        ("len_device", 16),
        ("len_patient", 8),
        ("len_source", 3),
        ("len_mgdl", 8),
    ):
        rows[name] = size
    times = pd.DatetimeIndex(frame["time"]).as_unit("us").asi8
    rows["time"] = times - PG_EPOCH_US
    rows["reading_id"] = np.frombuffer(np.random.default_rng(seed).bytes(16 * n), dtype="V16")
    pid = frame["patient_id"].map(db_ids).to_numpy(dtype=np.int64)
    rows["patient"] = pid
    rows["device"] = np.char.add(b"bench-cgm-", np.char.zfill(pid.astype("S6"), 6))
    rows["source"] = b"cgm"
    rows["mgdl"] = frame["mgdl"].to_numpy(dtype=np.float64)
    return rows.tobytes()


def load(conn: psycopg.Connection[Any], frame: pd.DataFrame, patients: int) -> list[int]:
    """Patients, then every reading in one binary COPY (indexes rebuilt afterwards)."""
    ids = [
        int(r[0])
        for r in conn.execute(
            "INSERT INTO patients (external_id, timezone)"
            " SELECT 'bench-' || lpad(g::text, 6, '0'), 'UTC' FROM generate_series(0, %s) g"
            " ORDER BY g RETURNING id",
            (patients - 1,),
        ).fetchall()
    ]
    db_ids = {f"p{i:05d}": pid for i, pid in enumerate(ids)}
    definitions = {
        name: str(row[0])
        for name in GLUCOSE_INDEXES
        if (row := conn.execute("SELECT pg_get_indexdef(%s::regclass)", (name,)).fetchone())
    }
    for name in definitions:
        conn.execute(f"DROP INDEX {name}")
    payload = binary_rows(frame, db_ids)
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY glucose (time, reading_id, device_id, patient_id, source, mgdl)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.write(COPY_HEADER)
        step = 64 * 1024 * ROW.itemsize
        for i in range(0, len(payload), step):
            copy.write(payload[i : i + step])
        copy.write(COPY_TRAILER)
    for definition in definitions.values():
        conn.execute(definition)
    conn.execute("ANALYZE glucose")
    return ids


# The same rows and columns as analytics.store.GLUCOSE_QUERY, as a fixed-width binary COPY
# (no NULLs: a missing number is NaN) that numpy reads without a Python object per value.
COLUMNAR_QUERY = """
COPY (
  SELECT patient_id, time, coalesce(mgdl, 'NaN'::float8),
         'result_above_range' = ANY(conditions), 'result_below_range' = ANY(conditions)
  FROM glucose
  WHERE patient_id = ANY(%s) AND source = 'cgm' AND time >= %s AND time < %s
    AND NOT ('control_solution' = ANY(conditions))
  ORDER BY patient_id, time
) TO STDOUT (FORMAT BINARY)
"""
OUT_ROW = np.dtype(
    [
        ("nfields", ">i2"),
        ("len_patient", ">i4"),
        ("patient", ">i8"),
        ("len_time", ">i4"),
        ("time", ">i8"),
        ("len_mgdl", ">i4"),
        ("mgdl", ">f8"),
        ("len_hi", ">i4"),
        ("hi", "?"),
        ("len_lo", ">i4"),
        ("lo", "?"),
    ]
)


def columnar_frame(conn: psycopg.Connection[Any], ids: list[int], period: Period) -> pd.DataFrame:
    """What a columnar analytics.store.glucose_frame could be: binary COPY parsed by numpy,
    patient ids categorical (codes, not a str object per row)."""
    buf = bytearray()
    with conn.cursor() as cur, cur.copy(COLUMNAR_QUERY, (ids, period.start, period.end)) as copy:
        for block in copy:
            buf += block
    body = len(buf) - len(COPY_HEADER) - len(COPY_TRAILER)
    rows = np.frombuffer(
        buf, dtype=OUT_ROW, offset=len(COPY_HEADER), count=body // OUT_ROW.itemsize
    )
    assert body % OUT_ROW.itemsize == 0 and bool((rows["nfields"] == 5).all())
    order = np.sort(np.asarray(ids, dtype=np.int64))
    codes = np.searchsorted(order, rows["patient"].astype(np.int64))
    return pd.DataFrame(
        {
            "patient_id": pd.Categorical.from_codes(
                codes, categories=pd.Index([str(i) for i in order])
            ),
            "time": pd.to_datetime(
                rows["time"].astype(np.int64) + PG_EPOCH_US, unit="us", utc=True
            ),
            "mgdl": rows["mgdl"].astype(np.float64),
            "result_above_range": rows["hi"].copy(),
            "result_below_range": rows["lo"].copy(),
        }
    )


PER_PATIENT_QUERY = (
    "SELECT time, mgdl FROM glucose WHERE patient_id = %s AND source = 'cgm'"
    " AND time >= %s AND time < %s ORDER BY time"
)


def per_patient(conn: psycopg.Connection[Any], ids: list[int], period: Period) -> pd.DataFrame:
    parts = []
    for pid in ids:
        rows = conn.execute(PER_PATIENT_QUERY, (pid, period.start, period.end)).fetchall()
        df = pd.DataFrame(rows, columns=["time", "mgdl"])
        df["time"] = pd.to_datetime(df["time"], utc=True)
        df["mgdl"] = df["mgdl"].astype("float64")
        df["patient_id"] = str(pid)
        parts.append(naive_metrics(df, period))
    return pd.concat(parts)


def compare(fast: pd.DataFrame, slow: pd.DataFrame) -> float:
    worst = 0.0
    for col in slow.columns:
        a = fast[col].to_numpy(dtype=float)
        b = slow.loc[fast.index, col].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(a), np.isnan(b)), col
        ok = ~np.isnan(a)
        if ok.any():
            worst = max(
                worst, float((np.abs(a[ok] - b[ok]) / np.maximum(1.0, np.abs(b[ok]))).max())
            )
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--keep", action="store_true", help="leave the database running")
    args = parser.parse_args()

    if STATE.exists():
        LocalPostgres(STATE, 0).stop()
        shutil.rmtree(STATE)
    STATE.mkdir(parents=True)
    pg = LocalPostgres(STATE, free_port())
    pg.start()
    try:
        url = pg.create_database("bench")
        migrate(url)
        t0 = time.perf_counter()
        frame = synthetic_cgm(args.patients, args.days)
        t_gen = time.perf_counter() - t0
        with psycopg.connect(url, autocommit=True) as conn:
            t0 = time.perf_counter()
            ids = load(conn, frame, args.patients)
            t_load = time.perf_counter() - t0
            print(
                f"loaded {len(frame):,} CGM rows for {args.patients} patients x {args.days} days"
                f" in {t_load:.1f} s ({len(frame) / t_load:,.0f} rows/s incl. index builds;"
                f" {t_gen:.1f} s to generate)"
            )
            period = Period(START, START + pd.Timedelta(days=args.days))
            start, end = period.start.to_pydatetime(), period.end.to_pydatetime()

            t0 = time.perf_counter()
            bulk = glucose_frame(conn, ids, start - timedelta(0), end, "cgm")
            t_read = time.perf_counter() - t0
            t0 = time.perf_counter()
            fast = glucose_metrics(
                bulk, period, source=GlucoseSource.CGM, patients=[str(i) for i in ids]
            )
            t_compute = time.perf_counter() - t0
            t0 = time.perf_counter()
            glucose_metrics(
                bulk,
                period,
                source=GlucoseSource.CGM,
                patients=[str(i) for i in ids],
                variability=False,
            )
            t_core = time.perf_counter() - t0

            t0 = time.perf_counter()
            columnar = columnar_frame(conn, ids, period)
            t_read_col = time.perf_counter() - t0
            t0 = time.perf_counter()
            fast_col = glucose_metrics(
                columnar, period, source=GlucoseSource.CGM, patients=[str(i) for i in ids]
            )
            t_compute_col = time.perf_counter() - t0

            t0 = time.perf_counter()
            slow = per_patient(conn, ids, period)
            t_slow = time.perf_counter() - t0

        worst = compare(fast, slow)
        print(f"agreement: max relative difference over {len(slow.columns)} metrics = {worst:.2e}")
        assert worst < 1e-6, worst
        pd.testing.assert_frame_equal(fast, fast_col)  # same rows in, same metrics out
        t_fast = t_read + t_compute
        t_col = t_read_col + t_compute_col
        print(f"{'':40} {'seconds':>8}")
        print(f"{'vectorized: bulk read (glucose_frame)':40} {t_read:8.2f}")
        print(f"{'vectorized: glucose_metrics, all':40} {t_compute:8.2f}")
        print(f"{'  (of which without MAGE/CONGA/MODD)':40} {t_core:8.2f}")
        print(f"{'vectorized total':40} {t_fast:8.2f}")
        print(f"{'columnar read (binary COPY + numpy)':40} {t_read_col:8.2f}")
        print(f"{'glucose_metrics on it (categorical ids)':40} {t_compute_col:8.2f}")
        print(f"{'vectorized total, columnar read':40} {t_col:8.2f}")
        print(f"{'per patient: query + pandas, total':40} {t_slow:8.2f}")
        print(f"ratio per-patient / vectorized (glucose_frame): {t_slow / t_fast:.1f}x")
        print(f"ratio per-patient / vectorized (columnar read): {t_slow / t_col:.1f}x")
    finally:
        if not args.keep:
            pg.stop()


if __name__ == "__main__":
    main()
