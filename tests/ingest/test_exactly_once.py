"""Exactly-once outcomes under failure: a worker SIGKILLed mid-stream, a database restart.

The fleet simulator publishes; `homevitals ingest run` runs as a real process; the
stored counts per kind must equal what the simulator reports it sent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from mqtt_publish import publish_all
from waiting import wait_until

from homevitals.services.postgres import LocalPostgres
from readings import wire
from simulators.fleet import FleetConfig, FleetReport, publish_fleet

pytestmark = [pytest.mark.services, pytest.mark.slow]

KIND_QUERIES = {
    "glucose": "SELECT count(*) FROM glucose WHERE source = 'smbg' AND device_id LIKE %s",
    "cgm": "SELECT count(*) FROM glucose WHERE source = 'cgm' AND device_id LIKE %s",
    "blood_pressure": "SELECT count(*) FROM blood_pressure WHERE device_id LIKE %s",
}


def stored(url: str, prefix: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        out = {}
        for kind, query in KIND_QUERIES.items():
            row = conn.execute(query, (f"{prefix}%",)).fetchone()
            out[kind] = int(row[0]) if row else 0
    return out


def dead_letters(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT reason, count(*), count(reprocessed_at) FROM dead_letters GROUP BY reason LIMIT 5"
        ).fetchall()


class Worker:
    """`homevitals ingest run` as a separate process with a fixed client id."""

    def __init__(
        self, database_url: str, mqtt_url: str, state: Path, client_id: str, group: str
    ) -> None:
        self.env = {
            **os.environ,
            "HOMEVITALS_DATABASE_URL": database_url,
            "HOMEVITALS_MQTT_URL": mqtt_url,
            "HOMEVITALS_STATE_DIR": str(state),
        }
        self.argv = [
            sys.executable,
            "-m",
            "homevitals",
            "-v",
            "ingest",
            "run",
            "--client-id",
            client_id,
            "--group",
            group,
        ]
        self.log = state / f"{client_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        proc = self.proc

        def subscribing() -> bool:
            assert proc.poll() is None, self.log.read_text()
            return "subscribed as group" in self.log.read_text()

        wait_until(subscribing, 20, what=self.log.read_text)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


@pytest.fixture()
def worker_factory(
    database_url: str, ingest_mqtt_url: str, tmp_path: Path
) -> Iterator[Callable[[str, str], Worker]]:
    made: list[Worker] = []

    def make(client_id: str, group: str) -> Worker:
        worker = Worker(database_url, ingest_mqtt_url, tmp_path, client_id, group)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()


def publish_in_background(
    config: FleetConfig, gateway_url: Callable[[str], str], rate: float = 3_000.0
) -> tuple[threading.Thread, list[FleetReport]]:
    """Paced, so that the stream is still flowing when a test breaks something."""
    reports: list[FleetReport] = []
    thread = threading.Thread(
        target=lambda: reports.append(
            publish_fleet(
                config,
                "",
                gateway_url=gateway_url,
                progress=False,
                connections=4,
                rate=rate,
                receipts=True,  # like the real gateway: re-send until ingest confirms
                resend_s=2.0,
            )
        ),
        daemon=True,
    )
    thread.start()
    return thread, reports


def barrier(database_url: str, gateway_url: Callable[[str], str], gateway: str) -> None:
    """Publish an unparseable batch after everything else and wait until ingest parked it.

    Ingest handles one session's deliveries in order, so by then whatever the broker
    delivered before it (late redeliveries included) has been processed too."""
    query = "SELECT count(*) FROM dead_letters WHERE gateway_id = %s"

    def parked() -> int:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(query, (gateway,)).fetchone()
        return int(row[0]) if row else 0

    before = parked()
    publish_all(gateway_url(gateway), [(wire.readings_topic(gateway), b'{"schema": ')])
    wait_until(lambda: parked() > before, 30, what=f"the barrier batch of {gateway} parked")


def expected(report: FleetReport) -> dict[str, int]:
    return {kind: report.readings_by_kind.get(kind, 0) for kind in KIND_QUERIES}


def test_sigkill_mid_stream_then_restart_stores_everything_once(
    database_url: str,
    gateway_mqtt_url: Callable[[str], str],
    worker_factory: Callable[[str, str], Worker],
) -> None:
    config = FleetConfig(gateways=6, days=6, seed=11, start=date(2026, 3, 1), batch_size=50)
    prefix = "sim-gw-"
    worker = worker_factory("kill-test-worker", "kill-test")
    worker.start()
    before = sum(stored(database_url, prefix).values())
    thread, reports = publish_in_background(config, gateway_mqtt_url)
    # Kill while batches are being committed: some acked, some in flight, some queued.
    assert wait_until(lambda: sum(stored(database_url, prefix).values()) > before + 2_000, 60)
    worker.kill()
    # What the killed worker held (unacknowledged) and what was published while no worker
    # ran is gone from the broker (sessions end with the connection): the gateways
    # re-send every batch without a receipt, and the restarted worker stores it once.
    worker.start()
    thread.join(120)
    assert reports, "publisher did not finish"
    report = reports[0]
    assert report.rejected == 0
    want = expected(report)
    wait_until(
        lambda: stored(database_url, prefix) == want,
        90,
        what=lambda: (
            stored(database_url, prefix),
            want,
            dead_letters(database_url),
            worker.log.read_text()[-3000:],
        ),
    )
    # Nothing more arrives: no duplicates from late redeliveries either.
    barrier(database_url, gateway_mqtt_url, "gw-barrier-kill")
    assert stored(database_url, prefix) == want


def test_database_restart_mid_stream_loses_nothing(
    database_url: str,
    local_postgres: LocalPostgres,
    gateway_mqtt_url: Callable[[str], str],
    worker_factory: Callable[[str, str], Worker],
) -> None:
    config = FleetConfig(gateways=4, days=5, seed=12, start=date(2026, 5, 1), batch_size=50)
    prefix = "sim-gw-"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM glucose WHERE device_id LIKE 'sim-gw-%'")
        conn.execute("DELETE FROM blood_pressure WHERE device_id LIKE 'sim-gw-%'")
    worker = worker_factory("restart-test-worker", "restart-test")
    worker.start()
    thread, reports = publish_in_background(config, gateway_mqtt_url)
    assert wait_until(lambda: sum(stored(database_url, prefix).values()) > 1_000, 60)
    local_postgres.restart()
    thread.join(120)
    assert reports and reports[0].rejected == 0
    want = expected(reports[0])
    wait_until(
        lambda: stored(database_url, prefix) == want,
        90,
        what=lambda: (
            stored(database_url, prefix),
            want,
            dead_letters(database_url),
            worker.log.read_text()[-3000:],
        ),
    )
