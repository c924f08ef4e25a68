"""Scored against the simulators' ground truth: readings go in the real way (wire payloads
through ``ingest.pipeline.process``), the runner evaluates the rules on the database, and
the flags it writes must match what each scenario injected and must not include what the
scenario says is absent.  Also the flag lifecycle end to end on the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from analytics_helpers import pair, send

from analytics.flags import (
    Flag,
    FlagStatus,
    FlagTransitionError,
    acknowledge,
    get_flag,
    list_flags,
    resolve,
)
from analytics.rules import RULES_BY_ID, Severity
from analytics.runner import evaluate_patients
from device_profiles.model import Component, Kind
from ingest.patients import enroll_patient
from ingest.registry import BindingCache
from simulators.scenarios import (
    ExpectedEvent,
    GroundTruth,
    ScenarioResult,
    run_scenario,
    scenario_names,
)

pytestmark = pytest.mark.services

CHUNK = 400  # readings per MQTT message (well under the 256 KiB payload limit)
PROFILE = {Kind.GLUCOSE: "glucose-meter", Kind.CGM: "cgm", Kind.BLOOD_PRESSURE: "bp-cuff"}


@dataclass(frozen=True, slots=True)
class Ingested:
    result: ScenarioResult
    patient_id: int

    @property
    def truth(self) -> GroundTruth:
        return self.result.truth


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def ingest_scenario(
    conn: psycopg.Connection[Any], database_url: str, name: str, days: int | None = None
) -> Ingested:
    """Run scenario ``name`` with ids unique to this call and ingest it the real way."""
    tag = f"an-{name.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    devices = {kind: f"{tag}-{kind.value}" for kind in PROFILE}
    result = run_scenario(name, days=days, devices=devices)
    gateway = f"gw-{tag}"
    patient_id = enroll_patient(
        database_url, f"pt-{tag}", [gateway], str(result.truth.patient["timezone"])
    )
    cache = BindingCache()
    profiles = {device: PROFILE[kind] for kind, device in result.devices.items()}
    pair(conn, cache, gateway, profiles, result.truth.period_start)
    readings = result.readings()
    written = send(conn, cache, gateway, readings, sent_at=readings[-1].time, chunk=CHUNK)
    assert sum(written.inserted.values()) == len(readings), written
    assert written.dead_letters == 0
    return Ingested(result, patient_id)


def flags_of(conn: psycopg.Connection[Any], patient_id: int) -> dict[str, list[Flag]]:
    out: dict[str, list[Flag]] = {}
    for flag in list_flags(conn, patients=[patient_id], limit=1000):
        out.setdefault(flag.rule_id, []).append(flag)
    return out


def flag_actions(conn: psycopg.Connection[Any], flag_id: int) -> list[str]:
    rows = conn.execute(
        "SELECT action FROM flag_events WHERE flag_id = %s ORDER BY id", (flag_id,)
    ).fetchall()
    return [str(r[0]) for r in rows]


def values(
    result: ScenarioResult, kind: Kind, component: Component
) -> list[tuple[datetime, float]]:
    return [(r.time, r.values[component]) for r in result.readings() if r.kind is kind]


# --- the truth speaks the rules' language ------------------------------------------------


@pytest.mark.parametrize("name", scenario_names())
def test_truth_rule_ids_are_real_rules(name: str) -> None:
    truth = run_scenario(name).truth
    named = {e.rule_id for e in truth.events} | set(truth.absent_rules)
    assert named <= set(RULES_BY_ID), named - set(RULES_BY_ID)


# --- injected events are flagged with the right rule ----------------------------------------


Moments = Callable[[GroundTruth, ExpectedEvent], list[datetime]]


def _right_after(truth: GroundTruth, event: ExpectedEvent) -> list[datetime]:
    return [event.end + timedelta(minutes=5)]


def _period_end(truth: GroundTruth, event: ExpectedEvent) -> list[datetime]:
    return [truth.period_end]


def _inside_gap(truth: GroundTruth, event: ExpectedEvent) -> list[datetime]:
    # The silence itself is the event: flag it before readings resume.
    return [event.end - timedelta(minutes=1)]


def _daily_through(truth: GroundTruth, event: ExpectedEvent) -> list[datetime]:
    # A window rule over an event spread across days: the runner's daily passes.
    days = int((event.end - event.start) / timedelta(days=1)) + 1
    return [event.start + timedelta(days=k) for k in range(days)] + _right_after(truth, event)


@dataclass(frozen=True, slots=True)
class Case:
    scenario: str
    days: int | None
    moments: Moments  # the evaluation instants, the flag is checked after the last
    rules: tuple[str, ...]  # the rules the scenario's events must raise


CASES = [
    Case("severe_hypo", None, _right_after, ("urgent_low_glucose",)),
    Case("hypertensive_crisis", None, _right_after, ("urgent_bp_crisis",)),
    Case("rising_fasting", None, _period_end, ("trend_fasting_glucose_rising",)),
    Case("data_gap", None, _inside_gap, ("adherence_no_data",)),
    Case("stage2_hypertension", None, _period_end, ("bp_home_average_above_target",)),
    Case("masked_hypertension", None, _period_end, ("bp_home_average_above_target",)),
    Case("declining_adherence", None, _period_end, ("adherence_declining",)),
    Case("irregular_pulse", None, _daily_through, ("bp_irregular_pulse",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.scenario for c in CASES])
def test_injected_events_are_flagged(
    case: Case, conn: psycopg.Connection[Any], database_url: str
) -> None:
    ing = ingest_scenario(conn, database_url, case.scenario, case.days)
    truth = ing.truth
    assert {e.rule_id for e in truth.events} == set(case.rules), "the case names the truth's rules"
    for event in truth.events:
        moments = case.moments(truth, event)
        for now in moments:
            evaluate_patients(conn, [ing.patient_id], now)
        flags = flags_of(conn, ing.patient_id)
        assert event.rule_id in flags, (event, sorted(flags))
        (flag,) = flags[event.rule_id]  # one unresolved flag per patient and rule
        assert flag.severity == RULES_BY_ID[event.rule_id].severity.value
        assert flag.status == FlagStatus.OPEN and flag.condition_active
        check_evidence(ing, event, flag, now)
        raised = {r for r in flags if r in truth.absent_rules}
        assert not raised, f"{case.scenario}: rules the truth lists as absent fired: {raised}"


def check_evidence(ing: Ingested, event: ExpectedEvent, flag: Flag, now: datetime) -> None:
    """The flag rests on the injected event's readings (computed here from the readings)."""
    ev = flag.evidence
    assert flag.evidence_from is not None and flag.evidence_to is not None
    if event.type == "data_gap":
        silent_since = datetime.fromisoformat(str(event.details["last_reading_before"]))
        assert flag.evidence_to == silent_since
        assert ev["days_since_last_reading"] == pytest.approx(
            (now - silent_since) / timedelta(days=1)
        )
        return
    # The evidence window overlaps the event window.
    assert flag.evidence_from <= event.end and flag.evidence_to >= event.start, (flag, event)
    result = ing.result
    if event.type == "severe_hypoglycemia":
        since = now - timedelta(hours=24)
        day = [
            v
            for kind in (Kind.GLUCOSE, Kind.CGM)
            for t, v in values(result, kind, Component.GLUCOSE)
            if since <= t <= now
        ]
        assert ev["min_mgdl"] == min(day) < 54
        assert ev["n_readings"] == sum(v < 54 for v in day)
    elif event.type == "hypertensive_crisis":
        assert (ev["max_systolic"], ev["max_diastolic"]) == (
            event.details["systolic"],
            event.details["diastolic"],
        )
    elif event.type.startswith("hypertension_"):
        sbp = [
            v
            for t, v in values(result, Kind.BLOOD_PRESSURE, Component.SYSTOLIC)
            if now - timedelta(days=14) <= t <= now
        ]
        assert ev["n_readings"] == len(sbp)
        assert ev["mean_systolic"] == pytest.approx(sum(sbp) / len(sbp))
        assert ev["mean_systolic"] >= 130 or ev["mean_diastolic"] >= 80
    elif event.type == "rising_fasting_glucose":
        # The rise covers the last three weeks of a 30-day window: the robust slope is
        # at least the rule's threshold and no steeper than the injected rise.
        assert 1.0 <= ev["slope_per_day"] <= float(event.details["slope_mg_dl_per_day"]) + 0.5
        assert ev["mk_p"] < 0.05
    elif event.type == "declining_adherence":
        assert ev["days_with_readings_recent"] < 8
        assert ev["days_with_readings_recent"] <= 0.7 * ev["days_with_readings_prior"]
    elif event.type == "irregular_pulse":
        assert 3 <= ev["n_irregular"] <= int(event.details["flagged_readings"])
        assert flag.evidence_to == event.end
    else:
        raise AssertionError(f"no evidence check for event type {event.type!r}")


# --- stable, well-controlled patients raise none of the absent rules over 30 days ---------


@pytest.mark.parametrize("name", ["stable_t1", "nondiabetic_normal", "white_coat"])
def test_stable_patient_raises_no_absent_rule_over_30_days(
    name: str, conn: psycopg.Connection[Any], database_url: str
) -> None:
    ing = ingest_scenario(conn, database_url, name, days=30)
    truth = ing.truth
    assert not truth.events and set(truth.absent_rules) >= {
        "urgent_low_glucose",
        "urgent_bp_crisis",
        "adherence_no_data",
    }
    # Every day of the month (urgent rules look back 24 h, so each day is covered once);
    # a flag, once raised, stays in the table, so one look at the end sees them all.
    day = timedelta(days=1)
    moments = [truth.period_start + k * day for k in range(1, 30)] + [truth.period_end]
    for now in moments:
        evaluate_patients(conn, [ing.patient_id], now)
    raised = sorted(set(flags_of(conn, ing.patient_id)) & set(truth.absent_rules))
    assert not raised, f"{name}: {raised}"


# --- the flag lifecycle on the database ---------------------------------------------------


def test_flag_lifecycle_on_the_database(conn: psycopg.Connection[Any], database_url: str) -> None:
    ing = ingest_scenario(conn, database_url, "hypertensive_crisis")
    crisis = ing.truth.event("urgent_bp_crisis")
    rule = "urgent_bp_crisis"

    def open_flags() -> Sequence[Flag]:
        return list_flags(
            conn, patients=[ing.patient_id], rules=[rule], statuses=["open", "acknowledged"]
        )

    first = evaluate_patients(conn, [ing.patient_id], crisis.end + timedelta(minutes=5))
    assert first.raised >= 1
    (flag,) = open_flags()
    assert flag.severity == Severity.URGENT.value
    # Firing again updates the one open flag: no duplicate.
    again = evaluate_patients(conn, [ing.patient_id], crisis.end + timedelta(minutes=30))
    assert again.raised == 0 and again.updated >= 1
    (same,) = open_flags()
    assert same.id == flag.id and same.condition_active
    assert (same.evidence_from, same.evidence_to) == (flag.evidence_from, flag.evidence_to)
    assert flag_actions(conn, flag.id) == ["raised", "updated"]

    acked = acknowledge(conn, flag.id, "dr.lovelace", "called the patient, recheck tonight")
    assert acked.status == FlagStatus.ACKNOWLEDGED
    assert acked.acknowledged_by == "dr.lovelace"
    assert acked.acknowledge_note == "called the patient, recheck tonight"
    assert acked.acknowledged_at is not None
    with pytest.raises(FlagTransitionError):
        acknowledge(conn, flag.id, "dr.other")

    # A day later the crisis readings are out of the urgent lookback: the condition has
    # cleared and the flag says so, but it stays for review with its status.
    cleared = evaluate_patients(conn, [ing.patient_id], crisis.end + timedelta(hours=25))
    assert cleared.cleared >= 1
    after = get_flag(conn, flag.id)
    assert not after.condition_active and after.cleared_at is not None
    assert after.status == FlagStatus.ACKNOWLEDGED
    assert (after.evidence_from, after.evidence_to) == (flag.evidence_from, flag.evidence_to)

    with pytest.raises(FlagTransitionError, match="note"):
        resolve(conn, flag.id, "dr.lovelace", "  ")
    done = resolve(conn, flag.id, "dr.lovelace", "medication adjusted; home readings normal")
    assert done.status == FlagStatus.RESOLVED
    assert (done.resolved_by, done.resolve_note) == (
        "dr.lovelace",
        "medication adjusted; home readings normal",
    )
    with pytest.raises(FlagTransitionError, match="already resolved"):
        resolve(conn, flag.id, "dr.lovelace", "twice")
    assert flag_actions(conn, flag.id) == [
        "raised",
        "updated",
        "acknowledged",
        "cleared",
        "resolved",
    ]

    # The same condition after resolution opens a new flag; the resolved one stays.
    evaluate_patients(conn, [ing.patient_id], crisis.end + timedelta(minutes=5))
    (fresh,) = open_flags()
    assert fresh.id != flag.id and fresh.status == FlagStatus.OPEN
    every = list_flags(conn, patients=[ing.patient_id], rules=[rule])
    assert sorted(f.id for f in every) == sorted([flag.id, fresh.id])
