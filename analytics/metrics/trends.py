"""Trends: daily series, Theil-Sen slope, Mann-Kendall test, week-over-week TIR.

* Theil-Sen slope: ``scipy.stats.theilslopes`` (median of pairwise slopes), per day.
* Mann-Kendall: the classic test (Mann 1945, Kendall 1975) implemented here: S = sum of
  sign(x_j - x_i) over i < j, Var(S) with the tie correction
  [n(n-1)(2n+5) - sum t(t-1)(2t+5)] / 18, Z with continuity correction, two-sided normal
  p-value.  (Equivalent in S to Kendall's tau-b against time; the normal approximation is
  used at every n, as in the usual hydrology implementations.)

Daily series:

* fasting glucose - per local day, the first reading tagged ``meal == 'fasting'`` if the
  frame has a ``meal`` column and that day has one; otherwise the first reading of the
  local day from 04:00 to before 10:00 (a CGM's readings after midnight follow the
  evening meal: the day's first reading is not a fasting value);
* morning systolic - per local day, the mean systolic of readings 04:00-11:59 local.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analytics.metrics._frame import (
    FloatArray,
    Period,
    TimeZones,
    group_count,
    group_readings,
    local_day_and_minute,
    require_columns,
    safe_div,
)
from analytics.metrics.blood_pressure import MORNING_MINUTES
from analytics.metrics.glucose import HIGH, LOW

FASTING_MINUTES = (4 * 60, 10 * 60)  # [04:00, 10:00) local, untagged readings
DAILY_COLUMNS = ("patient_id", "day", "value", "time")
TREND_COLUMNS = (
    "n_days",
    "slope_per_day",
    "slope_low",
    "slope_high",
    "intercept",
    "mk_s",
    "mk_z",
    "mk_p",
    "first_day",
    "last_day",
)


@dataclass(frozen=True, slots=True)
class MannKendall:
    s: float
    var_s: float
    z: float
    p: float


def mann_kendall(values: FloatArray) -> MannKendall:
    """Mann-Kendall trend test of a series in time order (NaNs dropped)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = len(x)
    if n < 3:
        return MannKendall(0.0, 0.0, 0.0, 1.0)
    diff = np.sign(x[None, :] - x[:, None])
    s = float(np.triu(diff, k=1).sum())
    _, ties = np.unique(x, return_counts=True)
    var_s = (n * (n - 1) * (2 * n + 5) - float(np.sum(ties * (ties - 1) * (2 * ties + 5)))) / 18.0
    if var_s <= 0:
        return MannKendall(s, var_s, 0.0, 1.0)
    if s > 0:
        z = (s - 1.0) / math.sqrt(var_s)
    elif s < 0:
        z = (s + 1.0) / math.sqrt(var_s)
    else:
        z = 0.0
    p = float(2.0 * stats.norm.sf(abs(z)))
    return MannKendall(s, var_s, z, p)


def daily_fasting_glucose(
    readings: pd.DataFrame, period: Period, *, tz: TimeZones = "UTC"
) -> pd.DataFrame:
    """One fasting value per patient and local day (columns :data:`DAILY_COLUMNS`).

    ``day`` is the local date (``datetime.date``), ``time`` the chosen reading's instant.
    """
    require_columns(readings, ("patient_id", "time", "mgdl"), "glucose")
    g = group_readings(readings, period)
    mgdl = g.frame["mgdl"].to_numpy(dtype=np.float64, na_value=np.nan)
    day, minute = local_day_and_minute(g.time_ns, g.codes, g.patients, tz)
    ok = ~np.isnan(mgdl)
    tagged = np.zeros(len(mgdl), dtype=bool)
    if "meal" in g.frame.columns:
        tagged = (
            (g.frame["meal"].astype("string").str.lower() == "fasting")
            .fillna(False)
            .to_numpy(dtype=bool)
        )
    early = ok & (minute >= FASTING_MINUTES[0]) & (minute < FASTING_MINUTES[1])
    # Rank candidates: a tagged reading beats an untagged early one; then earliest first.
    cand = ok & (tagged | early)
    frame = pd.DataFrame(
        {
            "code": g.codes[cand],
            "day": day[cand],
            "rank": np.where(tagged[cand], 0, 1),
            "t": g.time_ns[cand],
            "value": mgdl[cand],
        }
    )
    frame = frame.sort_values(["code", "day", "rank", "t"], kind="stable")
    frame = frame.drop_duplicates(["code", "day"], keep="first")
    return _daily_frame(g.patients, frame)


def daily_morning_systolic(
    readings: pd.DataFrame, period: Period, *, tz: TimeZones = "UTC"
) -> pd.DataFrame:
    """Mean morning (04:00-11:59 local) systolic per patient and local day."""
    require_columns(readings, ("patient_id", "time", "systolic"), "blood pressure")
    g = group_readings(readings, period)
    sys_ = g.frame["systolic"].to_numpy(dtype=np.float64, na_value=np.nan)
    day, minute = local_day_and_minute(g.time_ns, g.codes, g.patients, tz)
    m = ~np.isnan(sys_) & (minute >= MORNING_MINUTES[0]) & (minute < MORNING_MINUTES[1])
    frame = pd.DataFrame({"code": g.codes[m], "day": day[m], "t": g.time_ns[m], "value": sys_[m]})
    frame = frame.groupby(["code", "day"], sort=True, as_index=False).agg(
        value=("value", "mean"), t=("t", "first")
    )
    return _daily_frame(g.patients, frame)


def _daily_frame(patients: pd.Index, frame: pd.DataFrame) -> pd.DataFrame:
    codes = frame["code"].to_numpy(dtype=np.int64)
    days = frame["day"].to_numpy(dtype=np.int64)
    return pd.DataFrame(
        {
            "patient_id": np.asarray(patients, dtype=object)[codes],
            "day": pd.to_datetime(days, unit="D").date,
            "value": frame["value"].to_numpy(dtype=np.float64),
            "time": pd.DatetimeIndex(frame["t"].to_numpy(dtype=np.int64), tz="UTC"),
        }
    )


def trend_per_patient(
    daily: pd.DataFrame, *, min_days: int = 7, patients: Iterable[str] | None = None
) -> pd.DataFrame:
    """Theil-Sen slope (units per day) and Mann-Kendall test of each patient's daily series.

    ``daily`` has :data:`DAILY_COLUMNS`.  Patients with fewer than ``min_days`` values get
    NaN slope and p = NaN.  A loop per patient is unavoidable (pairwise slopes); series are
    a few dozen points.
    """
    ids = (
        list(patients)
        if patients is not None
        else sorted(pd.unique(daily["patient_id"].to_numpy()).tolist())
    )
    rows: dict[str, list[object]] = {c: [] for c in TREND_COLUMNS}
    grouped = {str(k): v for k, v in daily.sort_values(["patient_id", "day"]).groupby("patient_id")}
    for pid in ids:
        part = grouped.get(str(pid))
        n_days = 0 if part is None else len(part)
        if part is None or n_days < min_days:
            vals: list[object] = [n_days, *([math.nan] * 7)]
            vals += [None if part is None else part["day"].iloc[0]]
            vals += [None if part is None else part["day"].iloc[-1]]
        else:
            x = np.array([(d - part["day"].iloc[0]).days for d in part["day"]], dtype=np.float64)
            y = part["value"].to_numpy(dtype=np.float64)
            res = stats.theilslopes(y, x)
            mk = mann_kendall(y)
            vals = [
                n_days,
                float(res.slope),
                float(res.low_slope),
                float(res.high_slope),
                float(res.intercept),
                mk.s,
                mk.z,
                mk.p,
                part["day"].iloc[0],
                part["day"].iloc[-1],
            ]
        for c, v in zip(TREND_COLUMNS, vals, strict=True):
            rows[c].append(v)
    return pd.DataFrame(rows, index=pd.Index(ids, name="patient_id"))


def tir_week_over_week(
    readings: pd.DataFrame, now: pd.Timestamp, *, patients: Iterable[str] | None = None
) -> pd.DataFrame:
    """TIR (70-180, % of readings) in the 7 days before ``now`` and in the 7 days before
    that; ``change`` = this week - last week (percentage points).  HI/LO flags count as
    out of range."""
    require_columns(readings, ("patient_id", "time", "mgdl"), "glucose")
    g = group_readings(readings, Period.ending(now, 14), patients)
    n = g.n_patients
    mgdl = g.frame["mgdl"].to_numpy(dtype=np.float64, na_value=np.nan)
    flagged = np.zeros(len(mgdl), dtype=bool)
    for col in ("result_above_range", "result_below_range"):
        if col in g.frame.columns:
            flagged |= g.frame[col].to_numpy(dtype=bool, na_value=False)
    usable = ~np.isnan(mgdl) | flagged
    in_range = usable & ~flagged & (mgdl >= LOW) & (mgdl <= HIGH)
    this_week = g.time_ns >= (now - pd.Timedelta(days=7)).value
    out = {}
    for name, sel in (("tir_this_week", this_week), ("tir_last_week", ~this_week)):
        out[name] = 100.0 * safe_div(
            group_count(g.codes[sel & in_range], n), group_count(g.codes[sel & usable], n)
        )
    out["change"] = out["tir_this_week"] - out["tir_last_week"]
    return pd.DataFrame(out, index=pd.Index(g.patients, name="patient_id"))
