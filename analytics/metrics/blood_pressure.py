"""Home blood-pressure metrics, vectorized across patients.

Staging per the 2017 ACC/AHA guideline (Whelton et al., Hypertension 2018;71:e13),
applied to the home average (home 130/80 corresponds to office stage 1).  Formulas and
windows in docs/metrics.md.

Column contract of the input frame (one row per reading):

* ``patient_id`` str, ``time`` tz-aware, ``systolic`` / ``diastolic`` float mmHg,
* ``pulse`` float beats/min (nullable), ``irregular_pulse`` / ``body_movement`` bool
  (the cuff's measurement-status bits; missing columns mean False).

Morning = local 04:00-11:59, evening = local 18:00-23:59 (the patient's time zone).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from analytics.metrics._frame import (
    BoolArray,
    FloatArray,
    Period,
    TimeZones,
    distinct_days_per_group,
    first_last_time,
    group_count,
    group_mean_sd,
    group_readings,
    group_sum,
    local_day_and_minute,
    require_columns,
    safe_div,
)

REQUIRED_COLUMNS = ("patient_id", "time", "systolic", "diastolic")

MORNING_MINUTES = (4 * 60, 12 * 60)  # [04:00, 12:00) local
EVENING_MINUTES = (18 * 60, 24 * 60)  # [18:00, 24:00) local

CRISIS_SYSTOLIC = 180.0  # strictly above
CRISIS_DIASTOLIC = 120.0  # strictly above
DEFAULT_TARGET = (130.0, 80.0)


class BpStage(enum.StrEnum):
    NORMAL = "normal"  # < 120 and < 80
    ELEVATED = "elevated"  # 120-129 and < 80
    STAGE_1 = "stage_1"  # 130-139 or 80-89
    STAGE_2 = "stage_2"  # >= 140 or >= 90
    CRISIS = "crisis"  # any single reading > 180 or > 120


BP_COLUMNS: tuple[str, ...] = (
    "n_readings",
    "days_with_readings",
    "first_time",
    "last_time",
    "mean_systolic",
    "mean_diastolic",
    "morning_n",
    "morning_systolic",
    "morning_diastolic",
    "evening_n",
    "evening_systolic",
    "evening_diastolic",
    "stage",
    "n_crisis",
    "max_systolic",
    "max_diastolic",
    "target_systolic",
    "target_diastolic",
    "pct_above_target",
    "mean_pulse",
    "n_irregular_pulse",
    "n_body_movement",
    "sd_systolic",
    "cv_systolic",
    "arv_systolic",
    "sd_diastolic",
    "arv_diastolic",
)


def stage_of(systolic: FloatArray, diastolic: FloatArray) -> Any:
    """ACC/AHA 2017 stage of (average) values; None where either value is NaN."""
    out = np.full(len(systolic), None, dtype=object)
    known = ~np.isnan(systolic) & ~np.isnan(diastolic)
    out[known] = BpStage.NORMAL.value
    out[known & (systolic >= 120.0)] = BpStage.ELEVATED.value
    out[known & ((systolic >= 130.0) | (diastolic >= 80.0))] = BpStage.STAGE_1.value
    out[known & ((systolic >= 140.0) | (diastolic >= 90.0))] = BpStage.STAGE_2.value
    return out


def blood_pressure_metrics(
    readings: pd.DataFrame,
    period: Period,
    *,
    tz: TimeZones = "UTC",
    target: tuple[float, float] | Mapping[str, tuple[float, float]] = DEFAULT_TARGET,
    patients: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Home BP metrics per patient over ``period`` (index ``patient_id``, :data:`BP_COLUMNS`).

    ``target`` is (systolic, diastolic) for everyone or per patient (default 130/80); a
    reading is "above target" when systolic >= target or diastolic >= target (the goal is
    below both).  ``stage`` is ``crisis`` when any reading is > 180 / > 120, otherwise the
    ACC/AHA stage of the overall home average.
    """
    require_columns(readings, REQUIRED_COLUMNS, "blood pressure")
    g = group_readings(readings, period, patients)
    n = g.n_patients
    codes = g.codes
    f = g.frame
    sys_ = f["systolic"].to_numpy(dtype=np.float64, na_value=np.nan)
    dia = f["diastolic"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = ~np.isnan(sys_) & ~np.isnan(dia)
    out: dict[str, Any] = {}
    out["n_readings"] = group_count(codes[ok], n).astype(np.int64)
    day, minute = local_day_and_minute(g.time_ns, codes, g.patients, tz)
    out["days_with_readings"] = distinct_days_per_group(codes[ok], day[ok], n).astype(np.int64)
    first, last = first_last_time(g)
    out["first_time"], out["last_time"] = first.to_numpy(), last.to_numpy()

    s_ok = np.where(ok, sys_, np.nan)
    d_ok = np.where(ok, dia, np.nan)
    _, mean_s, sd_s = group_mean_sd(codes, s_ok, n)
    _, mean_d, sd_d = group_mean_sd(codes, d_ok, n)
    out["mean_systolic"], out["mean_diastolic"] = mean_s, mean_d
    for name, (lo, hi) in (("morning", MORNING_MINUTES), ("evening", EVENING_MINUTES)):
        window = ok & (minute >= lo) & (minute < hi)
        cnt, ms, _ = group_mean_sd(codes, np.where(window, sys_, np.nan), n)
        _, md, _ = group_mean_sd(codes, np.where(window, dia, np.nan), n)
        out[f"{name}_n"] = cnt.astype(np.int64)
        out[f"{name}_systolic"], out[f"{name}_diastolic"] = ms, md

    crisis = ok & ((sys_ > CRISIS_SYSTOLIC) | (dia > CRISIS_DIASTOLIC))
    n_crisis = group_count(codes[crisis], n)
    stage = stage_of(mean_s, mean_d)
    stage[n_crisis > 0] = BpStage.CRISIS.value
    out["stage"] = stage
    out["n_crisis"] = n_crisis.astype(np.int64)
    out["max_systolic"] = _group_max(codes[ok], sys_[ok], n)
    out["max_diastolic"] = _group_max(codes[ok], dia[ok], n)

    if isinstance(target, tuple):
        t_sys = np.full(n, float(target[0]))
        t_dia = np.full(n, float(target[1]))
    else:
        pairs = [target.get(str(p), DEFAULT_TARGET) for p in g.patients]
        t_sys = np.array([p[0] for p in pairs], dtype=np.float64)
        t_dia = np.array([p[1] for p in pairs], dtype=np.float64)
    out["target_systolic"], out["target_diastolic"] = t_sys, t_dia
    above = ok & ((sys_ >= t_sys[codes]) | (dia >= t_dia[codes]))
    out["pct_above_target"] = 100.0 * safe_div(
        group_count(codes[above], n), group_count(codes[ok], n)
    )

    pulse = (
        f["pulse"].to_numpy(dtype=np.float64, na_value=np.nan)
        if "pulse" in f.columns
        else np.full(len(f), np.nan)
    )
    _, out["mean_pulse"], _ = group_mean_sd(codes, np.where(ok, pulse, np.nan), n)
    out["n_irregular_pulse"] = group_count(codes[ok & _flag(f, "irregular_pulse")], n).astype(
        np.int64
    )
    out["n_body_movement"] = group_count(codes[ok & _flag(f, "body_movement")], n).astype(np.int64)

    out["sd_systolic"] = sd_s
    out["cv_systolic"] = 100.0 * safe_div(sd_s, mean_s)
    out["arv_systolic"] = _arv(codes[ok], sys_[ok], n)
    out["sd_diastolic"] = sd_d
    out["arv_diastolic"] = _arv(codes[ok], dia[ok], n)
    frame = pd.DataFrame(out, index=pd.Index(g.patients, name="patient_id"))
    return frame.loc[:, list(BP_COLUMNS)]


def _flag(frame: pd.DataFrame, column: str) -> BoolArray:
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return np.asarray(frame[column].to_numpy(dtype=bool, na_value=False), dtype=bool)


def _group_max(codes: Any, values: FloatArray, n: int) -> FloatArray:
    out = np.full(n, -np.inf)
    np.maximum.at(out, codes, values)
    return np.where(np.isinf(out), np.nan, out)


def _arv(codes: Any, values: FloatArray, n: int) -> FloatArray:
    """Average real variability: mean |x[i+1] - x[i]| over successive readings in time order
    (Mena et al., J Hypertens 2005)."""
    same = codes[1:] == codes[:-1]
    c = codes[1:][same]
    d = np.abs(values[1:] - values[:-1])[same]
    return safe_div(group_sum(c, d, n), group_count(c, n))
