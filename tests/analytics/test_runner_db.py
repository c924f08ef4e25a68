"""The analytics runner on the real database: which patients a full pass re-evaluates, and
urgent flags raised within seconds of ingest through LISTEN/NOTIFY.

Each test has a private database: the runner's state (``analytics_state``) and its full
passes are global to a database, so they must not see other tests' patients.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from analytics_helpers import pair, reading, send
from waiting import wait_until

from analytics.flags import list_flags
from analytics.runner import LAST_ADHERENCE_KEY, LAST_PASS_KEY, PassReport, full_pass, run
from device_profiles.model import Component, Kind
from homevitals.services.postgres import LocalPostgres
from ingest.migrations import migrate
from ingest.patients import enroll_patient
from ingest.registry import BindingCache

pytestmark = pytest.mark.services


class Meter:
    """One enrolled patient with one paired fingerstick meter on its own gateway."""

    def __init__(self, conn: psycopg.Connection[Any], url: str, name: str) -> None:
        tag = f"an-run-{name}-{uuid.uuid4().hex[:8]}"
        self.conn = conn
        self.gateway = f"gw-{tag}"
        self.device = f"{tag}-meter"
        self.seq = 0
        self.patient_id = enroll_patient(url, f"pt-{tag}", [self.gateway])
        self.cache = BindingCache()
        pair(
            conn,
            self.cache,
            self.gateway,
            {self.device: "glucose-meter"},
            datetime(2020, 1, 1, tzinfo=UTC),
        )

    def send(self, *readings: tuple[datetime, float]) -> None:
        batch = []
        for when, mgdl in readings:
            self.seq += 1
            batch.append(
                reading(self.device, Kind.GLUCOSE, when, {Component.GLUCOSE: mgdl}, self.seq)
            )
        result = send(self.conn, self.cache, self.gateway, batch)
        assert result.inserted == {"glucose": len(batch)}, result

    def flags(self) -> set[str]:
        """Open flags of the rules these tests are about (every patient here also has
        ``adherence_low_days``: fewer than 16 days of readings)."""
        found = list_flags(self.conn, patients=[self.patient_id], statuses=["open"], rules=WATCHED)
        return {f.rule_id for f in found}


WATCHED = ["urgent_low_glucose", "adherence_no_data"]


def private_database(cluster: LocalPostgres, name: str) -> str:
    url = cluster.create_database(name)
    migrate(url)
    return url


@pytest.fixture()
def pass_db(local_postgres: LocalPostgres) -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    url = private_database(local_postgres, "hv_test_an_full_pass")
    with psycopg.connect(url, autocommit=True) as conn:
        yield url, conn


def state(conn: psycopg.Connection[Any], key: str) -> datetime | None:
    row = conn.execute("SELECT value FROM analytics_state WHERE key = %s", (key,)).fetchone()
    return None if row is None else row[0]


def every(hours: float, start: datetime, end: datetime) -> list[datetime]:
    out, t = [], start
    while t <= end:
        out.append(t)
        t += timedelta(hours=hours)
    return out


def test_full_pass_reevaluates_new_data_and_periodically_everyone(
    pass_db: tuple[str, psycopg.Connection[Any]],
) -> None:
    url, conn = pass_db
    now = datetime.now(UTC)
    a, b, c = (Meter(conn, url, n) for n in ("a", "b", "c"))
    recent = every(6, now - timedelta(days=2), now - timedelta(hours=1))
    a.send(*[(t, 120.0) for t in recent])
    b.send(*[(t, 125.0) for t in recent])
    c.send(*[(t, 130.0) for t in every(6, now - timedelta(days=6), now - timedelta(days=5))])

    # First pass: no adherence pass yet, so everyone; C has been silent for 5 days (and all
    # three have readings on fewer than 16 days: 3 x adherence_low_days).
    first_at = datetime.now(UTC)
    first = full_pass(conn, first_at)
    assert first.patients == 3 and first.raised == 1 + 3
    assert (a.flags(), b.flags(), c.flags()) == (set(), set(), {"adherence_no_data"})
    assert state(conn, LAST_PASS_KEY) == state(conn, LAST_ADHERENCE_KEY) == first_at

    # New data for A only (an urgent low): the next pass evaluates A and nobody else.
    a.send((datetime.now(UTC) - timedelta(minutes=1), 45.0))
    second_at = datetime.now(UTC)
    second = full_pass(conn, second_at)
    assert (second.patients, second.raised) == (1, 1)
    assert a.flags() == {"urgent_low_glucose"}
    assert state(conn, LAST_PASS_KEY) == second_at
    assert state(conn, LAST_ADHERENCE_KEY) == first_at

    # Nothing new: nobody is evaluated.
    assert full_pass(conn, second_at + timedelta(minutes=1)) == PassReport(0, 0, 0, 0)

    # The periodic adherence check (due hourly) re-evaluates everyone: four days on, A and B
    # have been silent without sending anything new, and A's urgent low has left the 24 h.
    later = second_at + timedelta(days=4)
    periodic = full_pass(conn, later)
    assert periodic.patients == 3
    assert periodic.raised == 2 and periodic.cleared >= 1
    assert a.flags() == {"urgent_low_glucose", "adherence_no_data"}
    assert b.flags() == {"adherence_no_data"}
    (urgent,) = list_flags(conn, patients=[a.patient_id], rules=["urgent_low_glucose"])
    assert not urgent.condition_active
    assert state(conn, LAST_ADHERENCE_KEY) == later


RUN_SECONDS = 6.0  # the runner's life: far less than its 60 s full-pass interval


def test_urgent_flag_raised_by_the_ingest_notification(local_postgres: LocalPostgres) -> None:
    """The runner's one full pass is at start-up, before LISTEN; the next would come after
    60 s, long after it stopped.  So a flag for a reading sent once it listens can only
    come from the NOTIFY path (no wall-clock assert: the event proves the path)."""
    url = private_database(local_postgres, "hv_test_an_listen")
    with psycopg.connect(url, autocommit=True) as conn:
        low, normal = Meter(conn, url, "low"), Meter(conn, url, "normal")
        outcome: dict[str, Any] = {}

        def serve() -> None:
            try:
                outcome["report"] = run(url, interval_s=60, duration_s=RUN_SECONDS)
            except BaseException as exc:  # surfaced by the assertions below
                outcome["error"] = exc

        runner = threading.Thread(target=serve, name="hv-analytics-run", daemon=True)
        runner.start()

        def listening() -> bool:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query = 'LISTEN hv_readings'"
            ).fetchone()
            return row is not None and int(row[0]) == 1

        wait_until(listening, 10.0, what=lambda: outcome)
        urgent = ["urgent_low_glucose", "urgent_high_glucose"]
        before = list_flags(conn, patients=[low.patient_id, normal.patient_id], rules=urgent)
        assert before == []

        low.send((datetime.now(UTC) - timedelta(seconds=5), 45.0))  # ingest NOTIFYs on commit
        normal.send((datetime.now(UTC) - timedelta(seconds=5), 110.0))
        wait_until(
            lambda: "urgent_low_glucose" in low.flags() or not runner.is_alive(),
            RUN_SECONDS + 30,
            what=lambda: outcome,
        )
        assert "urgent_low_glucose" in low.flags(), "raised only after the runner stopped?"

        runner.join(RUN_SECONDS + 30)
        assert not runner.is_alive()
        assert "error" not in outcome, outcome["error"]
        report: PassReport = outcome["report"]
        assert report.raised >= 1
        (flag,) = list_flags(conn, patients=[low.patient_id], rules=urgent)
        assert flag.evidence["min_mgdl"] == 45.0
        # The normal reading went through the same urgent path and raised nothing.
        assert list_flags(conn, patients=[normal.patient_id], rules=urgent) == []
