"""Trend statistics on hand-checkable series."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics.metrics import (
    Period,
    daily_fasting_glucose,
    daily_morning_systolic,
    mann_kendall,
    tir_week_over_week,
    trend_per_patient,
)

DAY = pd.Timestamp("2025-03-03", tz="UTC")


def test_mann_kendall_increasing_four() -> None:
    # [1,2,3,4]: all 6 pairs increase -> S = 6; Var = n(n-1)(2n+5)/18 = 4*3*13/18 = 8.667;
    # Z = (S - 1)/sqrt(Var) = 1.6984; two-sided p = erfc(Z / sqrt 2) = 0.0894
    mk = mann_kendall(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mk.s == 6.0
    assert mk.var_s == pytest.approx(4 * 3 * 13 / 18)
    z = 5 / math.sqrt(4 * 3 * 13 / 18)
    assert mk.z == pytest.approx(z)
    assert mk.p == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert mk.p == pytest.approx(0.0894, abs=1e-4)


def test_mann_kendall_tie_correction() -> None:
    # [1,1,2]: signs (1,1)=0, (1,2)=+1, (1,2)=+1 -> S = 2; one tie group of 2:
    # Var = (3*2*11 - 2*1*9) / 18 = 48 / 18
    mk = mann_kendall(np.array([1.0, 1.0, 2.0]))
    assert mk.s == 2.0
    assert mk.var_s == pytest.approx(48 / 18)


@given(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=25))
def test_mann_kendall_antisymmetric(values: list[float]) -> None:
    a = mann_kendall(np.array(values))
    b = mann_kendall(-np.array(values))
    assert a.s == -b.s and a.p == pytest.approx(b.p)
    assert 0.0 <= a.p <= 1.0


def daily(values: list[float], pid: str = "a") -> pd.DataFrame:
    days = [dt.date(2025, 3, 1) + dt.timedelta(days=i) for i in range(len(values))]
    return pd.DataFrame(
        {"patient_id": pid, "day": days, "value": values, "time": [DAY] * len(values)}
    )


def test_theil_sen_slope_per_day() -> None:
    # 100, 102, ..., 112 over 7 days, one outlier on day 3: median of pairwise slopes = 2
    vals = [100.0, 102.0, 104.0, 160.0, 108.0, 110.0, 112.0]
    tr = trend_per_patient(daily(vals), min_days=7).loc["a"]
    assert tr["slope_per_day"] == pytest.approx(2.0)
    assert tr["n_days"] == 7 and tr["mk_p"] < 0.05


def test_trend_needs_min_days() -> None:
    tr = trend_per_patient(daily([100.0, 110.0]), min_days=7, patients=["a", "b"])
    assert math.isnan(tr.loc["a", "slope_per_day"]) and tr.loc["b", "n_days"] == 0


def test_fasting_glucose_choice() -> None:
    frame = pd.DataFrame(
        {
            "patient_id": "a",
            "time": [
                DAY + pd.Timedelta(hours=6),  # day 1: first before 10:00 -> 120
                DAY + pd.Timedelta(hours=9),
                DAY + pd.Timedelta(days=1, hours=11),  # day 2: none before 10:00, untagged
                DAY + pd.Timedelta(days=2, hours=7),  # day 3: tagged fasting wins -> 150
                DAY + pd.Timedelta(days=2, hours=10, minutes=30),
            ],
            "mgdl": [120.0, 130.0, 140.0, 145.0, 150.0],
            "meal": [None, None, None, "casual", "fasting"],
        }
    )
    d = daily_fasting_glucose(frame, Period(DAY, DAY + pd.Timedelta(days=3)))
    assert d["value"].tolist() == [120.0, 150.0]
    assert d["day"].tolist() == [dt.date(2025, 3, 3), dt.date(2025, 3, 5)]


def test_morning_systolic_daily_mean() -> None:
    frame = pd.DataFrame(
        {
            "patient_id": "a",
            "time": [DAY + pd.Timedelta(hours=h) for h in (7, 8, 20)],
            "systolic": [130.0, 140.0, 170.0],
            "diastolic": [80.0, 80.0, 80.0],
        }
    )
    d = daily_morning_systolic(frame, Period(DAY, DAY + pd.Timedelta(days=1)))
    assert d["value"].tolist() == [135.0]  # evening 170 excluded


def test_tir_week_over_week() -> None:
    now = DAY + pd.Timedelta(days=14)
    frame = pd.DataFrame(
        {
            "patient_id": "a",
            "time": [now - pd.Timedelta(days=d) for d in (1, 2, 8, 9)],
            "mgdl": [100.0, 200.0, 100.0, 150.0],
        }
    )
    w = tir_week_over_week(frame, now).loc["a"]
    # this week: 100 in, 200 out -> 50 %; last week: both in -> 100 %; change -50 points
    assert (w["tir_this_week"], w["tir_last_week"], w["change"]) == (50.0, 100.0, -50.0)
