"""Device custody under attack (issue #14, items 2 and 3): a patient's own hub A trying to
take or write for hub B's device, through the real broker, ingest worker and database.

Each hub publishes with its own broker credentials on its own topic (the ACL allows
nothing else), exactly as an attacker holding hub A could.  The custody rule: a device
belongs to one patient at a time through one hub; a pairing from elsewhere is held for
a clinician, readings from elsewhere are dead-lettered.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from mqtt_publish import publish_all
from wire_helpers import wire_reading

from device_profiles.model import Component, Kind
from ingest.custody_review import decide
from ingest.patients import enroll_patient
from ingest.pipeline import Message
from ingest.service import IngestConfig, IngestWorker
from ingest.status import ingest_counts
from readings import wire

pytestmark = pytest.mark.services

# Measurement times: well in the past (nothing is "in the future"), an hour apart.
T0 = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
CUFF = "blood-pressure-cuff"


class Committed:
    """Messages the worker has committed, to wait on (the worker's own commit hook)."""

    def __init__(self) -> None:
        self.count = 0
        self.cond = threading.Condition()

    def __call__(self, messages: list[Message]) -> None:
        with self.cond:
            self.count += len(messages)
            self.cond.notify_all()

    def wait_for(self, total: int, timeout: float = 30.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.count >= total, timeout), (
                f"worker committed {self.count} of {total} messages"
            )


@dataclass
class Ingest:
    worker: IngestWorker
    committed: Committed
    hub_url: Callable[[str], str]

    def send(self, gateway: str, *messages: tuple[str, bytes]) -> None:
        """Publish as ``gateway`` (its own credentials) and wait until ingest committed."""
        before = self.committed.count
        publish_all(self.hub_url(gateway), list(messages))
        self.committed.wait_for(before + len(messages))


def running_ingest(
    database_url: str, ingest_mqtt_url: str, hub_url: Callable[[str], str], group: str
) -> Iterator[Ingest]:
    """The real worker in a thread, subscribed (SUBACK) before the first test publishes."""
    worker = IngestWorker(IngestConfig(database_url, ingest_mqtt_url, group=group, max_wait_s=0.01))
    committed = Committed()
    worker.on_commit = committed
    subscribed = threading.Event()
    # SUBACK, not CONNACK: a message published before the subscription exists is dropped.
    worker.client.on_subscribe = lambda *args: subscribed.set()
    thread = threading.Thread(target=worker.run, kwargs={"duration_s": 300}, daemon=True)
    thread.start()
    assert subscribed.wait(15)
    yield Ingest(worker, committed, hub_url)
    worker.stop()
    thread.join(30)


@pytest.fixture(scope="module")
def ingest(
    database_url: str, ingest_mqtt_url: str, gateway_mqtt_url: Callable[[str], str]
) -> Iterator[Ingest]:
    yield from running_ingest(database_url, ingest_mqtt_url, gateway_mqtt_url, "custody")


@pytest.fixture()
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@dataclass(frozen=True)
class Homes:
    """Two households: patient A with hub A, patient B with hub B (B owns the cuff)."""

    hub_a: str
    hub_b: str
    patient_a: int
    patient_b: int
    cuff: str


@pytest.fixture()
def homes(database_url: str) -> Homes:
    tag = uuid.uuid4().hex[:6]
    hub_a, hub_b = f"gw-cus-a-{tag}", f"gw-cus-b-{tag}"
    patient_a = enroll_patient(database_url, f"pt-cus-a-{tag}", [hub_a])
    patient_b = enroll_patient(database_url, f"pt-cus-b-{tag}", [hub_b])
    return Homes(hub_a, hub_b, patient_a, patient_b, f"cuff-{tag}")


def paired(gateway: str, device: str, at: datetime) -> tuple[str, bytes]:
    event = wire.DevicePaired(device=device, at=at, profile=CUFF, manufacturer="Acme")
    message = wire.EventsMessage(wire.SCHEMA_EVENT, gateway, [event])
    return wire.events_topic(gateway), wire.encode(message)


def inventory(gateway: str, device: str, at: datetime) -> tuple[str, bytes]:
    event = wire.DeviceInventory(device=device, at=at, profile=CUFF)
    message = wire.EventsMessage(wire.SCHEMA_EVENT, gateway, [event])
    return wire.events_topic(gateway), wire.encode(message)


def unpaired(gateway: str, device: str, at: datetime) -> tuple[str, bytes]:
    message = wire.EventsMessage(
        wire.SCHEMA_EVENT, gateway, [wire.DeviceUnpaired(device=device, at=at)]
    )
    return wire.events_topic(gateway), wire.encode(message)


def bp_batch(gateway: str, device: str, hours: range) -> tuple[str, bytes]:
    readings = [
        wire_reading(
            device,
            Kind.BLOOD_PRESSURE,
            T0 + timedelta(hours=h),
            {Component.SYSTOLIC: 120.0 + h, Component.DIASTOLIC: 80.0},
        )
        for h in hours
    ]
    batch = wire.ReadingsBatch(wire.SCHEMA_READINGS, gateway, datetime.now(UTC), readings)
    return wire.readings_topic(gateway), wire.encode(batch)


def scalar(db: psycopg.Connection[Any], query: str, *params: object) -> Any:
    row = db.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def chart(db: psycopg.Connection[Any], patient: int, device: str) -> int:
    """The device's readings in the patient's chart."""
    return int(
        scalar(
            db,
            "SELECT count(*) FROM blood_pressure WHERE patient_id = %s AND device_id = %s",
            patient,
            device,
        )
    )


def timeline(db: psycopg.Connection[Any], device: str) -> list[tuple[str, str | None]]:
    rows = db.execute(
        "SELECT action, gateway_id FROM device_events WHERE device_id = %s ORDER BY id", (device,)
    ).fetchall()
    return [(str(a), g) for a, g in rows]


def test_attack_hub_a_repairs_hub_bs_cuff_is_held_for_a_clinician(
    ingest: Ingest, homes: Homes, db: psycopg.Connection[Any]
) -> None:
    h = homes
    ingest.send(h.hub_b, paired(h.hub_b, h.cuff, T0 - timedelta(days=1)))
    ingest.send(h.hub_b, bp_batch(h.hub_b, h.cuff, range(0, 3)))
    # The attack: hub A announces it paired B's cuff an hour before B's next readings.
    ingest.send(h.hub_a, paired(h.hub_a, h.cuff, T0 + timedelta(hours=4)))
    ingest.send(h.hub_b, bp_batch(h.hub_b, h.cuff, range(5, 8)))

    stolen = chart(db, h.patient_a, h.cuff)
    kept = chart(db, h.patient_b, h.cuff)
    owner = scalar(
        db,
        "SELECT patient_id FROM device_bindings WHERE device_id = %s AND upper_inf(valid)",
        h.cuff,
    )
    print(f"re-pair attack: B's readings in A's chart {stolen}, in B's {kept}; bound to {owner}")
    assert (stolen, kept, owner) == (0, 6, h.patient_b)
    assert scalar(db, "SELECT gateway_id FROM devices WHERE id = %s", h.cuff) == h.hub_b

    # Held: one pending request, a flag on B's review queue, the device's timeline.
    request = db.execute(
        "SELECT from_gateway, from_patient, to_gateway, to_patient, status"
        " FROM custody_requests WHERE device_id = %s",
        (h.cuff,),
    ).fetchall()
    assert request == [(h.hub_b, h.patient_b, h.hub_a, h.patient_a, "pending")]
    flag = db.execute(
        "SELECT severity, status FROM flags WHERE patient_id = %s AND rule_id = 'device_custody'",
        (h.patient_b,),
    ).fetchall()
    assert flag == [("high", "open")]
    assert ("custody.held", h.hub_a) in timeline(db, h.cuff)

    # The same pairing again (a QoS 1 redelivery, or the attacker retrying): still one request.
    ingest.send(h.hub_a, paired(h.hub_a, h.cuff, T0 + timedelta(hours=4)))
    ingest.send(h.hub_a, inventory(h.hub_a, h.cuff, T0 + timedelta(hours=4)))
    assert scalar(db, "SELECT count(*) FROM custody_requests WHERE device_id = %s", h.cuff) == 1
    assert chart(db, h.patient_a, h.cuff) == 0


def test_attack_hub_a_injects_readings_for_hub_bs_cuff_is_dead_lettered(
    ingest: Ingest,
    homes: Homes,
    db: psycopg.Connection[Any],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = homes
    ingest.send(h.hub_b, paired(h.hub_b, h.cuff, T0 - timedelta(days=1)))
    caplog.set_level(logging.WARNING, logger="homevitals.ingest")
    # The attack: hub A publishes made-up readings of B's cuff on its own topic.
    ingest.send(h.hub_a, bp_batch(h.hub_a, h.cuff, range(0, 4)))
    ingest.send(h.hub_b, bp_batch(h.hub_b, h.cuff, range(10, 12)))

    forged = chart(db, h.patient_b, h.cuff) - 2
    stored_from_a = int(
        scalar(
            db,
            "SELECT count(*) FROM blood_pressure WHERE device_id = %s AND gateway_id = %s",
            h.cuff,
            h.hub_a,
        )
    )
    print(f"injection attack: forged readings in B's chart {forged}, stored from A {stored_from_a}")
    assert (forged, stored_from_a) == (0, 0)

    reasons = [
        str(r[0])
        for r in db.execute(
            "SELECT reason FROM dead_letters WHERE device_id = %s AND gateway_id = %s"
            " AND reprocessed_at IS NULL",
            (h.cuff, h.hub_a),
        )
    ]
    assert (
        reasons
        == [f"custody: device {h.cuff!r} is in the custody of hub {h.hub_b!r}, not {h.hub_a!r}"] * 4
    )
    # The operator's alert: a log line, the device's timeline, the status counts.
    assert any("custody" in r.getMessage() and h.hub_a in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]
    assert ("readings.refused", h.hub_a) in timeline(db, h.cuff)
    custody = ingest_counts(database_url)["custody"]
    assert custody["refused_readings"] >= 4


def test_first_pairing_by_an_enrolled_hub_binds_the_device_as_before(
    ingest: Ingest, homes: Homes, db: psycopg.Connection[Any]
) -> None:
    h = homes
    ingest.send(h.hub_b, paired(h.hub_b, h.cuff, T0), bp_batch(h.hub_b, h.cuff, range(0, 3)))
    assert chart(db, h.patient_b, h.cuff) == 3
    assert scalar(db, "SELECT gateway_id FROM devices WHERE id = %s", h.cuff) == h.hub_b
    assert ("custody.taken", h.hub_b) in timeline(db, h.cuff)


def test_unpair_by_the_owning_hub_releases_and_from_another_hub_is_refused(
    ingest: Ingest, homes: Homes, db: psycopg.Connection[Any]
) -> None:
    h = homes
    ingest.send(h.hub_b, paired(h.hub_b, h.cuff, T0 - timedelta(days=1)))
    ingest.send(h.hub_b, bp_batch(h.hub_b, h.cuff, range(0, 2)))
    # Hub A tries to free B's cuff (to pair it next): refused, audited, nothing changes.
    ingest.send(h.hub_a, unpaired(h.hub_a, h.cuff, T0 + timedelta(hours=3)))
    open_binding = "SELECT count(*) FROM device_bindings WHERE device_id = %s AND upper_inf(valid)"
    assert scalar(db, open_binding, h.cuff) == 1
    assert scalar(db, "SELECT gateway_id FROM devices WHERE id = %s", h.cuff) == h.hub_b
    assert ("unpair.refused", h.hub_a) in timeline(db, h.cuff)

    # Hub B unpairs it: custody released, the binding closed at the unpair time.
    ingest.send(h.hub_b, unpaired(h.hub_b, h.cuff, T0 + timedelta(hours=5)))
    assert scalar(db, open_binding, h.cuff) == 0
    assert scalar(db, "SELECT gateway_id FROM devices WHERE id = %s", h.cuff) is None
    assert ("custody.released", h.hub_b) in timeline(db, h.cuff)
    # A reading hub B measured before its unpair and sends after it is still B's.
    ingest.send(h.hub_b, bp_batch(h.hub_b, h.cuff, range(4, 5)))
    assert chart(db, h.patient_b, h.cuff) == 3
    # A free device: hub A may now pair it (the cuff was handed over); readings from then
    # on are A's patient's, those before stay B's.  A's clock lags: its pairing says an
    # hour before B's unpair, yet the bindings never overlap.
    ingest.send(h.hub_a, paired(h.hub_a, h.cuff, T0 + timedelta(hours=4)))
    starts = scalar(
        db,
        "SELECT lower(valid) FROM device_bindings WHERE device_id = %s AND upper_inf(valid)",
        h.cuff,
    )
    assert starts == T0 + timedelta(hours=5)
    ingest.send(h.hub_a, bp_batch(h.hub_a, h.cuff, range(7, 9)))
    assert (chart(db, h.patient_a, h.cuff), chart(db, h.patient_b, h.cuff)) == (2, 3)
    # But nothing B measures after giving it up.
    ingest.send(h.hub_b, bp_batch(h.hub_b, h.cuff, range(9, 10)))
    assert (chart(db, h.patient_a, h.cuff), chart(db, h.patient_b, h.cuff)) == (2, 3)


def test_clinician_approved_move_moves_the_device_and_keeps_history(
    ingest: Ingest, homes: Homes, db: psycopg.Connection[Any]
) -> None:
    h = homes
    ingest.send(h.hub_b, paired(h.hub_b, h.cuff, T0 - timedelta(days=1)))
    ingest.send(h.hub_b, bp_batch(h.hub_b, h.cuff, range(0, 3)))
    ingest.send(h.hub_a, paired(h.hub_a, h.cuff, T0 + timedelta(hours=4)))
    request = int(scalar(db, "SELECT id FROM custody_requests WHERE device_id = %s", h.cuff))
    with db.transaction():
        decide(
            db,
            request,
            approve=True,
            actor="dr-test",
            at=T0 + timedelta(hours=4),
            reason="the cuff was given to patient A",
        )
    # No waiting for ingest's binding cache to age: a refusal is confirmed on the database.
    ingest.send(h.hub_a, bp_batch(h.hub_a, h.cuff, range(5, 7)))
    # Hub B no longer holds it: what it measured after the move is refused; what it
    # measured before (still in its outbox at the move) is B's patient's.
    ingest.send(h.hub_b, bp_batch(h.hub_b, h.cuff, range(8, 9)))
    ingest.send(h.hub_b, bp_batch(h.hub_b, h.cuff, range(3, 4)))
    assert (chart(db, h.patient_a, h.cuff), chart(db, h.patient_b, h.cuff)) == (2, 4)
    refused = scalar(
        db,
        "SELECT count(*) FROM dead_letters WHERE device_id = %s AND gateway_id = %s",
        h.cuff,
        h.hub_b,
    )
    assert refused == 1
    assert scalar(db, "SELECT gateway_id FROM devices WHERE id = %s", h.cuff) == h.hub_a
    assert scalar(db, "SELECT status FROM custody_requests WHERE id = %s", request) == "approved"
    assert (
        scalar(
            db,
            "SELECT status FROM flags WHERE patient_id = %s AND rule_id = 'device_custody'",
            h.patient_b,
        )
        == "resolved"
    )
    assert ("custody.approved", None) in timeline(db, h.cuff)


def test_attack_hub_a_reports_battery_and_errors_for_hub_bs_cuff_is_ignored(
    ingest: Ingest, homes: Homes, db: psycopg.Connection[Any]
) -> None:
    h = homes
    ingest.send(h.hub_b, paired(h.hub_b, h.cuff, T0 - timedelta(days=1)))
    own = wire.DeviceSynced(device=h.cuff, at=T0, battery_percent=80, readings=3)
    ingest.send(
        h.hub_b,
        (
            wire.events_topic(h.hub_b),
            wire.encode(wire.EventsMessage(wire.SCHEMA_EVENT, h.hub_b, [own])),
        ),
    )
    # The attack: hub A says B's cuff is flat and failing (B's clinician sees a dead cuff).
    forged = wire.DeviceSynced(
        device=h.cuff, at=T0 + timedelta(hours=1), battery_percent=1, error="cuff failure"
    )
    ingest.send(
        h.hub_a,
        (
            wire.events_topic(h.hub_a),
            wire.encode(wire.EventsMessage(wire.SCHEMA_EVENT, h.hub_a, [forged])),
        ),
    )
    state = db.execute(
        "SELECT battery_percent, last_error, last_sync FROM devices WHERE id = %s", (h.cuff,)
    ).fetchone()
    print(f"sync-report attack: B's cuff now {state}")
    assert state == (80, None, T0)


def test_ingest_custody_decisions_are_on_the_hash_chained_audit_log(
    ingest: Ingest, homes: Homes, db: psycopg.Connection[Any]
) -> None:
    """Who (the hub), from where (its topic), what and why: a held pairing and refused
    readings are audit rows like the API's decisions, and the chain stays intact."""
    from api.core.audit_chain import verify

    h = homes
    ingest.send(h.hub_b, paired(h.hub_b, h.cuff, T0 - timedelta(days=1)))
    mark = scalar(db, "SELECT coalesce(max(id), 0) FROM audit_log")
    ingest.send(h.hub_a, paired(h.hub_a, h.cuff, T0))
    ingest.send(h.hub_a, bp_batch(h.hub_a, h.cuff, range(0, 2)))
    rows = db.execute(
        "SELECT actor, role, action, patient_id, client_ip, status FROM audit_log"
        " WHERE id > %s AND resource = %s ORDER BY id",
        (mark, f"device/{h.cuff}"),
    ).fetchall()
    assert (h.hub_a, "gateway", "custody.held", h.patient_b, f"mqtt:{h.hub_a}", 403) in rows
    assert (h.hub_a, "gateway", "readings.refused", h.patient_b, f"mqtt:{h.hub_a}", 403) in rows
    assert verify(db).ok
