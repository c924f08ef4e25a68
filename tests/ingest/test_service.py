"""The ingest service on the real broker and database: manual acks, shared subscription."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from mqtt_publish import publish_all
from waiting import suback_event, wait_until

from device_profiles.model import Component, Kind
from ingest.patients import enroll_patient
from ingest.service import IngestConfig, IngestWorker
from readings import identity, wire

pytestmark = pytest.mark.services


def gateway_messages(
    gateway: str, device: str, n_batches: int, per_batch: int
) -> list[tuple[str, bytes]]:
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    paired = wire.EventsMessage(
        wire.SCHEMA_EVENT,
        gateway,
        [wire.DevicePaired(device=device, at=t0, profile="glucose-meter")],
    )
    out = [(wire.events_topic(gateway), wire.encode(paired))]
    seq = 0
    for _ in range(n_batches):
        readings = []
        for _ in range(per_batch):
            when = t0 + timedelta(minutes=5 * seq)
            local = when.replace(tzinfo=None).isoformat()
            readings.append(
                wire.Reading(
                    id=identity.reading_id(device, Kind.CGM, local, seq),
                    device=device,
                    kind=Kind.CGM,
                    time=when,
                    values={Component.GLUCOSE: 80.0 + seq % 150},
                    device_time=local,
                    seq=seq,
                )
            )
            seq += 1
        batch = wire.ReadingsBatch(wire.SCHEMA_READINGS, gateway, datetime.now(UTC), readings)
        out.append((wire.readings_topic(gateway), wire.encode(batch)))
    return out


def stored(url: str, device: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM glucose WHERE device_id = %s", (device,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_two_workers_share_the_stream_without_loss_or_duplicates(
    database_url: str, ingest_mqtt_url: str, gateway_mqtt_url: Callable[[str], str]
) -> None:
    gateway, device = "gw-svc-1", "dev-svc-1"
    enroll_patient(database_url, "pt-svc-1", [gateway])
    workers = [
        IngestWorker(
            IngestConfig(
                database_url, ingest_mqtt_url, group="svc-test", client_id=f"w{i}", max_wait_s=0.01
            )
        )
        for i in range(2)
    ]
    subscribed = [suback_event(w.client) for w in workers]
    threads = [
        threading.Thread(target=w.run, kwargs={"duration_s": 60}, daemon=True) for w in workers
    ]
    for t in threads:
        t.start()
    assert all(s.wait(10) for s in subscribed), "a worker got no SUBACK"
    messages = gateway_messages(gateway, device, n_batches=200, per_batch=50)
    publish_all(gateway_mqtt_url(gateway), messages)
    wait_until(lambda: stored(database_url, device) >= 10_000, what="10,000 rows stored")
    # Re-publish everything: redeliveries must not create a single duplicate.
    publish_all(gateway_mqtt_url(gateway), messages)
    wait_until(
        lambda: sum(w.totals["messages"] for w in workers) >= 2 * len(messages),
        what=lambda: [w.totals for w in workers],
    )
    for w in workers:
        w.stop()
    for t in threads:
        t.join(30)
    assert stored(database_url, device) == 10_000
    assert all(w.totals["messages"] > 0 for w in workers), [w.totals for w in workers]


def test_gateway_cannot_publish_under_another_gateway(
    database_url: str, ingest_mqtt_url: str, gateway_mqtt_url: Callable[[str], str]
) -> None:
    """The broker's ACL drops it; nothing reaches ingest."""
    enroll_patient(database_url, "pt-svc-2", ["gw-svc-2"])
    worker = IngestWorker(
        IngestConfig(database_url, ingest_mqtt_url, group="acl-test", max_wait_s=0.01)
    )
    subscribed = suback_event(worker.client)
    thread = threading.Thread(target=worker.run, kwargs={"duration_s": 30}, daemon=True)
    thread.start()
    assert subscribed.wait(10), "ingest got no SUBACK"
    intruder = gateway_mqtt_url("gw-svc-intruder")
    forged = gateway_messages("gw-svc-2", "dev-svc-forged", n_batches=1, per_batch=5)
    publish_all(intruder, forged)  # MQTT 5 acks with "not authorized"; nothing is forwarded
    own = gateway_messages("gw-svc-intruder", "dev-svc-own", n_batches=1, per_batch=5)
    publish_all(intruder, own)
    wait_until(lambda: stored(database_url, "dev-svc-own") == 5, what="the 5 own readings")
    worker.stop()
    thread.join(30)
    assert stored(database_url, "dev-svc-forged") == 0
