"""API benchmark: the 14-day glucose summary under 50 concurrent clients, against a
trivial endpoint of the same app (``/api/v1/health``), both on loopback.

Starts its own PostgreSQL+TimescaleDB in ``.homevitals/bench-api`` on a free port,
seeds patients with 14 days of 5-minute CGM plus fingersticks, runs uvicorn (``--workers``
processes, default 1) and drives it with httpx's async client.  Prints throughput and
p50/p99 latency for each endpoint.  Bounded: a fixed number of requests per endpoint.

    .venv/bin/python benchmarks/bench_api.py [--requests 600] [--clients 50] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.bootstrap import add_to_panel, create_user  # noqa: E402
from api.core.config import ApiSettings  # noqa: E402
from api.main import create_app  # noqa: E402
from homevitals.services.postgres import LocalPostgres  # noqa: E402
from homevitals.services.system import free_port  # noqa: E402
from ingest.migrations import migrate  # noqa: E402
from ingest.patients import upsert_patient  # noqa: E402

STATE = REPO / ".homevitals" / "bench-api"
PASSWORD = "benchmark password 1"


def app_factory() -> Any:
    """uvicorn --factory entry: settings from HOMEVITALS_API_* in the environment."""
    return create_app(ApiSettings())


def seed(url: str, patients: int) -> list[int]:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(days=14)
    rng = np.random.default_rng(1)
    ids: list[int] = []
    with psycopg.connect(url, autocommit=True) as conn:
        create_user(conn, "bench-dr", PASSWORD, "clinician")
        for p in range(patients):
            pid = upsert_patient(conn, f"bench-{p}", "America/New_York", f"Bench Patient{p}")
            add_to_panel(conn, "bench-dr", pid)
            ids.append(pid)
            n = 14 * 288
            minutes = np.arange(n) * 5
            values = 140 + 50 * np.sin(2 * np.pi * (minutes % 1440) / 1440) + rng.normal(0, 20, n)
            with conn.cursor().copy(
                "COPY glucose (time, reading_id, device_id, patient_id, source, mgdl, gateway_id)"
                " FROM STDIN"
            ) as copy:
                for m, v in zip(minutes.tolist(), values.tolist(), strict=True):
                    copy.write_row(
                        (
                            start + timedelta(minutes=m),
                            uuid.uuid4(),
                            f"cgm-{p}",
                            pid,
                            "cgm",
                            round(max(v, 40.0), 1),
                            f"gw-{p}",
                        )
                    )
                for d in range(14):
                    for h in (7, 12, 19):
                        copy.write_row(
                            (
                                start + timedelta(days=d, hours=h),
                                uuid.uuid4(),
                                f"meter-{p}",
                                pid,
                                "smbg",
                                float(rng.integers(70, 250)),
                                f"gw-{p}",
                            )
                        )
    return ids


async def drive(
    base: str, paths: list[str], clients: int, headers: dict[str, str]
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[str] = asyncio.Queue()
    for path in paths:
        queue.put_nowait(path)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=60
    ) as client:

        async def worker() -> None:
            nonlocal errors
            while True:
                try:
                    path = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, errors


def report(name: str, elapsed: float, latencies: list[float], errors: int) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(
        f"{name:<34} {len(ms):>6} req  {len(ms) / elapsed:>8.1f} req/s  "
        f"p50 {statistics.median(ms):>7.1f} ms  p99 {p99:>7.1f} ms  errors {errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600, help="summary requests")
    parser.add_argument("--trivial-requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()

    STATE.mkdir(parents=True, exist_ok=True)
    cluster = LocalPostgres(STATE, free_port())
    cluster.stop()
    cluster.start()
    server: subprocess.Popen[bytes] | None = None
    try:
        url = cluster.create_database("hv_bench_api")
        migrate(url)
        patients = seed(url, args.patients)
        port = free_port()
        env = {
            **os.environ,
            "HOMEVITALS_API_DATABASE_URL": url,
            "HOMEVITALS_API_JWT_SECRET": secrets.token_urlsafe(48),
            "HOMEVITALS_API_POOL_MAX_SIZE": "16",
            "HOMEVITALS_API_LOGIN_MAX_FAILURES": "1000",
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench_api:app_factory",
                "--factory",
                "--app-dir",
                str(REPO / "benchmarks"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--workers",
                str(args.workers),
            ],
            env=env,
            cwd=REPO,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("uvicorn did not start")
            time.sleep(0.2)
        token = httpx.post(
            f"{base}/api/v1/auth/token", data={"username": "bench-dr", "password": PASSWORD}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        summary_paths = [
            f"/api/v1/patients/{patients[i % len(patients)]}/glucose/summary"
            for i in range(args.requests)
        ]
        print(
            f"HomeVitals API benchmark: {args.clients} concurrent clients,"
            f" uvicorn {args.workers} worker(s),"
            f" {os.cpu_count()} CPUs; 14-day summary over {14 * 288} CGM + 42 SMBG readings"
        )
        asyncio.run(drive(base, summary_paths[:50], args.clients, headers))  # warm-up
        trivial = asyncio.run(
            drive(base, ["/api/v1/health"] * args.trivial_requests, args.clients, {})
        )
        report("GET /api/v1/health (trivial)", *trivial)
        summary = asyncio.run(drive(base, summary_paths, args.clients, headers))
        report("GET .../glucose/summary (14 d)", *summary)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        cluster.stop()


if __name__ == "__main__":
    main()
