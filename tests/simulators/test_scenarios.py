"""Scenarios: the ground truth names the injected events and they are visible in the data."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from device_profiles.model import Component, Kind
from readings import Reading
from simulators.cli_support import simulate_patient, truth_path_for
from simulators.scenarios import (
    ALL_RULES,
    RULE_ADHERENCE_NO_DATA,
    RULE_TREND_BP_HOME_AVERAGE,
    RULE_TREND_FASTING_GLUCOSE,
    RULE_URGENT_BP_CRISIS,
    RULE_URGENT_LOW_GLUCOSE,
    load_ground_truth,
    run_scenario,
    scenario_names,
)


def in_window(readings: list[Reading], kind: Kind, start: datetime, end: datetime) -> list[Reading]:
    return [r for r in readings if r.kind is kind and start <= r.time <= end]


@pytest.mark.parametrize("name", scenario_names())
def test_every_scenario_meets_its_stated_bands(name: str) -> None:
    result = run_scenario(name, seed=3)
    truth = result.truth
    assert truth.stats, "a scenario states at least one band"
    for band in truth.stats:
        assert band.contains(band.observed), band
    fired = {e.rule_id for e in truth.events}
    assert not fired & set(truth.absent_rules)
    assert set(truth.absent_rules) <= set(ALL_RULES)
    readings = result.readings()
    assert {r.kind for r in readings} == set(truth.devices)
    assert sum(truth.counts.values()) == len(readings)


def test_severe_hypo_reading_is_below_54_at_the_stated_time() -> None:
    result = run_scenario("severe_hypo", days=10, seed=1)
    event = next(e for e in result.truth.events if e.kind is Kind.GLUCOSE)
    assert event.rule_id == RULE_URGENT_LOW_GLUCOSE
    assert event.end - event.start == timedelta(minutes=30)
    meter = in_window(result.readings(), Kind.GLUCOSE, event.start, event.end)
    assert min(r.values[Component.GLUCOSE] for r in meter) < 54
    # ...and it is the only fingerstick under the urgent threshold.
    lows = [
        r for r in result.readings() if r.kind is Kind.GLUCOSE and r.values[Component.GLUCOSE] < 54
    ]
    assert all(event.start <= r.time <= event.end for r in lows)
    cgm_event = next(e for e in result.truth.events if e.kind is Kind.CGM)
    cgm = in_window(result.readings(), Kind.CGM, cgm_event.start, cgm_event.end)
    assert min(r.values[Component.GLUCOSE] for r in cgm) < 54


def test_stable_t1_has_no_urgent_readings() -> None:
    result = run_scenario("stable_t1", seed=5)
    assert result.truth.events == ()
    assert RULE_URGENT_LOW_GLUCOSE in result.truth.absent_rules
    tir = result.truth.stat("tir_70_180_pct")
    g = result.data.cgm.glucose
    assert tir.observed == pytest.approx(((g >= 70) & (g <= 180)).mean() * 100)
    assert 70 <= tir.observed <= 85
    for r in result.readings():
        if Component.GLUCOSE in r.values:
            assert r.values[Component.GLUCOSE] >= 54


def test_rising_fasting_is_visible_in_fasting_readings() -> None:
    result = run_scenario("rising_fasting", seed=2)
    event = result.truth.event(RULE_TREND_FASTING_GLUCOSE)
    assert event.details["slope_mg_dl_per_day"] == 3.0
    assert event.end - event.start == timedelta(days=21)
    fasting = [
        r
        for r in result.readings()
        if r.kind is Kind.GLUCOSE and r.details.get("meal") == "fasting"
    ]
    before = [r.values[Component.GLUCOSE] for r in fasting if r.time < event.start]
    last_week = [
        r.values[Component.GLUCOSE] for r in fasting if r.time > event.end - timedelta(days=7)
    ]
    assert np.mean(last_week) - np.mean(before) > 25  # +3/day for three weeks, day-to-day noise
    window = [r for r in fasting if r.time >= event.start]
    days = [(r.time - event.start).total_seconds() / 86_400 for r in window]
    slope = np.polyfit(days, [r.values[Component.GLUCOSE] for r in window], 1)[0]
    assert 2.0 <= slope <= 4.0


def test_hypertensive_crisis_reading() -> None:
    result = run_scenario("hypertensive_crisis", seed=0)
    event = result.truth.event(RULE_URGENT_BP_CRISIS)
    crisis = [
        r
        for r in result.readings()
        if r.values.get(Component.SYSTOLIC, 0) > 180 or r.values.get(Component.DIASTOLIC, 0) > 120
    ]
    assert len(crisis) == 2
    assert all(event.start <= r.time <= event.end for r in crisis)
    assert crisis[0].values[Component.SYSTOLIC] == 194.0
    assert crisis[0].values[Component.DIASTOLIC] == 124.0


def test_data_gap_has_ten_silent_days() -> None:
    result = run_scenario("data_gap", seed=0)
    event = result.truth.event(RULE_ADHERENCE_NO_DATA)
    assert event.kind is None and event.details["gap_days"] == 10
    assert not [r for r in result.readings() if event.start <= r.time < event.end]
    assert [r for r in result.readings() if r.time < event.start]
    assert [r for r in result.readings() if r.time >= event.end]


def test_stage2_and_white_coat() -> None:
    stage2 = run_scenario("stage2_hypertension", seed=0)
    assert stage2.truth.event(RULE_TREND_BP_HOME_AVERAGE).details["stage"] == "stage2"
    bp = [r for r in stage2.readings() if r.kind is Kind.BLOOD_PRESSURE]
    assert np.mean([r.values[Component.SYSTOLIC] for r in bp]) >= 140
    assert np.mean([r.values[Component.DIASTOLIC] for r in bp]) >= 90
    white = run_scenario("white_coat", seed=0)
    office_sys, _ = white.truth.patient["office_bp_expected"]
    assert office_sys >= 130  # hypertensive in the office...
    assert white.truth.stat("home_sbp_mean").observed < 125  # ...normal at home
    assert RULE_TREND_BP_HOME_AVERAGE in white.truth.absent_rules


def test_ground_truth_json_round_trip_and_utc(tmp_path: Path) -> None:
    result = run_scenario("severe_hypo", seed=4)
    path = result.save_ground_truth(tmp_path / "truth.json")
    raw = json.loads(path.read_text())
    assert raw["events"][0]["start"].endswith("Z")
    assert raw["period"]["start"].endswith("Z")
    assert load_ground_truth(path) == result.truth


def test_scenarios_are_deterministic() -> None:
    a = run_scenario("severe_hypo", seed=9)
    b = run_scenario("severe_hypo", seed=9)
    assert a.readings() == b.readings()
    assert a.truth.to_dict() == b.truth.to_dict()
    c = run_scenario("severe_hypo", seed=10)
    assert [r.id for r in a.readings()] != [r.id for r in c.readings()]


def test_scenario_errors() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        run_scenario("nope")
    with pytest.raises(ValueError, match="at least"):
        run_scenario("rising_fasting", days=10)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_simulate_patient_writes_readings_and_truth(
    tmp_path: Path, fmt: Literal["csv", "json"]
) -> None:
    out = simulate_patient("hypertensive_crisis", 7, 1, fmt, tmp_path / f"p.{fmt}")
    assert out.stat().st_size > 0
    truth = truth_path_for(out)
    assert truth.name == "p.truth.json"
    assert load_ground_truth(truth).scenario == "hypertensive_crisis"
    if fmt == "json":
        assert (
            len(json.loads(out.read_text())) == load_ground_truth(truth).counts[Kind.BLOOD_PRESSURE]
        )
    else:
        assert out.read_text().splitlines()[0].startswith("id,device,kind,time")
