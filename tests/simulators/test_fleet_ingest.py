"""Issue #4's 'done when': a fleet of 100 gateways x 3 devices with 30 days of history is
generated, published with per-gateway credentials, and ingested -- and what is stored
equals, per kind, what the simulator says it sent."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date

import psycopg
import pytest
from waiting import suback_event, wait_until

from ingest.patients import attach_gateway, upsert_patient
from ingest.service import IngestConfig, IngestWorker
from simulators.fleet import FleetConfig, fleet_layout, publish_fleet

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_fleet_100x3x30_is_stored_exactly(
    database_url: str, ingest_mqtt_url: str, gateway_mqtt_url: Callable[[str], str]
) -> None:
    config = FleetConfig(gateways=100, days=30, seed=2026, start=date(2026, 6, 1), batch_size=200)
    prefix = "sim-gw-"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM glucose WHERE device_id LIKE 'sim-gw-%'")
        conn.execute("DELETE FROM blood_pressure WHERE device_id LIKE 'sim-gw-%'")
        with conn.transaction():
            for gateway in fleet_layout(config):
                patient = gateway.patients[0]
                attach_gateway(
                    conn,
                    gateway.gateway_id,
                    upsert_patient(conn, f"fleet-{patient.patient_id}", patient.timezone),
                )
    worker = IngestWorker(IngestConfig(database_url, ingest_mqtt_url, group="fleet-test"))
    subscribed = suback_event(worker.client)
    thread = threading.Thread(target=worker.run, kwargs={"duration_s": 600}, daemon=True)
    thread.start()
    assert subscribed.wait(10), "ingest got no SUBACK"
    report = publish_fleet(config, "", gateway_url=gateway_mqtt_url, progress=False, connections=8)
    assert report.rejected == 0
    assert report.gateways == 100 and report.devices == 300

    queries = {
        "glucose": "SELECT count(*), count(patient_id) FROM glucose WHERE source = 'smbg' AND device_id LIKE %s",
        "cgm": "SELECT count(*), count(patient_id) FROM glucose WHERE source = 'cgm' AND device_id LIKE %s",
        "blood_pressure": "SELECT count(*), count(patient_id) FROM blood_pressure WHERE device_id LIKE %s",
    }

    def stored() -> dict[str, tuple[int, int]]:
        with psycopg.connect(database_url) as conn:
            out = {}
            for kind, query in queries.items():
                row = conn.execute(query, (f"{prefix}%",)).fetchone()
                out[kind] = (int(row[0]), int(row[1])) if row else (0, 0)
        return out

    want = {
        kind: (report.readings_by_kind.get(kind, 0),) * 2 for kind in queries
    }  # all attributed too
    try:
        wait_until(lambda: stored() == want, 300, what=lambda: (stored(), want), step=1.0)
    finally:
        worker.stop()
        thread.join(60)
    assert stored() == want
    assert sum(n for n, _ in want.values()) > 600_000
