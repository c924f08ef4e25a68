"""The thin end-to-end path of issue #2, all real.

A simulated Glucose-Service meter on the BlueZoo test bed -> `homevitals gateway`
(unmodified bleak) pairs and downloads its records -> Mosquitto (per-gateway ACL) ->
the ingest worker -> TimescaleDB -> analytics raises an out-of-range flag -> the API
serves the patient's readings and open flags over HTTP to the clinician.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn

from analytics.runner import full_pass
from api.bootstrap import add_to_panel, create_user
from api.core.config import ApiSettings
from api.main import create_app
from device_profiles.model import Kind
from homevitals.services.mosquitto import LocalMosquitto
from homevitals.services.system import free_port
from ingest.patients import enroll_patient
from ingest.service import IngestConfig, IngestWorker
from simulators import testbed as tb
from simulators.ble.fleet import DeviceFleet
from simulators.ble.readings import Reading
from simulators.ble.spec import DeviceSpec

pytestmark = [pytest.mark.services, pytest.mark.ble, pytest.mark.slow]

GATEWAY = "e2e-gw"
PATIENT = "e2e-patient"


@pytest.fixture(scope="module")
def bed() -> Iterator[tb.TestbedInfo]:
    # Unix socket paths are short: keep the bed under /tmp, not in a deep pytest dir.
    state = Path(tempfile.mkdtemp(prefix="hv-e2e-"))
    try:
        with tb.running_testbed(state, 1) as info:
            yield info
    finally:
        shutil.rmtree(state, ignore_errors=True)


def meter_records(now: datetime) -> list[Reading]:
    """Two days of fingersticks on the device's local clock (the host's), one severe low."""
    local_now = now.astimezone().replace(tzinfo=None, microsecond=0)
    values = [112, 145, 98, 176, 131, 104, 158, 122, 45, 139]
    return [
        Reading(Kind.GLUCOSE, local_now - timedelta(hours=5 * (len(values) - i)), mg_dl=float(v))
        for i, v in enumerate(values)
    ]


def gateway_cli(
    info: tb.TestbedInfo, state: Path, mqtt_url: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **tb.env_for(info)}
    argv = [
        sys.executable, "-m", "homevitals", "--json-logs", "gateway", *args,
        "--gateway-id", GATEWAY, "--adapter", info.gateway_adapter, "--state-dir", str(state),
        "--mqtt-url", mqtt_url, "--timezone", "UTC",
    ]  # fmt: skip
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, check=False)


def serve(app: object, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "API did not start"
        time.sleep(0.05)
    return server, thread


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_meter_to_clinician(
    bed: tb.TestbedInfo,
    database_url: str,
    local_mosquitto: LocalMosquitto,
    ingest_mqtt_url: str,
    tmp_path: Path,
) -> None:
    os.environ["TZ"] = "UTC"  # the simulated meter's clock and the gateway agree on local time
    time.tzset()
    now = datetime.now(UTC)
    records = meter_records(now)
    patient_id = enroll_patient(database_url, PATIENT, [GATEWAY], timezone="UTC")
    gateway_url = local_mosquitto.provision_gateway(GATEWAY)

    worker = IngestWorker(IngestConfig(database_url, ingest_mqtt_url, group="e2e", max_wait_s=0.01))
    ingest_thread = threading.Thread(target=worker.run, kwargs={"duration_s": 240}, daemon=True)
    ingest_thread.start()
    assert worker.connected.wait(10)

    adapter = bed.device_adapters[0].name
    address = bed.address_of(adapter)
    with DeviceFleet(bed, tmp_path / "devices") as fleet:
        fleet.start_many([DeviceSpec("glucose-meter", adapter, readings=tuple(records))])
        paired = gateway_cli(bed, tmp_path / "gw", gateway_url, "pair", "--address", address)
        assert paired.returncode == 0, paired.stdout + paired.stderr
        synced = gateway_cli(
            bed, tmp_path / "gw", gateway_url, "run", "--once", "--duration", "120"
        )
        assert synced.returncode == 0, synced.stdout + synced.stderr
    # `homevitals --json-logs`: every log line is one JSON object; the sync line has fields.
    logged = [json.loads(line) for line in synced.stderr.splitlines() if line.strip()]
    sync_line = next(e for e in logged if e["msg"].startswith(f"{address}: synced"))
    assert (sync_line["device"], sync_line["readings"]) == (address, len(records))

    def stored() -> list[tuple[float, int]]:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT mgdl, patient_id FROM glucose WHERE device_id = %s ORDER BY time",
                (address,),
            ).fetchall()
        return [(float(r[0]), int(r[1]) if r[1] is not None else -1) for r in rows]

    assert wait_for(lambda: len(stored()) == len(records), 30), stored()
    assert stored() == [(r.mg_dl, patient_id) for r in records]  # values, order, attribution

    with psycopg.connect(database_url, autocommit=True) as conn:
        full_pass(conn, now + timedelta(minutes=1))
        create_user(conn, "dr.e2e", "correct horse battery staple", "clinician")
        add_to_panel(conn, "dr.e2e", patient_id)

    app = create_app(
        ApiSettings(database_url=database_url, jwt_secret="e2e-" + "x" * 40, cookie_secure=False)
    )
    port = free_port()
    server, thread = serve(app, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=10) as client:
            token = client.post(
                "/auth/token",
                data={"username": "dr.e2e", "password": "correct horse battery staple"},
            )
            assert token.status_code == 200, token.text
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            start = (now - timedelta(days=3)).isoformat()
            readings = client.get(
                f"/patients/{patient_id}/readings/glucose", params={"start": start}, headers=headers
            )
            assert readings.status_code == 200, readings.text
            assert [item["mgdl"] for item in readings.json()["items"]] == [r.mg_dl for r in records]
            flags = client.get("/flags", params={"status": "open"}, headers=headers)
            assert flags.status_code == 200, flags.text
            mine = [f for f in flags.json()["items"] if f["patient_id"] == patient_id]
            assert {f["rule_id"] for f in mine} >= {"urgent_low_glucose"}
            assert all(f["severity"] in ("urgent", "high", "medium", "low") for f in mine)
            anonymous = client.get(f"/patients/{patient_id}/readings/glucose")
            assert anonymous.status_code == 401
    finally:
        server.should_exit = True
        thread.join(10)
        worker.stop()
        ingest_thread.join(30)
