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
from analytics.store import COPY_HEADER, COPY_TRAILER, PG_EPOCH_US, glucose_frame
from homevitals.services.postgres import LocalPostgres
from homevitals.services.system import free_port
from ingest.migrations import migrate

STATE = Path(__file__).resolve().parent.parent / ".homevitals" / "bench-analytics"
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
            slow = per_patient(conn, ids, period)
            t_slow = time.perf_counter() - t0

        worst = compare(fast, slow)
        print(f"agreement: max relative difference over {len(slow.columns)} metrics = {worst:.2e}")
        assert worst < 1e-6, worst
        t_fast = t_read + t_compute
        print(f"{'':40} {'seconds':>8}")
        print(f"{'vectorized: bulk read (columnar COPY)':40} {t_read:8.2f}")
        print(f"{'vectorized: glucose_metrics, all':40} {t_compute:8.2f}")
        print(f"{'  (of which without MAGE/CONGA/MODD)':40} {t_core:8.2f}")
        print(f"{'vectorized total':40} {t_fast:8.2f}")
        print(f"{'per patient: query + pandas, total':40} {t_slow:8.2f}")
        print(f"ratio per-patient / vectorized: {t_slow / t_fast:.1f}x")
    finally:
        if not args.keep:
            pg.stop()


if __name__ == "__main__":
    main()
