"""``homevitals analytics run``: evaluate rules for patients with new data, raise flags.

Two clocks: ingest NOTIFYs ``hv_readings`` with the patients of every committed batch,
and the urgent rules run for those patients at once (seconds after ingest); a full pass
(all rules) runs for patients with new data since the last pass, and every patient is
re-checked periodically for the adherence rules (which fire on *missing* data).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import psycopg

from analytics.flags import SyncOutcome, sync_results
from analytics.rules import RULES, Frame, RuleKind, evaluate, needed_frames, needed_history
from analytics.store import load_frames, patient_timezones
from analytics.targets import Targets, default_targets

log = logging.getLogger("homevitals.analytics")

NOTIFY_CHANNEL = (
    "hv_readings"  # ingest.writer.NOTIFY_CHANNEL; analytics reads, never imports ingest
)
LAST_PASS_KEY = "last_full_pass"
LAST_ADHERENCE_KEY = "last_adherence_pass"
URGENT_RULES = tuple(r for r in RULES if r.kind is RuleKind.URGENT)
# What a pass loads follows from what its rules read (``Rule.needs``, with the default
# targets), plus a day of slack: 31 days for a full pass, 2 for the urgent rules.
SLACK = timedelta(days=1)
LOOKBACK = needed_history(RULES) + SLACK
URGENT_LOOKBACK = needed_history(URGENT_RULES) + SLACK


@dataclass(frozen=True, slots=True)
class PassReport:
    patients: int
    raised: int
    updated: int
    cleared: int


def patient_targets(conn: psycopg.Connection[Any], patients: Sequence[int]) -> dict[str, Targets]:
    rows = conn.execute(
        "SELECT patient_id::text, category, overrides FROM patient_targets WHERE patient_id = ANY(%s)",
        (list(patients),),
    ).fetchall()
    found = {str(p): default_targets(c).with_overrides(**(o or {})) for p, c, o in rows}
    return {str(p): found.get(str(p), default_targets()) for p in patients}


def evaluate_patients(
    conn: psycopg.Connection[Any], patients: Sequence[int], now: datetime, urgent_only: bool = False
) -> PassReport:
    """Evaluate rules for ``patients`` at ``now`` and sync the flags (own transaction)."""
    if not patients:
        return PassReport(0, 0, 0, 0)
    rules = URGENT_RULES if urgent_only else RULES
    start = now - (URGENT_LOOKBACK if urgent_only else LOOKBACK)
    end = now + timedelta(seconds=1)
    with conn.transaction():
        frames = load_frames(conn, patients, start, end, needed_frames(rules))
        results = evaluate(
            pd.Timestamp(now),
            cgm=frames[Frame.CGM],
            smbg=frames[Frame.SMBG],
            bp=frames[Frame.BP],
            targets=patient_targets(conn, patients),
            tz=patient_timezones(conn, patients),
            patients=[str(p) for p in patients],
            rules=rules,
        )
        outcome: SyncOutcome = sync_results(conn, results)
    return PassReport(len(patients), outcome.raised, outcome.updated, outcome.cleared)


def _state(conn: psycopg.Connection[Any], key: str) -> datetime | None:
    row = conn.execute("SELECT value FROM analytics_state WHERE key = %s", (key,)).fetchone()
    return None if row is None else row[0]


def _set_state(conn: psycopg.Connection[Any], key: str, value: datetime) -> None:
    conn.execute(
        "INSERT INTO analytics_state (key, value) VALUES (%s, %s)"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        (key, value),
    )


def full_pass(
    conn: psycopg.Connection[Any],
    now: datetime | None = None,
    adherence_every: timedelta = timedelta(hours=1),
) -> PassReport:
    """All rules for patients with new data since the last pass; everyone when the
    periodic adherence check is due."""
    now = now or datetime.now(UTC)
    since = _state(conn, LAST_PASS_KEY)
    last_adherence = _state(conn, LAST_ADHERENCE_KEY)
    everyone = last_adherence is None or now - last_adherence >= adherence_every
    if everyone:
        rows = conn.execute("SELECT id FROM patients ORDER BY id").fetchall()
    else:
        rows = conn.execute(
            "SELECT patient_id FROM patient_activity WHERE last_ingest_at > %s ORDER BY patient_id",
            (since,),
        ).fetchall()
    patients = [int(r[0]) for r in rows]
    report = PassReport(0, 0, 0, 0)
    for i in range(0, len(patients), 500):  # bounded memory per chunk of patients
        part = evaluate_patients(conn, patients[i : i + 500], now)
        report = PassReport(
            report.patients + part.patients,
            report.raised + part.raised,
            report.updated + part.updated,
            report.cleared + part.cleared,
        )
    with conn.transaction():
        _set_state(conn, LAST_PASS_KEY, now)
        if everyone:
            _set_state(conn, LAST_ADHERENCE_KEY, now)
    return report


def run(
    database_url: str,
    interval_s: float = 60.0,
    duration_s: float | None = None,
    once: bool = False,
) -> PassReport:
    """Full passes every ``interval_s``; urgent rules on every ingest notification."""
    total = PassReport(0, 0, 0, 0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        report = full_pass(conn)
        log.info("full pass: %s", report, extra=asdict(report))
        total = report
        if once:
            return total
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        deadline = None if duration_s is None else time.monotonic() + duration_s
        next_full = time.monotonic() + interval_s
        while deadline is None or time.monotonic() < deadline:
            patients: set[int] = set()
            timeout = max(0.1, min(next_full - time.monotonic(), 1.0))
            for note in conn.notifies(timeout=timeout, stop_after=None):
                patients.update(int(p) for p in note.payload.split(",") if p)
                if len(patients) > 1000:
                    break
            if patients:
                urgent = evaluate_patients(
                    conn, sorted(patients), datetime.now(UTC), urgent_only=True
                )
                if urgent.raised:
                    log.warning(
                        "urgent flags raised: %d (patients %s)",
                        urgent.raised,
                        sorted(patients)[:10],
                        extra={"raised": urgent.raised, "patients": len(patients)},
                    )
                total = PassReport(
                    total.patients, total.raised + urgent.raised, total.updated, total.cleared
                )
            if time.monotonic() >= next_full:
                report = full_pass(conn)
                log.info("full pass: %s", report, extra=asdict(report))
                total = PassReport(
                    total.patients + report.patients,
                    total.raised + report.raised,
                    total.updated + report.updated,
                    total.cleared + report.cleared,
                )
                next_full = time.monotonic() + interval_s
    return total
