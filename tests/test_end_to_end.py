"""The thin end-to-end path of issue #2, all real.

A simulated Glucose-Service meter on the BlueZoo test bed -> `homevitals gateway`
(unmodified bleak) pairs and downloads its records -> Mosquitto (per-gateway ACL) ->
the ingest worker -> TimescaleDB -> analytics raises an out-of-range flag -> the API
serves the patient's readings and open flags over HTTP to the clinician.

The same path for a CGM sensor (CGMS 1.0.1: Session Start Time with zone and DST, RACP
by Time Offset, E2E-CRC): its rows must be exactly the sensor's records (UTC time =
session start + offset, mg/dL, trend, quality, patient), and the API's glucose summary
and AGP for that patient must be computed from them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
import uvicorn
from waiting import suback_event, wait_until

from analytics.runner import evaluate_patients, full_pass
from api.bootstrap import add_to_panel, create_user
from api.core.config import ApiSettings
from api.main import create_app
from device_profiles.current_time import DstOffset
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
CGM_GATEWAY = "e2e-gw-cgm"
CGM_PATIENT = "e2e-cgm-patient"
PASSWORD = "correct horse battery staple"


def meter_records(now: datetime) -> list[Reading]:
    """Two days of fingersticks on the device's local clock (the host's), one severe low."""
    local_now = now.astimezone().replace(tzinfo=None, microsecond=0)
    values = [112, 145, 98, 176, 131, 104, 158, 122, 45, 139]
    return [
        Reading(Kind.GLUCOSE, local_now - timedelta(hours=5 * (len(values) - i)), mg_dl=float(v))
        for i, v in enumerate(values)
    ]


def gateway_cli(
    info: tb.TestbedInfo, state: Path, mqtt_url: str, *args: str, gateway: str = GATEWAY
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **tb.env_for(info)}
    argv = [
        sys.executable, "-m", "homevitals", "--json-logs", "gateway", *args,
        "--gateway-id", gateway, "--adapter", info.gateway_adapter, "--state-dir", str(state),
        "--mqtt-url", mqtt_url, "--timezone", "UTC",
    ]  # fmt: skip
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, check=False)


def serve(app: object, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 20, what="the API to start")
    return server, thread


@contextmanager
def ingest_running(database_url: str, mqtt_url: str, group: str) -> Iterator[IngestWorker]:
    """The real ingest worker (shared subscription), in a thread, for one test."""
    worker = IngestWorker(IngestConfig(database_url, mqtt_url, group=group, max_wait_s=0.01))
    subscribed = suback_event(worker.client)
    thread = threading.Thread(target=worker.run, kwargs={"duration_s": 240}, daemon=True)
    thread.start()
    try:
        assert subscribed.wait(10), "ingest got no SUBACK"
        yield worker
    finally:
        worker.stop()
        thread.join(30)


@contextmanager
def clinician_api(
    database_url: str, username: str, patient_id: int
) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """The API over HTTP and a clinician's bearer headers, ``patient_id`` on her panel
    (the client itself sends no credentials)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_user(conn, username, PASSWORD, "clinician")
        add_to_panel(conn, username, patient_id)
    app = create_app(
        ApiSettings(database_url=database_url, jwt_secret="e2e-" + "x" * 40, cookie_secure=False)
    )
    port = free_port()
    server, thread = serve(app, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=10) as client:
            token = client.post("/auth/token", data={"username": username, "password": PASSWORD})
            assert token.status_code == 200, token.text
            yield client, {"Authorization": f"Bearer {token.json()['access_token']}"}
    finally:
        server.should_exit = True
        thread.join(10)


def pair_and_sync(
    bed: tb.TestbedInfo, state: Path, gateway_url: str, address: str, gateway: str
) -> dict[str, Any]:
    """``homevitals gateway pair`` then ``run --once``, as the operator runs them; returns
    the device's ``synced`` log line (``homevitals --json-logs``: one JSON object a line)."""
    paired = gateway_cli(bed, state, gateway_url, "pair", "--address", address, gateway=gateway)
    assert paired.returncode == 0, paired.stdout + paired.stderr
    synced = gateway_cli(
        bed, state, gateway_url, "run", "--once", "--duration", "120", gateway=gateway
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr
    logged = [json.loads(line) for line in synced.stderr.splitlines() if line.strip()]
    line: dict[str, Any] = next(e for e in logged if e["msg"].startswith(f"{address}: synced"))
    return line


def test_meter_to_clinician(
    ble_bed: tb.TestbedInfo,
    ble_adapter: Callable[[], tb.AdapterInfo],
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

    with ingest_running(database_url, ingest_mqtt_url, "e2e"):
        adapter = ble_adapter()
        address = adapter.address
        with DeviceFleet(ble_bed, tmp_path / "devices") as fleet:
            fleet.start_many([DeviceSpec("glucose-meter", adapter.name, readings=tuple(records))])
            sync_line = pair_and_sync(ble_bed, tmp_path / "gw", gateway_url, address, GATEWAY)
        assert (sync_line["device"], sync_line["readings"]) == (address, len(records))

        def stored() -> list[tuple[float, int]]:
            with psycopg.connect(database_url) as conn:
                rows = conn.execute(
                    "SELECT mgdl, patient_id FROM glucose WHERE device_id = %s ORDER BY time",
                    (address,),
                ).fetchall()
            return [(float(r[0]), int(r[1]) if r[1] is not None else -1) for r in rows]

        wait_until(lambda: len(stored()) == len(records), 30, what=stored)
        assert stored() == [(r.mg_dl, patient_id) for r in records]  # values, order, attribution

        with psycopg.connect(database_url, autocommit=True) as conn:
            full_pass(conn, now + timedelta(minutes=1))

        with clinician_api(database_url, "dr.e2e", patient_id) as (client, headers):
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


# A breakfast excursion seen by a CGM: a low (< 54) first, then above 250; 5-minute
# readings from the sensor's 10th minute (after its warm-up) for three hours.
CGM_MGDL = [
    112, 104, 95, 86, 77, 68, 60, 53, 50, 52, 58, 66, 75, 88, 102, 118, 135, 152,
    168, 183, 197, 210, 222, 233, 243, 252, 258, 262, 259, 251, 240, 226, 210, 194, 178, 163,
]  # fmt: skip
CGM_OFFSETS = [10 + 5 * i for i in range(len(CGM_MGDL))]  # minutes since the session start
# The sensor reports a trend once it has 15 minutes of readings, and a quality for each.
CGM_TREND = [None, None, None] + [
    round((CGM_MGDL[i] - CGM_MGDL[i - 3]) / 15, 1) for i in range(3, len(CGM_MGDL))
]
CGM_QUALITY = [float(100 - (7 * i) % 13) for i in range(len(CGM_MGDL))]
EDT = timedelta(hours=-4)  # the collector that started the session: UTC-5 + 1 h DST


def expected_agp(
    times: list[datetime], values: list[int], zone: ZoneInfo
) -> list[tuple[int, int, float | None]]:
    """(bin minute, n, smoothed median) of every 15-minute time-of-day bin, as
    docs/metrics.md defines the AGP: medians by local time of day, then a circular
    moving average over the bin and its non-empty neighbours."""
    by_bin: dict[int, list[int]] = {}
    for t, v in zip(times, values, strict=True):
        local = t.astimezone(zone)
        by_bin.setdefault((local.hour * 60 + local.minute) // 15, []).append(v)
    raw = {b: statistics.median(vs) for b, vs in by_bin.items()}
    out: list[tuple[int, int, float | None]] = []
    for b in range(96):
        near = [raw[n % 96] for n in (b - 1, b, b + 1) if n % 96 in raw]
        out.append((b * 15, len(by_bin.get(b, [])), sum(near) / len(near) if b in raw else None))
    return out


def test_cgm_sensor_to_clinician(
    ble_bed: tb.TestbedInfo,
    ble_adapter: Callable[[], tb.AdapterInfo],
    database_url: str,
    local_mosquitto: LocalMosquitto,
    ingest_mqtt_url: str,
    tmp_path: Path,
) -> None:
    os.environ["TZ"] = "UTC"  # host clock in UTC; the sensor's own clock runs on EDT
    time.tzset()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # The session began 3 h 15 min ago; the sensor reports its start on the collector's
    # wall clock (EDT) with Time Zone -300 min and DST +60 min.  The gateway runs in UTC,
    # so reading that wall time in its own zone would put every record 4 hours off.
    start_utc = now - timedelta(hours=3, minutes=15)
    start_local = (start_utc + EDT).replace(tzinfo=None)
    times = [start_utc + timedelta(minutes=o) for o in CGM_OFFSETS]
    records = [
        Reading(
            Kind.CGM,
            None,
            mg_dl=float(v),
            time_offset_minutes=o,
            trend_mg_dl_min=tr,
            quality_pct=q,
        )
        for v, o, tr, q in zip(CGM_MGDL, CGM_OFFSETS, CGM_TREND, CGM_QUALITY, strict=True)
    ]
    zone = ZoneInfo("America/New_York")
    patient_id = enroll_patient(database_url, CGM_PATIENT, [CGM_GATEWAY], timezone=zone.key)
    gateway_url = local_mosquitto.provision_gateway(CGM_GATEWAY)

    with ingest_running(database_url, ingest_mqtt_url, "e2e-cgm"):
        adapter = ble_adapter()
        address = adapter.address
        sensor = DeviceSpec(
            "cgm",
            adapter.name,
            readings=tuple(records),
            session_start=start_local,
            time_zone_minutes=-300,
            dst_offset=DstOffset.DAYLIGHT_TIME,
            e2e_crc=True,
            clock_skew_s=EDT.total_seconds(),  # the sensor's clock: EDT, like its session
        )
        with DeviceFleet(ble_bed, tmp_path / "devices") as fleet:
            fleet.start_many([sensor])
            sync_line = pair_and_sync(ble_bed, tmp_path / "gw", gateway_url, address, CGM_GATEWAY)
        assert (sync_line["device"], sync_line["readings"]) == (address, len(records))

        def stored() -> list[tuple[Any, ...]]:
            with psycopg.connect(database_url) as conn:
                return conn.execute(
                    "SELECT time, mgdl, trend_mgdl_min, quality_pct, patient_id, source,"
                    " gateway_id, device_time, sequence, details->'time_offset_min',"
                    " details->>'cgm_session_start', details->'e2e_crc', conditions"
                    " FROM glucose WHERE device_id = %s ORDER BY time",
                    (address,),
                ).fetchall()

        wait_until(lambda: len(stored()) == len(records), 30, what=stored)
        assert stored() == [
            (
                t,  # UTC: session start (EDT wall time + 4 h) + offset
                float(v),
                tr,
                q,
                patient_id,
                "cgm",
                CGM_GATEWAY,
                (start_local + timedelta(minutes=o)).isoformat(),  # sensor-local time
                None,  # a CGM record has no sequence number
                o,
                start_local.isoformat(),
                True,  # every record carried its E2E-CRC, and it checked out
                [],
            )
            for t, v, tr, q, o in zip(
                times, CGM_MGDL, CGM_TREND, CGM_QUALITY, CGM_OFFSETS, strict=True
            )
        ]

        with psycopg.connect(database_url, autocommit=True) as conn:
            # This patient's rules (a full pass picks patients by "new data since the last
            # pass", which another test may have dated ahead).
            evaluate_patients(conn, [patient_id], datetime.now(UTC))

        # The session's span exactly: the sensor was worn all of it (100 % wear).
        span = {
            "start": times[0].isoformat(),
            "end": (times[-1] + timedelta(minutes=5)).isoformat(),
        }
        n = len(CGM_MGDL)
        mean = statistics.fmean(CGM_MGDL)

        def pct(predicate: Callable[[int], bool]) -> float:
            return sum(1 for v in CGM_MGDL if predicate(v)) / n * 100

        with clinician_api(database_url, "dr.cgm", patient_id) as (client, headers):
            base = f"/patients/{patient_id}"
            readings = client.get(
                f"{base}/readings/glucose", params={**span, "source": "cgm"}, headers=headers
            )
            assert readings.status_code == 200, readings.text
            assert [
                (
                    datetime.fromisoformat(i["time"]),
                    i["mgdl"],
                    i["trend_mgdl_min"],
                    i["quality_pct"],
                    i["device_id"],
                )
                for i in readings.json()["items"]
            ] == [
                (t, float(v), tr, q, address)
                for t, v, tr, q in zip(times, CGM_MGDL, CGM_TREND, CGM_QUALITY, strict=True)
            ]

            summary = client.get(f"{base}/glucose/summary", params=span, headers=headers)
            assert summary.status_code == 200, summary.text
            cgm = summary.json()["cgm"]
            assert summary.json()["smbg"]["n_readings"] == 0
            assert (cgm["source"], cgm["n_readings"], cgm["n_numeric"]) == ("cgm", n, n)
            assert datetime.fromisoformat(cgm["first_time"]) == times[0]
            assert datetime.fromisoformat(cgm["last_time"]) == times[-1]
            assert cgm["percent_expected"] == pytest.approx(100.0)
            assert cgm["mean"] == pytest.approx(mean)
            assert cgm["gmi"] == pytest.approx(3.31 + 0.02392 * mean)
            assert cgm["pct_below_54"] == pytest.approx(pct(lambda v: v < 54))
            assert cgm["pct_below_70"] == pytest.approx(pct(lambda v: v < 70))
            assert cgm["pct_70_180"] == pytest.approx(pct(lambda v: 70 <= v <= 180))
            assert cgm["pct_above_180"] == pytest.approx(pct(lambda v: v > 180))
            assert cgm["pct_above_250"] == pytest.approx(pct(lambda v: v > 250))
            assert (cgm["hypo_events"], cgm["hypo_events_54"]) == (1, 1)  # 35 and 15 min

            agp = client.get(f"{base}/glucose/agp", params=span, headers=headers)
            assert agp.status_code == 200, agp.text
            profile = agp.json()
            assert (profile["source"], profile["n_readings"], profile["bin_minutes"]) == (
                "cgm",
                n,
                15,
            )
            got = [(b["minute"], b["n"], b["p50"]) for b in profile["bins"]]
            want = expected_agp(times, CGM_MGDL, zone)
            assert [g[:2] for g in got] == [w[:2] for w in want]  # readings per local bin
            for (_, _, p50), (_, _, expected) in zip(got, want, strict=True):
                assert p50 == (None if expected is None else pytest.approx(expected))
            days: dict[str, list[int]] = {}
            for t, v in zip(times, CGM_MGDL, strict=True):
                days.setdefault(t.astimezone(zone).date().isoformat(), []).append(v)
            assert [(d["date"], d["n"], d["min"], d["max"]) for d in profile["daily"]] == [
                (day, len(vs), min(vs), max(vs)) for day, vs in days.items()
            ]

            flags = client.get("/flags", params={"status": "open"}, headers=headers)
            assert flags.status_code == 200, flags.text
            mine = {f["rule_id"] for f in flags.json()["items"] if f["patient_id"] == patient_id}
            assert "urgent_low_glucose" in mine  # the CGM's 50 mg/dL, three hours ago
