"""Blood-pressure metrics on hand-checkable data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analytics.metrics import Period, blood_pressure_metrics
from analytics.metrics.blood_pressure import stage_of

DAY = pd.Timestamp("2025-03-03", tz="UTC")
PERIOD = Period(DAY - pd.Timedelta(days=1), DAY + pd.Timedelta(days=2))


def bp(rows: list[tuple[str, float, float]], pid: str = "a", **extra: list[object]) -> pd.DataFrame:
    """rows: (local time of day 'HH:MM' on DAY, systolic, diastolic)."""
    return pd.DataFrame(
        {
            "patient_id": pid,
            "time": [DAY + pd.Timedelta(t + ":00") for t, _, _ in rows],
            "systolic": [s for _, s, _ in rows],
            "diastolic": [d for _, _, d in rows],
            **extra,
        }
    )


FOUR = [("07:00", 120, 80), ("08:00", 140, 90), ("14:00", 110, 70), ("20:00", 130, 70)]


def test_averages_windows_and_stage() -> None:
    m = blood_pressure_metrics(bp(FOUR), PERIOD).loc["a"]
    # morning 07:00, 08:00 -> (120+140)/2 = 130, (80+90)/2 = 85; evening 20:00 -> 130/70
    assert (m["morning_n"], m["morning_systolic"], m["morning_diastolic"]) == (2, 130.0, 85.0)
    assert (m["evening_n"], m["evening_systolic"], m["evening_diastolic"]) == (1, 130.0, 70.0)
    # overall: systolic (120+140+110+130)/4 = 125, diastolic (80+90+70+70)/4 = 77.5 -> elevated
    assert (m["mean_systolic"], m["mean_diastolic"]) == (125.0, 77.5)
    assert m["stage"] == "elevated"
    # vs 130/80: 120/80 (dia at 80), 140/90, 130/70 (sys at 130) not below target -> 75 %
    assert m["pct_above_target"] == 75.0


def test_variability() -> None:
    m = blood_pressure_metrics(bp(FOUR), PERIOD).loc["a"]
    # systolic in time order 120, 140, 110, 130: deviations from 125: -5, 15, -15, 5
    # SD = sqrt((25 + 225 + 225 + 25) / 3) = sqrt(166.67) = 12.91; CV = 12.91 / 125
    assert m["sd_systolic"] == pytest.approx(math.sqrt(500 / 3))
    assert m["cv_systolic"] == pytest.approx(100 * math.sqrt(500 / 3) / 125)
    # ARV = (|140-120| + |110-140| + |130-110|) / 3 = (20 + 30 + 20) / 3
    assert m["arv_systolic"] == pytest.approx(70 / 3)
    # diastolic 80, 90, 70, 70 -> ARV (10 + 20 + 0) / 3 = 10
    assert m["arv_diastolic"] == pytest.approx(10.0)


def test_morning_window_uses_patient_time_zone() -> None:
    # 13:00Z is 08:00 in New York (UTC-5): morning there, afternoon in UTC.
    frame = bp([("13:00", 150, 95)])
    assert blood_pressure_metrics(frame, PERIOD).loc["a", "morning_n"] == 0
    ny = blood_pressure_metrics(frame, PERIOD, tz="America/New_York").loc["a"]
    assert ny["morning_n"] == 1 and ny["morning_systolic"] == 150.0


def test_crisis_overrides_stage() -> None:
    m = blood_pressure_metrics(bp([*FOUR, ("21:00", 185, 100)]), PERIOD).loc["a"]
    assert m["stage"] == "crisis" and m["n_crisis"] == 1 and m["max_systolic"] == 185.0
    # exactly 180/120 is not a crisis (> 180 / > 120)
    m = blood_pressure_metrics(bp([("09:00", 180, 120)]), PERIOD).loc["a"]
    assert m["n_crisis"] == 0 and m["stage"] == "stage_2"


@pytest.mark.parametrize(
    ("systolic", "diastolic", "stage"),
    [
        (119, 79, "normal"),
        (120, 79, "elevated"),
        (129.9, 79.9, "elevated"),
        (130, 70, "stage_1"),
        (110, 80, "stage_1"),
        (139.9, 89.9, "stage_1"),
        (140, 70, "stage_2"),
        (110, 90, "stage_2"),
    ],
)
def test_acc_aha_stage_boundaries(systolic: float, diastolic: float, stage: str) -> None:
    assert stage_of(np.array([float(systolic)]), np.array([float(diastolic)]))[0] == stage


def test_pulse_and_status_counts() -> None:
    frame = bp(
        FOUR,
        pulse=[60.0, np.nan, 80.0, 70.0],
        irregular_pulse=[True, False, True, False],
        body_movement=[False, False, False, True],
    )
    m = blood_pressure_metrics(frame, PERIOD).loc["a"]
    assert m["mean_pulse"] == 70.0  # (60 + 80 + 70) / 3, missing pulse skipped
    assert (m["n_irregular_pulse"], m["n_body_movement"]) == (2, 1)


def test_per_patient_target() -> None:
    frame = pd.concat([bp(FOUR, pid="a"), bp(FOUR, pid="b")], ignore_index=True)
    m = blood_pressure_metrics(frame, PERIOD, target={"b": (140.0, 90.0)})
    assert m.loc["a", "pct_above_target"] == 75.0
    assert m.loc["b", "pct_above_target"] == 25.0  # only 140/90 reaches 140/90


def test_multi_patient_equals_single() -> None:
    rng = np.random.default_rng(7)
    frames = []
    for p in "abc":
        times = DAY + pd.to_timedelta(np.sort(rng.uniform(0, 1440, 20)), unit="min")
        frames.append(
            pd.DataFrame(
                {
                    "patient_id": p,
                    "time": times,
                    "systolic": rng.normal(135, 15, 20),
                    "diastolic": rng.normal(85, 10, 20),
                }
            )
        )
    frame = pd.concat(frames).sample(frac=1.0, random_state=1)
    together = blood_pressure_metrics(frame, PERIOD, tz="Europe/Paris")
    for p, part in frame.groupby("patient_id"):
        alone = blood_pressure_metrics(part, PERIOD, tz="Europe/Paris").loc[p]
        pd.testing.assert_series_equal(together.loc[p], alone, check_exact=False, rtol=1e-12)
