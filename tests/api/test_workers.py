"""``homevitals api run --workers 2`` as a real subprocess against the test database:
two uvicorn worker processes serve requests, share the signing key and the sign-in
limit, and the command stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from api_helpers import PASSWORD, Clinic
from waiting import wait_until

from api.bootstrap import create_user
from homevitals.services.system import free_port, pid_alive

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0  # two interpreters importing the app on a busy 2-core machine


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _workers(pid: int) -> list[int]:
    """The uvicorn workers: multiprocessing 'spawn' children of the command."""
    found = []
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            found.append(child)
    return found


def _command(port: int) -> list[str]:
    return [sys.executable, "-m", "homevitals", "api", "run", "--workers", "2", "--port", str(port)]


def _env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEVITALS_")}
    env.update(
        HOMEVITALS_DATABASE_URL=database_url,
        # Any broker URL: with one set, the command provisions no local broker.
        HOMEVITALS_MQTT_URL="mqtt://127.0.0.1:1",
        HOMEVITALS_STATE_DIR=str(tmp_path / "state"),
        HOMEVITALS_CONFIG=str(tmp_path / "absent.toml"),
        **extra,
    )
    return env


@pytest.fixture
def api_server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        _command(port),
        cwd=REPO,
        env=_env(database_url, tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def serving() -> bool:
            assert proc.poll() is None, (tmp_path / "api.log").read_text()
            return len(_workers(proc.pid)) >= 2 and _healthy(base)

        wait_until(serving, START_TIMEOUT_S, what=(tmp_path / "api.log").read_text, step=0.25)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/v1/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _fresh_connection_client(base: str) -> httpx.Client:
    # No keep-alive: every request is a new connection, which either worker may accept.
    return httpx.Client(
        base_url=base, timeout=30.0, limits=httpx.Limits(max_keepalive_connections=0)
    )


def test_two_workers_serve_sign_in_and_data_then_stop_cleanly(
    api_server: tuple[str, subprocess.Popen[bytes]],
    clinic: Clinic,
    db: psycopg.Connection[Any],
) -> None:
    base, proc = api_server
    workers = _workers(proc.pid)
    assert len(workers) == 2
    with _fresh_connection_client(base) as http:
        signed_in = http.post(
            "/api/v1/auth/token", data={"username": clinic.dr_lee, "password": PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        headers = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        # Many connections, so both workers answer: one signing key for all of them.
        for _ in range(12):
            patients = http.get("/api/v1/patients", headers=headers)
            assert patients.status_code == 200, patients.text
            assert clinic.patient_a in {p["id"] for p in patients.json()["items"]}
        readings = http.get(
            f"/api/v1/patients/{clinic.patient_a}/readings/glucose",
            params={"source": "smbg", "limit": 5},
            headers=headers,
        )
        assert readings.status_code == 200 and readings.json()["total"] > 0

        # The sign-in limit holds across the two processes (5 failures, not 5 each).
        username = f"multi-{uuid.uuid4().hex[:6]}"
        create_user(db, username, PASSWORD, "clinician")
        for _ in range(5):
            r = http.post("/api/v1/auth/token", data={"username": username, "password": "nope"})
            assert r.status_code == 401
        for _ in range(4):
            r = http.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
            assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert not any(pid_alive(w) for w in workers)


def test_bad_settings_fail_before_workers_start(database_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        _command(free_port()),
        cwd=REPO,
        env=_env(database_url, tmp_path, HOMEVITALS_CLINIC_TIMEZONE="Mars/Olympus_Mons"),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert b"unknown time zone" in done.stderr + done.stdout
