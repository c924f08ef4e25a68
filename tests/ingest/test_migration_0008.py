"""Migration 0008 (one row per source record) on data built with the 0007 schema.

The rows are what ingest stored up to 0007, including the failures of issue #13: one
record stored twice or three times at different corrected times (a skew change, a full
re-download), a control-solution test and multi-user readings with the ids of the time.
After the migration nothing is lost (every old row is in its table or, as a later copy
of a record, in ``reading_duplicates``), the first received copy stays, the claims in
``reading_identity`` match the rows, and the ids the migration recomputed are the ones
``readings.identity`` gives: the same records sent again store nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from wire_helpers import send_through_ingest

from device_profiles.model import Component, Kind
from homevitals.services.postgres import LocalPostgres
from ingest.migrations import migrate
from readings import Original, Reading, RecordKey, RecordType

pytestmark = pytest.mark.services
T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 10, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def old_db(local_postgres: LocalPostgres) -> Iterator[str]:
    url = local_postgres.create_database(f"hv_mig8_{uuid.uuid4().hex[:6]}")
    assert migrate(url, upto=7) == [1, 2, 3, 4, 5, 6, 7]
    yield url


def v1(device: str, kind: Kind, device_time: str, seq: int | None) -> uuid.UUID:
    """An id as ingest stored it up to 0007 (no record type, no user)."""
    return uuid.UUID(RecordKey(device, kind, None, device_time, seq).reading_id)


def local(t: datetime) -> str:
    return t.replace(tzinfo=None).isoformat()


def glucose(conn: Any, rid: uuid.UUID, t: datetime, received: datetime, **row: Any) -> None:
    fields = {
        "time": t,
        "reading_id": rid,
        "device_id": "meter-m",
        "source": "smbg",
        "mgdl": 100.0,
        "received_at": received,
        **row,
    }
    names = ", ".join(fields)
    marks = ", ".join(["%s"] * len(fields))
    conn.execute(f"INSERT INTO glucose ({names}) VALUES ({marks})", list(fields.values()))


def test_migration_keeps_every_row_and_resolves_duplicates(old_db: str) -> None:
    with psycopg.connect(old_db, autocommit=True) as conn:
        # 40 meter records, each once; record 7 also re-fetched with a 2-minute skew
        # change (a later copy), record 9 three times (two full re-downloads).
        for seq in range(1, 41):
            t = T0 + timedelta(hours=seq)
            rid = v1("meter-m", Kind.GLUCOSE, local(t), seq)
            glucose(conn, rid, t, RECEIVED, sequence=seq, device_time=local(t))
            copies = {7: 1, 9: 2}.get(seq, 0)
            for k in range(1, copies + 1):
                glucose(
                    conn,
                    rid,
                    t + timedelta(minutes=2 * k),
                    RECEIVED + timedelta(days=k),
                    sequence=seq,
                    device_time=local(t),
                    mgdl=100.0 + k,  # tell the copies apart
                )
        # A control-solution test, as ingest stored it (v1 id, no record type).
        tc = T0 + timedelta(days=3)
        control_v1 = v1("meter-m", Kind.GLUCOSE, local(tc), 99)
        glucose(
            conn,
            control_v1,
            tc,
            RECEIVED,
            sequence=99,
            device_time=local(tc),
            conditions=["control_solution"],
            gateway_id="gw-m",
        )
        # A BP reading of user 1, stored twice (skew change); one of user "unknown".
        tb = T0 + timedelta(days=4)
        bp_v1 = v1("cuff-m", Kind.BLOOD_PRESSURE, local(tb), None)
        for k in range(2):
            conn.execute(
                "INSERT INTO blood_pressure (time, reading_id, device_id, systolic, diastolic,"
                " device_time, user_id, original_unit, received_at)"
                " VALUES (%s, %s, 'cuff-m', 120, 80, %s, 1, 'kPa', %s)",
                (tb + timedelta(minutes=k), bp_v1, local(tb), RECEIVED + timedelta(days=k)),
            )
        tu = tb + timedelta(hours=1)
        unknown_v1 = v1("cuff-m", Kind.BLOOD_PRESSURE, local(tu), None)
        conn.execute(
            "INSERT INTO blood_pressure (time, reading_id, device_id, systolic, diastolic,"
            " device_time, user_id) VALUES (%s, %s, 'cuff-m', 130, 85, %s, 255)",
            (tu, unknown_v1, local(tu)),
        )
        # A weight of user 2 (details.user_id) and one without a user.
        tw = T0 + timedelta(days=5)
        weight_v1 = v1("scale-m", Kind.WEIGHT, local(tw), None)
        plain_v1 = v1("scale-m", Kind.WEIGHT, local(tw + timedelta(days=1)), None)
        for rid, t, details in (
            (weight_v1, tw, {"user_id": 2}),
            (plain_v1, tw + timedelta(days=1), {}),
        ):
            conn.execute(
                "INSERT INTO body_readings (time, reading_id, device_id, kind, components,"
                " device_time, details) VALUES (%s, %s, 'scale-m', 'weight', %s, %s, %s)",
                (
                    t,
                    rid,
                    orjson.dumps({"weight": 80.0}).decode(),
                    local(t),
                    orjson.dumps(details).decode() if details else None,
                ),
            )
        before = _all_rows(conn)
        assert len(before) == 40 + 3 + 1 + 3 + 2

    assert migrate(old_db, upto=8) == [8]

    with psycopg.connect(old_db, autocommit=True) as conn:
        after = _all_rows(conn)
        moved = conn.execute("SELECT tbl, row_data FROM reading_duplicates ORDER BY id").fetchall()
        # Nothing lost: every old row is stored or kept as a later copy.
        kept = {(tbl, _fingerprint(row)) for tbl, row in moved}
        assert len(after) + len(moved) == len(before)
        assert {(t, _fingerprint(r)) for t, r in before} == {
            (t, _fingerprint(r)) for t, r in after
        } | kept
        # One row per id; the first received copy stays (mgdl 100, not the copies').
        ids = [(t, r["reading_id"]) for t, r in after]
        assert len(ids) == len(set(ids)) == 40 + 1 + 2 + 2
        meter = {
            r["sequence"]: r["mgdl"] for t, r in after if t == "glucose" and r["sequence"] != 99
        }
        assert meter == {seq: 100.0 for seq in range(1, 41)}
        assert len(moved) == 4  # record 7 once, record 9 twice, the BP copy once
        # The claims are the rows.
        claims = conn.execute("SELECT tbl, reading_id::text FROM reading_identity").fetchall()
        assert sorted(claims) == sorted((t, str(r["reading_id"])) for t, r in after)
        # Recomputed ids: what readings.identity gives for the same records.
        control_id = RecordKey(
            "meter-m", Kind.GLUCOSE, RecordType.CONTROL, local(tc), 99
        ).reading_id
        bp_id = RecordKey("cuff-m", Kind.BLOOD_PRESSURE, None, local(tb), None, 1).reading_id
        weight_id = RecordKey("scale-m", Kind.WEIGHT, None, local(tw), None, 2).reading_id
        stored_ids = {str(r["reading_id"]) for _, r in after}
        assert {control_id, bp_id, weight_id} <= stored_ids
        assert {str(unknown_v1), str(plain_v1)} <= stored_ids  # no user: unchanged
        assert str(control_v1) not in stored_ids
        record = conn.execute(
            "SELECT record_type FROM glucose WHERE reading_id = %s", (control_id,)
        ).fetchone()
        assert record == ("control",)

        # The later migrations on top (what the pipeline below needs), then the same
        # records sent again after the upgrade (new skew: new times) store nothing.
        migrate(old_db)
        again = [
            Reading(
                id=control_id,
                device="meter-m",
                kind=Kind.GLUCOSE,
                time=tc + timedelta(minutes=5),
                values={Component.GLUCOSE: 100.0},
                device_time=local(tc),
                seq=99,
                record_type=RecordType.CONTROL,
            ),
            Reading(
                id=bp_id,
                device="cuff-m",
                kind=Kind.BLOOD_PRESSURE,
                time=tb + timedelta(minutes=5),
                values={Component.SYSTOLIC: 120.0, Component.DIASTOLIC: 80.0},
                device_time=local(tb),
                details={"user_id": 1},
                original={Component.SYSTOLIC: Original(16.0, "kPa")},
            ),
            Reading(
                id=v1("meter-m", Kind.GLUCOSE, local(T0 + timedelta(hours=9)), 9).__str__(),
                device="meter-m",
                kind=Kind.GLUCOSE,
                time=T0 + timedelta(hours=9, minutes=30),
                values={Component.GLUCOSE: 100.0},
                device_time=local(T0 + timedelta(hours=9)),
                seq=9,
            ),
        ]
        result = send_through_ingest(
            conn,
            "gw-m",
            {"meter-m": "glucose-meter", "cuff-m": "blood-pressure"},
            T0 - timedelta(days=1),
            again,
            RECEIVED + timedelta(days=9),
        )
        assert result.inserted == {"glucose": 0, "blood_pressure": 0}, result
        assert sum(result.duplicates.values()) == 3
        assert len(_all_rows(conn)) == len(after)


TABLES = ("glucose", "blood_pressure", "body_readings")


def _all_rows(conn: Any) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for table in TABLES:
        for (row,) in conn.execute(f"SELECT to_jsonb(t) FROM {table} t"):
            out.append((table, row))
    return out


# Columns 0008 adds or the migration rewrites: left out when matching old and new rows.
_CHANGED = {"reading_id", "record_type", "original"}


def _fingerprint(row: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {k: v for k, v in row.items() if k not in _CHANGED}, option=orjson.OPT_SORT_KEYS
    )
