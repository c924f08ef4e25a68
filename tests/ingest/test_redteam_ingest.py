"""Red-team findings on ingest (B1, B2, B4, B7), each as the attack through the real
broker, ingest worker and database: the hub publishes with its own credentials on its
own topic, exactly as an attacker holding that hub could.

- B1: a hub backdates readings of a device it just took (after the old hub unpaired it,
  or after a clinician approved the move) into the previous patient's chart.
- B2: a hub publishes, for its own device, a reading carrying the id another patient's
  meter's next record will have, so the real record is later taken for a duplicate.
- B4: a second custody hold on one patient crashed the whole events message.
- B7: a hub pairs a device id of the bulk-import namespace (``import:…``), so the
  patient's own import is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from test_custody_attacks import (
    CUFF,
    T0,
    Homes,
    Ingest,
    bp_batch,
    chart,
    paired,
    running_ingest,
    scalar,
    timeline,
    unpaired,
)
from wire_helpers import wire_reading

from device_profiles.model import Component, Kind
from ingest.bulk_import import import_file
from ingest.custody_review import decide
from ingest.patients import enroll_patient
from readings import wire

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def ingest(
    database_url: str, ingest_mqtt_url: str, gateway_mqtt_url: Callable[[str], str]
) -> Iterator[Ingest]:
    yield from running_ingest(database_url, ingest_mqtt_url, gateway_mqtt_url, "redteam")


@pytest.fixture()
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture()
def homes(database_url: str) -> Homes:
    """Patient A (Alice) with hub A, patient B (Bob) with hub B; B owns the cuff."""
    tag = uuid.uuid4().hex[:6]
    hub_a, hub_b = f"gw-rt-a-{tag}", f"gw-rt-b-{tag}"
    patient_a = enroll_patient(database_url, f"pt-rt-a-{tag}", [hub_a])
    patient_b = enroll_patient(database_url, f"pt-rt-b-{tag}", [hub_b])
    return Homes(hub_a, hub_b, patient_a, patient_b, f"cuff-rt-{tag}")


def open_reasons(db: psycopg.Connection[Any], device: str, hub: str) -> list[str]:
    return [
        str(r[0])
        for r in db.execute(
            "SELECT reason FROM dead_letters WHERE device_id = %s AND gateway_id = %s"
            " AND reprocessed_at IS NULL ORDER BY id",
            (device, hub),
        )
    ]


def events(gateway: str, *items: wire.Event) -> tuple[str, bytes]:
    message = wire.EventsMessage(wire.SCHEMA_EVENT, gateway, list(items))
    return wire.events_topic(gateway), wire.encode(message)


# --- B1: backdating into another patient's chart ----------------------------------------


def test_b1_backdated_readings_after_a_hand_over_stay_out_of_the_old_patients_chart(
    ingest: Ingest, homes: Homes, db: psycopg.Connection[Any]
) -> None:
    h = homes
    # Bob's hub pairs the cuff (new: Bob's from -infinity), sends, unpairs at T0+5h.
    ingest.send(h.hub_b, paired(h.hub_b, h.cuff, T0 - timedelta(days=1)))
    ingest.send(h.hub_b, bp_batch(h.hub_b, h.cuff, range(0, 3)))
    ingest.send(h.hub_b, unpaired(h.hub_b, h.cuff, T0 + timedelta(hours=5)))
    # Alice's hub pairs the free cuff at T0+6h: custody is hers from then on.
    ingest.send(h.hub_a, paired(h.hub_a, h.cuff, T0 + timedelta(hours=6)))
    # The attack: readings dated while the cuff was Bob's (hours 3, 4), and one of hers.
    ingest.send(h.hub_a, bp_batch(h.hub_a, h.cuff, range(3, 5)), bp_batch(h.hub_a, h.cuff, [7]))

    in_bobs, in_alices = chart(db, h.patient_b, h.cuff), chart(db, h.patient_a, h.cuff)
    print(f"B1 hand-over backdating: Bob's chart {in_bobs} (3 his own), Alice's {in_alices}")
    assert (in_bobs, in_alices) == (3, 1)
    reason = (
        f"custody: measured before hub {h.hub_a}'s custody of device {h.cuff!r} began:"
        " it would land in another patient's chart"
    )
    assert open_reasons(db, h.cuff, h.hub_a) == [reason, reason]
    assert ("readings.refused", h.hub_a) in timeline(db, h.cuff)


def test_b1_backdated_readings_after_an_approved_move_stay_with_the_old_patient(
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
    # The attack: Alice's hub, now the custodian, dates readings before the move.
    ingest.send(h.hub_a, bp_batch(h.hub_a, h.cuff, range(3, 4)), bp_batch(h.hub_a, h.cuff, [5]))
    in_bobs, in_alices = chart(db, h.patient_b, h.cuff), chart(db, h.patient_a, h.cuff)
    print(f"B1 approved-move backdating: Bob's chart {in_bobs} (3 his own), Alice's {in_alices}")
    assert (in_bobs, in_alices) == (3, 1)
    assert len(open_reasons(db, h.cuff, h.hub_a)) == 1


def test_b1_a_first_pairing_keeps_the_devices_whole_history(
    ingest: Ingest, homes: Homes, db: psycopg.Connection[Any]
) -> None:
    h = homes
    ingest.send(h.hub_a, paired(h.hub_a, h.cuff, T0 + timedelta(hours=10)))
    ingest.send(h.hub_a, bp_batch(h.hub_a, h.cuff, range(0, 3)))
    assert chart(db, h.patient_a, h.cuff) == 3
    assert open_reasons(db, h.cuff, h.hub_a) == []


# --- B2: a forged reading id -------------------------------------------------------------


def test_b2_a_forged_reading_id_cannot_destroy_another_patients_reading(
    ingest: Ingest, homes: Homes, db: psycopg.Connection[Any]
) -> None:
    h = homes
    alices_cuff = h.cuff + "-a"
    ingest.send(h.hub_b, paired(h.hub_b, h.cuff, T0 - timedelta(days=1)))
    ingest.send(h.hub_a, paired(h.hub_a, alices_cuff, T0 - timedelta(days=1)))
    # Bob's next record, as his hub will send it (the id is a public recipe).
    bobs_next = wire_reading(
        h.cuff,
        Kind.BLOOD_PRESSURE,
        T0 + timedelta(hours=5),
        {Component.SYSTOLIC: 150.0, Component.DIASTOLIC: 95.0},
    )
    # The attack: Alice's hub sends a reading of her own cuff carrying that id.
    forged = wire_reading(
        alices_cuff,
        Kind.BLOOD_PRESSURE,
        T0 + timedelta(hours=1),
        {Component.SYSTOLIC: 120.0, Component.DIASTOLIC: 80.0},
    )
    forged = msgspec.structs.replace(forged, id=bobs_next.id)
    batch = wire.ReadingsBatch(wire.SCHEMA_READINGS, h.hub_a, datetime.now(UTC), [forged])
    ingest.send(h.hub_a, (wire.readings_topic(h.hub_a), wire.encode(batch)))
    # Bob's real record arrives.
    real = wire.ReadingsBatch(wire.SCHEMA_READINGS, h.hub_b, datetime.now(UTC), [bobs_next])
    ingest.send(h.hub_b, (wire.readings_topic(h.hub_b), wire.encode(real)))

    stored = db.execute(
        "SELECT device_id, patient_id, systolic FROM blood_pressure WHERE reading_id = %s",
        (bobs_next.id,),
    ).fetchall()
    print(f"B2 forged id: the row holding Bob's id is {stored}")
    assert stored == [(h.cuff, h.patient_b, 150.0)]
    assert open_reasons(db, alices_cuff, h.hub_a) == ["reading id does not match its source record"]


# --- B4: several custody holds on one patient ----------------------------------------------


def test_b4_three_holds_on_one_patient_from_two_hubs_and_the_other_events_applied(
    ingest: Ingest, homes: Homes, db: psycopg.Connection[Any], database_url: str
) -> None:
    h = homes  # here: hub B is Carol's, hub A is Dan's, and a third hub is Bob's
    carol, dan_hub = h.patient_b, h.hub_a
    tag = uuid.uuid4().hex[:6]
    bob_hub = f"gw-rt-c-{tag}"
    bob = enroll_patient(database_url, f"pt-rt-c-{tag}", [bob_hub])
    meter, scale, own = h.cuff, h.cuff + "-2", h.cuff + "-bob"
    ingest.send(h.hub_b, paired(h.hub_b, meter, T0), paired(h.hub_b, scale, T0))
    ingest.send(dan_hub, paired(dan_hub, meter, T0 + timedelta(hours=1)))  # hold 1
    # One message from Bob's hub: two more holds on Carol's devices, a pairing of its own
    # device, a malformed record, an unpair of a device it does not hold.
    malformed = wire.DeviceRecordMalformed(
        device=own,
        at=T0 + timedelta(hours=2),
        characteristic="00002a35-0000-1000-8000-00805f9b34fb",
        raw="1e",
        reason="truncated",
    )
    ingest.send(
        bob_hub,
        events(
            bob_hub,
            wire.DevicePaired(device=meter, at=T0 + timedelta(hours=2), profile=CUFF),
            wire.DevicePaired(device=scale, at=T0 + timedelta(hours=2), profile=CUFF),
            wire.DevicePaired(device=own, at=T0 + timedelta(hours=2), profile=CUFF),
            malformed,
            wire.DeviceUnpaired(device=meter, at=T0 + timedelta(hours=2)),
        ),
    )
    whole = scalar(
        db,
        "SELECT count(*) FROM dead_letters WHERE gateway_id = %s AND reason LIKE 'could not%%'",
        bob_hub,
    )
    pending = db.execute(
        "SELECT device_id, to_gateway FROM custody_requests WHERE from_patient = %s"
        " AND status = 'pending' ORDER BY id",
        (carol,),
    ).fetchall()
    print(f"B4 three holds: whole-message dead letters {whole}, pending {pending}")
    assert whole == 0
    assert pending == [(meter, dan_hub), (meter, bob_hub), (scale, bob_hub)]
    flags = db.execute(
        "SELECT jsonb_array_length(evidence->'requests'), status FROM flags"
        " WHERE patient_id = %s AND rule_id = 'device_custody'",
        (carol,),
    ).fetchall()
    assert flags == [(3, "open")]
    assert scalar(db, "SELECT gateway_id FROM devices WHERE id = %s", own) == bob_hub
    assert chart(db, bob, own) == 0  # bound, no readings yet
    assert scalar(db, "SELECT patient_id FROM device_bindings WHERE device_id = %s", own) == bob
    assert ("unpair.refused", bob_hub) in timeline(db, meter)
    assert (
        scalar(
            db,
            "SELECT count(*) FROM dead_letters WHERE device_id = %s AND reason LIKE 'device record%%'",
            own,
        )
        == 1
    )


# --- B7: squatting the bulk-import namespace ---------------------------------------------


def test_b7_a_hub_cannot_squat_the_bulk_import_device_namespace(
    ingest: Ingest, homes: Homes, db: psycopg.Connection[Any], database_url: str, tmp_path: Path
) -> None:
    h = homes
    bob = scalar(db, "SELECT external_id FROM patients WHERE id = %s", h.patient_b)
    generic = f"import:generic:{bob}"
    dexcom = f"import:dexcom:SQ{uuid.uuid4().hex[:6].upper()}"
    libre = f"import:libreview:{uuid.uuid4()}"
    at = T0 - timedelta(days=1)
    ingest.send(
        h.hub_a,
        events(
            h.hub_a,
            wire.DevicePaired(device=generic, at=at, profile="glucose-meter"),
            wire.DeviceInventory(device=dexcom, at=at, profile="cgm"),
            wire.DevicePaired(device=libre, at=at, profile="cgm"),
        ),
    )
    squatted = db.execute(
        "SELECT id, gateway_id FROM devices WHERE id = ANY(%s)", ([generic, dexcom, libre],)
    ).fetchall()
    print(f"B7 import namespace: devices the hub got {squatted}")
    assert squatted == []
    for device in (generic, dexcom, libre):
        [reason] = open_reasons(db, device, h.hub_a)
        assert "bulk-import" in reason, reason
        assert ("pairing.refused", h.hub_a) in timeline(db, device)
    # Readings for an import source from a hub are refused too.
    reading = wire_reading(generic, Kind.GLUCOSE, T0, {Component.GLUCOSE: 100.0}, seq=1)
    batch = wire.ReadingsBatch(wire.SCHEMA_READINGS, h.hub_a, datetime.now(UTC), [reading])
    ingest.send(h.hub_a, (wire.readings_topic(h.hub_a), wire.encode(batch)))
    assert len(open_reasons(db, generic, h.hub_a)) == 2
    # Bob's own import works.
    csv = tmp_path / "bob.csv"
    csv.write_text("time,glucose\n2024-02-01T07:30:00,98\n2024-02-01T12:00:00,110\n")
    report = import_file(database_url, csv, "generic", bob, progress=False)
    assert report["readings_stored"] == 2
    owner = scalar(db, "SELECT patient_id FROM device_bindings WHERE device_id = %s", generic)
    assert owner == h.patient_b


def test_b1_a_hub_without_a_patient_cannot_backdate_into_the_old_patients_chart(
    ingest: Ingest, homes: Homes, db: psycopg.Connection[Any]
) -> None:
    h = homes
    loose = f"gw-rt-x-{uuid.uuid4().hex[:6]}"  # a hub attached to no patient (yet)
    ingest.send(h.hub_b, paired(h.hub_b, h.cuff, T0 - timedelta(days=1)))
    ingest.send(h.hub_b, bp_batch(h.hub_b, h.cuff, range(0, 2)))
    ingest.send(h.hub_b, unpaired(h.hub_b, h.cuff, T0 + timedelta(hours=5)))
    ingest.send(loose, paired(loose, h.cuff, T0 + timedelta(hours=6)))
    ingest.send(loose, bp_batch(loose, h.cuff, range(3, 5)), bp_batch(loose, h.cuff, [7]))
    assert chart(db, h.patient_b, h.cuff) == 2
    assert len(open_reasons(db, h.cuff, loose)) == 2
    # Its own reading (no binding at its time) is stored, in nobody's chart.
    unattributed = scalar(
        db,
        "SELECT count(*) FROM blood_pressure WHERE device_id = %s AND patient_id IS NULL",
        h.cuff,
    )
    assert unattributed == 1
