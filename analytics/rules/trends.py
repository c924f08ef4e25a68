"""Trend rules: fasting glucose and morning systolic rising (Mann-Kendall and Theil-Sen
over daily values, docs/metrics.md)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import numpy as np
import pandas as pd

from analytics.metrics._frame import NS_PER_DAY, FloatArray, Period
from analytics.metrics.trends import (
    daily_fasting_glucose,
    daily_morning_systolic,
    trend_per_patient,
)
from analytics.rules.base import (
    INAT,
    Context,
    Frame,
    Frames,
    Needs,
    Outcome,
    Rule,
    RuleKind,
    Severity,
    given,
    present,
)


def _trend(ctx: Context, frames: Frames, fasting: bool) -> Outcome:
    n = ctx.n
    days = float(np.nanmax(ctx.t("trend_days"))) if n else 30.0
    period = Period(ctx.now - pd.Timedelta(days=days), ctx.now + pd.Timedelta(1))
    if fasting:
        parts = present(frames, Frame.SMBG, Frame.CGM)
        cols = ["patient_id", "time", "mgdl", "meal"]
        glucose = pd.concat([p.reindex(columns=cols) for p in parts], ignore_index=True)
        daily = daily_fasting_glucose(glucose, period, tz=ctx.tz)
        slope_field = "fasting_slope_mgdl_per_day"
    else:
        daily = daily_morning_systolic(given(frames, Frame.BP), period, tz=ctx.tz)
        slope_field = "morning_systolic_slope_mmhg_per_day"
    # Per-patient trend windows: keep each patient's own last trend_days.
    d_codes = ctx.patients.get_indexer(pd.Index(daily["patient_id"]))
    d_ns = np.asarray(pd.DatetimeIndex(daily["time"]).as_unit("ns").asi8, dtype=np.int64)
    cutoff = ctx.now.value - (ctx.t("trend_days") * NS_PER_DAY).astype(np.int64)
    keep = d_ns >= cutoff[d_codes]
    daily = daily.loc[keep]
    tr = trend_per_patient(daily, min_days=3, patients=list(ctx.patients))
    n_days = tr["n_days"].to_numpy(dtype=np.float64)
    slope = tr["slope_per_day"].to_numpy(dtype=np.float64)
    p = tr["mk_p"].to_numpy(dtype=np.float64)
    min_days = ctx.t("trend_min_days")
    enough = n_days >= min_days
    level = _recent_median(daily, ctx.patients, ctx.t("trend_level_days"))
    # Only fasting glucose has a level guard (a rise within the normal range is no concern).
    min_level = ctx.t("fasting_trend_min_mgdl") if fasting else np.full(n, -np.inf)
    with np.errstate(invalid="ignore"):
        hit = enough & (p < ctx.t("trend_alpha")) & (slope >= ctx.t(slope_field))
        hit &= level >= min_level
    first = np.full(n, INAT, dtype=np.int64)
    last = np.full(n, INAT, dtype=np.int64)
    if len(daily):
        tns = pd.DatetimeIndex(daily["time"]).as_unit("ns").asi8
        codes = ctx.patients.get_indexer(pd.Index(daily["patient_id"]))
        first_tmp = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_tmp, codes, tns)
        np.maximum.at(last, codes, tns)
        first = np.where(first_tmp == np.iinfo(np.int64).max, INAT, first_tmp)
    return Outcome(
        hit,
        {
            "slope_per_day": slope,
            "slope_threshold_per_day": ctx.t(slope_field),
            "mk_p": p,
            "alpha": ctx.t("trend_alpha"),
            "n_days": n_days.astype(np.int64),
            "min_days": min_days,
            "recent_median": level,
            "min_recent_median": np.where(np.isinf(min_level), np.nan, min_level),
            "insufficient_data": ~enough,
        },
        first,
        last,
    )


def _recent_median(daily: pd.DataFrame, patients: pd.Index, days: FloatArray) -> FloatArray:
    """Median of each patient's last ``days`` daily values (NaN without any)."""
    out = np.full(len(patients), np.nan)
    if not len(daily):
        return out
    codes = patients.get_indexer(pd.Index(daily["patient_id"]))
    frame = pd.DataFrame(
        {"code": codes, "t": daily["time"].to_numpy(), "value": daily["value"].to_numpy()}
    ).sort_values(["code", "t"], kind="stable")
    rank = frame.groupby("code").cumcount(ascending=False).to_numpy()
    recent = frame.loc[rank < days[frame["code"].to_numpy()]]
    med = recent.groupby("code")["value"].median()
    out[med.index.to_numpy()] = med.to_numpy(dtype=np.float64)
    return out


RULES: tuple[Rule, ...] = (
    Rule(
        "trend_fasting_glucose_rising",
        Severity.MEDIUM,
        RuleKind.TREND,
        "Fasting glucose rising: Mann-Kendall p < 0.05 and Theil-Sen slope >= 1 mg/dL/day,"
        " the last 7 daily values at a median >= 100 mg/dL.",
        Needs((Frame.CGM, Frame.SMBG), history=lambda t: timedelta(days=t.trend_days)),
        partial(_trend, fasting=True),
    ),
    Rule(
        "trend_morning_systolic_rising",
        Severity.MEDIUM,
        RuleKind.TREND,
        "Morning systolic rising: Mann-Kendall p < 0.05 and slope >= 0.5 mmHg/day.",
        Needs((Frame.BP,), history=lambda t: timedelta(days=t.trend_days)),
        partial(_trend, fasting=False),
    ),
)
